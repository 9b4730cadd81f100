"""The outbox: every push (the hub's confirmations and deliveries, pings of other hubs, search engines) is a row of
one table, queued with the change that owes it, sent by one sender under one retry policy.

The far ends are ``test_hub.Subscribers`` (an HTTP server on loopback whose paths note what they get);
``Sender.work_once`` is called by the tests themselves.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest
import sqlalchemy as sa

from feeds import create_app
from feeds.store.schema import outbox, websub_subscriptions
from tests import test_hub
from tests.conftest import article, make_settings, only_postgresql

subscribers = test_hub.subscribers  # the fixture: the fake far ends
TOKEN = {"Authorization": "Bearer s3cret"}
BASE = "http://feeds.test"


def settings(database_url, subscribers, **more):
    return make_settings(database_url, api={"token": "s3cret"},
                         websub={"allow_callbacks": ["127.0.0.1/32"], "timeout": 5, "concurrency": 4, "hubs": [f"{subscribers.url}/otherhub"]},
                         indexnow={"key": "a1b2c3d4-e5f6", "endpoint": f"{subscribers.url}/indexnow"}, **more)


def queued(app) -> list:
    with app.extensions["feeds"].store.db.engine.connect() as conn:
        return conn.execute(sa.select(outbox).order_by(outbox.c.channel, outbox.c.subject)).all()


def work(app, later: float = 0) -> None:
    while app.extensions["feeds"].sender.work_once(datetime.now(timezone.utc) + timedelta(seconds=later)):
        pass


def post(client, **changes) -> None:
    response = client.post("/api/articles", json=article(**changes), headers=TOKEN)
    assert response.status_code in (200, 201), response.get_json()


def test_a_write_queues_every_push_it_owes_in_one_table_and_a_row_a_scope_not_a_subscriber(database_url, subscribers):
    app = create_app(settings(database_url, subscribers))
    try:
        client = app.test_client()
        for n in range(30):
            assert test_hub.subscribe(client, f"{subscribers.url}/r{n}").status_code == 202
        assert {row.channel for row in queued(app)} == {"verification"} and len(queued(app)) == 30
        work(app)
        assert queued(app) == []
        post(client)
        rows = queued(app)
        by_channel = {channel: [row for row in rows if row.channel == channel] for channel in {row.channel for row in rows}}
        assert set(by_channel) == {"topic", "ping", "indexnow"}  # no delivery yet: the sender fans the topics out
        scopes = {row.subject for row in by_channel["topic"]}  # a row a changed scope, for 30 subscribers of all.rss
        assert len(by_channel["topic"]) == len(scopes) and {"all", "category:redian", "hot"} <= scopes
        assert [row.subject for row in by_channel["indexnow"]] == [article()["url"]]
        assert {row.subject for row in by_channel["ping"]} >= {"all", "category:redian", "hot"}
        work(app, later=60)
        assert queued(app) == []
        assert all(len(subscribers[f"r{n}"].deliveries) == 1 for n in range(30))
        assert len(subscribers["indexnow"].deliveries) == 1 and len(subscribers["otherhub"].deliveries) > 0
        pushes = {entry["channel"]: entry for entry in client.get("/admin/stats.json", headers=TOKEN).get_json()["pushes"]}
        assert list(pushes) == ["verification", "topic", "delivery", "ping", "indexnow"]
        assert (pushes["verification"]["sent"], pushes["delivery"]["sent"], pushes["indexnow"]["sent"]) == (30, 30, 1)
        assert all(entry["queued"] == 0 for entry in pushes.values())
    finally:
        app.extensions["feeds"].store.close()


@pytest.fixture
def followed(database_url, subscribers):
    """An app pushing to one confirmed subscriber of all.rss ("reader"), another hub and IndexNow."""
    app = create_app(settings(database_url, subscribers))
    test_hub.subscribe(app.test_client(), f"{subscribers.url}/reader")
    work(app)
    yield app
    app.extensions["feeds"].store.close()


def far_ends_answer(subscribers, status: int) -> None:
    for name in ("reader", "otherhub", "indexnow"):
        subscribers[name].status = status


def test_every_channel_fails_alike_and_is_retried_after_the_same_pause(followed, subscribers):
    far_ends_answer(subscribers, 503)
    before = datetime.now(timezone.utc)
    post(followed.test_client())
    work(followed, later=60)  # the hot lists' ping too: tried at a minute from now
    rows = queued(followed)
    assert {row.channel for row in rows} == {"delivery", "ping", "indexnow"}
    for row in rows:
        assert row.attempts == 1 and row.failing_since is not None, row.channel
        assert timedelta(seconds=62) <= row.due - before <= timedelta(seconds=70), row.channel  # 2 s after its try
    far_ends_answer(subscribers, 200)
    work(followed, later=120)
    assert queued(followed) == []
    assert len(subscribers["reader"].deliveries) == 2 and len(subscribers["indexnow"].deliveries) == 2


def test_a_4xx_is_given_up_at_once_by_every_channel(followed, subscribers, caplog):
    far_ends_answer(subscribers, 403)
    with caplog.at_level(logging.WARNING):
        post(followed.test_client())
        work(followed, later=60)
    assert queued(followed) == []
    gave_up = {record.message.split(":")[0] for record in caplog.records if "gave up" in record.message}
    assert gave_up == {"delivery", "ping", "indexnow"}
    with followed.extensions["feeds"].store.db.engine.connect() as conn:
        assert conn.execute(sa.select(websub_subscriptions.c.failing_since)).scalar() is not None  # shown failing


def test_pings_and_deliveries_owed_survive_the_process(database_url, subscribers):
    first = create_app(settings(database_url, subscribers))
    test_hub.subscribe(first.test_client(), f"{subscribers.url}/reader")
    work(first)
    post(first.test_client())
    first.extensions["feeds"].store.close()  # as if killed before it sent anything
    assert subscribers["otherhub"].deliveries == [] and subscribers["reader"].deliveries == []
    again = create_app(settings(database_url, subscribers))
    try:
        work(again, later=60)
        pinged = {dict(parse_qsl(body.decode()))["hub.url"] for _, body in subscribers["otherhub"].deliveries}
        assert f"{BASE}/feeds/all.rss" in pinged and f"{BASE}/feeds/hot/daily.json" in pinged
        (delivery,) = subscribers["reader"].deliveries
        assert delivery[1] == again.test_client().get("/feeds/all.rss").get_data()
        assert json.loads(subscribers["indexnow"].deliveries[0][1])["urlList"] == [article()["url"]]
    finally:
        again.extensions["feeds"].store.close()


def test_a_write_through_the_cli_sends_what_it_owes_before_it_exits(database_url, subscribers, write_jsonl):
    from click.testing import CliRunner

    from feeds.cli import main

    app = create_app(settings(database_url, subscribers))
    try:
        result = CliRunner().invoke(main, ["import", write_jsonl([article()])], obj=app)
        assert result.exit_code == 0, result.output
        assert len(subscribers["indexnow"].deliveries) == 1 and subscribers["otherhub"].deliveries
        assert {row.subject for row in queued(app)} == {"hot"}  # the hot lists' ping waits for its minute
    finally:
        app.extensions["feeds"].store.close()


def test_the_upgrade_moves_what_was_queued_and_owed_into_the_outbox(database_url):
    """A database of revision 0010, with a URL queued for IndexNow, a request waiting for confirmation and two
    subscriptions, one owed a change: the upgrade queues each of them in the outbox, and nothing else."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    from feeds.store import Store
    from feeds.store.schema import UTCDateTime, feed_versions, outbox_channels

    store = Store(database_url)
    store.migrate()
    now = datetime.now(timezone.utc)
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parents[1] / "feeds" / "store" / "migrations"))
    dated = ("requested", "expires", "due", "queued")
    old = {name: sa.table(name, *(sa.column(column, UTCDateTime()) if column in dated else sa.column(column) for column in columns))
           for name, columns in {
               "push_queue": ("key", "engine", "url", "action", "version", "queued", "due", "attempts"),
               "push_engines": ("engine", "sent", "failed"),
               "websub_intents": ("key", "topic", "callback", "host", "feed", "scope", "mode", "lease_seconds", "requested"),
               "websub_subscriptions": ("key", "topic", "callback", "host", "feed", "scope", "expires", "delivered_version",
                                        "due", "attempts"),
           }.items()}
    with store.db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0010")
        conn.execute(feed_versions.insert().values(scope="all", version=5, articles=1))
        conn.execute(old["push_queue"].insert().values(key="k", engine="baidu", url="https://news.example.cn/1.html",
                                                       action="new", version=1, queued=now, due=now, attempts=0))
        conn.execute(old["push_engines"].insert().values(engine="baidu", sent=7, failed=1))
        conn.execute(old["websub_intents"].insert().values(key="waiting", topic=f"{BASE}/feeds/all.rss", callback="http://r/1",
                                                           host="r", feed="all", scope="all", mode="subscribe",
                                                           lease_seconds=3600, requested=now))
        for key, delivered in (("owed", 4), ("current", 5)):
            conn.execute(old["websub_subscriptions"].insert().values(
                key=key, topic=f"{BASE}/feeds/all.rss", callback=f"http://r/{key}", host="r", feed="all", scope="all",
                expires=now + timedelta(days=1), delivered_version=delivered, due=now, attempts=0))
    store.close()
    upgraded = Store(database_url)
    upgraded.migrate()
    try:
        with upgraded.db.engine.connect() as conn:
            rows = {(row.channel, row.target, row.subject, row.action) for row in conn.execute(sa.select(outbox))}
            counts = conn.execute(sa.select(outbox_channels.c.channel, outbox_channels.c.sent, outbox_channels.c.failed)).all()
        assert rows == {("baidu", "", "https://news.example.cn/1.html", "new"), ("verification", "waiting", "", "subscribe"),
                        ("delivery", "owed", "", "content")}
        assert [tuple(row) for row in counts] == [("baidu", 7, 1)]
    finally:
        upgraded.close()


def test_news_merged_while_a_push_is_out_keeps_a_failure_s_pause_and_follows_a_success(database_url):
    from feeds.store import Store
    from feeds.store.outbox import Destinations, Push, Pushed

    store = Store(database_url, destinations=Destinations(engines=("baidu",)))
    store.migrate()
    outbox_ = store.outbox
    now = datetime.now(timezone.utc)

    def merge(action: str) -> None:
        store.db.write(lambda conn: outbox_.queue(conn, [Push("baidu", "", "https://news.example.cn/1.html", action)], now))

    def row():
        with store.db.engine.connect() as conn:
            return conn.execute(sa.select(outbox)).one()

    try:
        merge("new")
        (item,) = outbox_.claim("baidu", now, 10, timedelta(seconds=30))
        merge("update")  # an edit while the push is out
        outbox_.record("baidu", [Pushed(item, "failed", now + timedelta(seconds=2))], now)
        failed = row()
        assert (failed.attempts, failed.due, failed.action, failed.claimed_until) == (1, now + timedelta(seconds=2), "new", None)
        (item,) = outbox_.claim("baidu", now + timedelta(seconds=3), 10, timedelta(seconds=30))
        merge("update")
        outbox_.record("baidu", [Pushed(item, "sent")], now + timedelta(seconds=3))
        fresh = row()  # Baidu was told of the new URL: the edit is news of an update, a fresh push due now
        assert (fresh.attempts, fresh.failing_since, fresh.action) == (0, None, "update")
        assert fresh.due <= now + timedelta(seconds=3)
        (item,) = outbox_.claim("baidu", now + timedelta(seconds=4), 10, timedelta(seconds=30))
        outbox_.record("baidu", [Pushed(item, "sent")], now + timedelta(seconds=4))
        with store.db.engine.connect() as conn:
            assert conn.execute(sa.select(outbox)).all() == []
    finally:
        store.close()


def test_a_claim_run_out_is_not_released_by_its_first_holder(database_url):
    from feeds.store import Store
    from feeds.store.outbox import Destinations, Push, Pushed

    store = Store(database_url, destinations=Destinations(engines=("indexnow",)))
    store.migrate()
    now = datetime.now(timezone.utc)
    try:
        store.db.write(lambda conn: store.outbox.queue(conn, [Push("indexnow", "", "https://news.example.cn/1.html", "new")], now))
        (slow,) = store.outbox.claim("indexnow", now, 10, timedelta(seconds=5))
        (other,) = store.outbox.claim("indexnow", now + timedelta(seconds=6), 10, timedelta(seconds=30))  # the hold ran out
        store.outbox.record("indexnow", [Pushed(slow, "failed", now + timedelta(seconds=2))], now + timedelta(seconds=7))
        assert store.outbox.claim("indexnow", now + timedelta(seconds=8), 10, timedelta(seconds=30)) == []  # still the other's
        store.outbox.record("indexnow", [Pushed(other, "sent")], now + timedelta(seconds=8))
        with store.db.engine.connect() as conn:
            assert conn.execute(sa.select(outbox)).all() == []
    finally:
        store.close()


@only_postgresql  # SQLite runs one write at a time: a confirmation cannot overlap a write
def test_a_subscription_confirmed_while_a_write_commits_is_owed_the_write(followed, subscribers):
    """The write's transaction is open (its version bumped, its pushes queued) while the confirmation is recorded:
    one of them must see the other, or the new subscriber never gets the change."""
    import threading

    from feeds.store.schema import feed_versions

    store = followed.extensions["feeds"].store
    post(followed.test_client())
    work(followed, later=60)
    topic = f"{BASE}/feeds/category/redian.rss"  # a scope nobody else follows: the write queues no topic for it
    assert test_hub.subscribe(followed.test_client(), f"{subscribers.url}/late", topic=topic).status_code == 202
    with store.db.engine.connect() as write:
        write.begin()
        scope = feed_versions.c.scope == "category:redian"
        write.execute(feed_versions.update().where(scope).values(version=feed_versions.c.version + 1))
        store.outbox.scopes_changed(write, {"category:redian"})  # as the write does before it commits: "late" is not confirmed yet
        confirming = threading.Thread(target=lambda: work(followed))
        confirming.start()
        confirming.join(1.0)  # it reads the version the write has not committed yet, then waits for the scope's row
        write.commit()
    confirming.join(30)
    work(followed)
    assert len(subscribers["late"].verifications) == 1 and len(subscribers["late"].deliveries) == 1


def test_a_batch_whose_sending_fails_waits_a_pause_and_holds_nothing(followed, subscribers, monkeypatch, caplog):
    (engine,) = [channel for channel in followed.extensions["feeds"].sender.channels if channel.name == "indexnow"]
    monkeypatch.setattr(engine, "send", lambda items, now: 1 / 0)
    post(followed.test_client())
    with caplog.at_level(logging.ERROR):
        work(followed)
    (row,) = [row for row in queued(followed) if row.channel == "indexnow"]
    assert row.attempts == 1 and row.claimed_until is None and row.due > datetime.now(timezone.utc)
    assert "indexnow: sending a batch of 1 failed" in caplog.text


def test_a_hub_removed_from_the_config_is_pinged_no_more(database_url, subscribers):
    first = create_app(settings(database_url, subscribers))
    post(first.test_client())
    first.extensions["feeds"].store.close()
    again = create_app(make_settings(database_url, api={"token": "s3cret"}, websub={"hubs": [f"{subscribers.url}/newhub"]}))
    try:
        work(again, later=60)
        assert subscribers["otherhub"].deliveries == [] and queued(again) == []
    finally:
        again.extensions["feeds"].store.close()
