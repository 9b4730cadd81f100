"""The embedded WebSub hub, driven through the Flask test client, with subscribers that are real
HTTP servers on loopback (allowed by ``websub.allow_callbacks``, as in a deployment that lets a
reader inside its own network subscribe).

The hub's work is queued in the outbox; ``Sender.work_once`` is called by the tests themselves, so every step
is deterministic.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import feedparser
import pytest
import sqlalchemy as sa

from feeds import create_app
from feeds.store.schema import outbox, websub_days, websub_intents, websub_subscriptions
from tests.conftest import article, make_settings

BASE = "http://feeds.test"


@dataclass
class Callback:
    """What one subscriber's callback answers, and what reached it."""

    confirm: str = "echo"  # echo the challenge, "wrong", "refuse" (404) or "redirect" (302 to /elsewhere)
    status: int = 200  # the answer to a delivery
    reply: bytes = b""  # its body
    headers: dict[str, str] = field(default_factory=dict)  # and its headers
    delay: float = 0.0  # seconds before it answers a delivery
    on_verification: Callable[[], None] | None = None  # done when a verification arrives, before it is answered
    verifications: list[dict[str, str]] = field(default_factory=list)
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


class Subscribers:
    """An HTTP server on 127.0.0.1 whose paths are callbacks: /<name>."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callback] = {}
        subscribers = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                callback = subscribers.callbacks.setdefault(parts.path.strip("/"), Callback())
                query = {name: values[0] for name, values in parse_qs(parts.query).items()}
                callback.verifications.append(query)
                if callback.on_verification is not None:
                    callback.on_verification()
                if callback.confirm in ("refuse", "redirect"):
                    self.send_response(404 if callback.confirm == "refuse" else 302)
                    self.send_header("Location", f"{subscribers.url}/elsewhere?{parts.query}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = (query.get("hub.challenge", "") if callback.confirm == "echo" else "not-the-challenge").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                callback = subscribers.callbacks.setdefault(parts.path.strip("/"), Callback())
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                callback.deliveries.append(({name: value for name, value in self.headers.items()} | {"query": parts.query}, body))
                time.sleep(callback.delay)
                self.send_response(callback.status)
                for name, value in callback.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(callback.reply)))
                self.end_headers()
                self.wfile.write(callback.reply)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __getitem__(self, name: str) -> Callback:
        return self.callbacks.setdefault(name, Callback())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def subscribers() -> Iterator[Subscribers]:
    found = Subscribers()
    yield found
    found.close()


def hub_settings(database_url: str, **websub: Any) -> Any:
    return make_settings(database_url, api={"token": "s3cret"}, websub={
        "allow_callbacks": ["127.0.0.1/32"], "timeout": 2, "concurrency": 4, "min_lease_seconds": 60, **websub})


@pytest.fixture
def hub_app(database_url: str) -> Iterator[Any]:
    app = create_app(hub_settings(database_url))
    app.config["TESTING"] = True
    yield app
    app.extensions["feeds"].store.close()


def subscribe(client: Any, callback: str, topic: str = f"{BASE}/feeds/all.rss", mode: str = "subscribe", **extra: str) -> Any:
    return client.post("/hub", data={"hub.mode": mode, "hub.topic": topic, "hub.callback": callback, **extra})


def post_article(client: Any, **changes: Any) -> None:
    response = client.post("/api/articles", json=article(**changes), headers={"Authorization": "Bearer s3cret"})
    assert response.status_code in (200, 201), response.get_json()


def work(app: Any, now: datetime | None = None) -> None:
    """Everything the hub owes, done now (or what is due by ``now``)."""
    while app.extensions["feeds"].sender.work_once(now):
        pass


def answering(app: Any, subscribers: Subscribers, name: str, status: int) -> Any:
    """A confirmed subscriber of all.rss whose callback answers deliveries with ``status`` from now on,
    after a new article was owed to it; the client."""
    client = app.test_client()
    subscribe(client, f"{subscribers.url}/{name}")
    work(app)
    subscribers[name].status = status
    post_article(client)
    work(app)
    return client


def rows(app: Any, table: sa.Table) -> list[Any]:
    with app.extensions["feeds"].store.db.engine.connect() as conn:
        return conn.execute(sa.select(table)).all()


def owed(app: Any) -> list[Any]:
    """The deliveries the outbox holds."""
    return [row for row in rows(app, outbox) if row.channel == "delivery"]


def test_subscribe_confirm_and_receive_each_new_article(hub_app, subscribers):
    client = hub_app.test_client()
    response = subscribe(client, f"{subscribers.url}/reader", **{"hub.lease_seconds": "86400"})
    assert response.status_code == 202
    work(hub_app)
    (asked,) = subscribers["reader"].verifications
    assert asked["hub.mode"] == "subscribe" and asked["hub.topic"] == f"{BASE}/feeds/all.rss"
    assert asked["hub.lease_seconds"] == "86400" and len(asked["hub.challenge"]) >= 20
    (kept,) = rows(hub_app, websub_subscriptions)
    assert kept.expires - datetime.now(timezone.utc) > timedelta(seconds=86390)
    assert subscribers["reader"].deliveries == []  # nothing new yet

    post_article(client)
    work(hub_app)
    (headers, body), = subscribers["reader"].deliveries
    assert body == client.get("/feeds/all.rss").get_data()
    assert headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    assert headers["Link"] == f'<{BASE}/hub>; rel="hub", <{BASE}/feeds/all.rss>; rel="self"'
    assert "X-Hub-Signature" not in headers
    assert [entry.title for entry in feedparser.parse(body).entries] == [article()["title"]]

    post_article(client, id="2", url="https://news.example.cn/2.html", title="第二条")
    work(hub_app)
    assert len(subscribers["reader"].deliveries) == 2
    assert feedparser.parse(subscribers["reader"].deliveries[1][1]).entries[0].title == "第二条"
    (day,) = rows(hub_app, websub_days)
    assert (day.feed, day.delivered, day.failed) == ("all", 2, 0)


def test_a_change_made_while_the_subscription_is_verified_is_delivered(hub_app, subscribers):
    """An article written after the hub sent its verification request, before it records the confirmation: the
    new subscriber has not seen it, so it is owed it (the topic's version is taken when the request is sent)."""
    client = hub_app.test_client()
    post_article(client)
    subscribers["reader"].on_verification = lambda: post_article(client, id="2", url="https://news.example.cn/2.html", title="第二条")
    subscribe(client, f"{subscribers.url}/reader")
    work(hub_app)
    assert len(subscribers["reader"].verifications) == 1
    (headers, body), = subscribers["reader"].deliveries
    assert [entry.title for entry in feedparser.parse(body).entries] == ["第二条", article()["title"]]
    post_article(client, id="2", url="https://news.example.cn/2.html", title="第二条")  # unchanged: nothing more is owed
    work(hub_app)
    assert len(subscribers["reader"].deliveries) == 1


def test_every_feed_names_the_hub(hub_app):
    client = hub_app.test_client()
    post_article(client)
    response = client.get("/feeds/category/redian.atom")
    assert response.headers["Link"] == f'<{BASE}/hub>; rel="hub", <{BASE}/feeds/category/redian.atom>; rel="self"'
    links = {(link.rel, link.href) for link in feedparser.parse(response.get_data()).feed.links}
    assert ("hub", f"{BASE}/hub") in links
    assert client.get("/feeds/all.json").get_json()["hubs"] == [{"type": "WebSub", "url": f"{BASE}/hub"}]


def test_the_own_hub_comes_before_other_hubs(database_url):
    app = create_app(hub_settings(database_url, hubs=["http://127.0.0.1:9/"]))
    client = app.test_client()
    post_article(client)
    assert client.get("/feeds/all.rss").headers["Link"] == (
        f'<{BASE}/hub>; rel="hub", <http://127.0.0.1:9/>; rel="hub", <{BASE}/feeds/all.rss>; rel="self"')
    assert [hub["url"] for hub in client.get("/feeds/all.json").get_json()["hubs"]] == [f"{BASE}/hub", "http://127.0.0.1:9/"]
    app.extensions["feeds"].store.close()


def test_a_secret_signs_every_delivery(hub_app, subscribers):
    client = hub_app.test_client()
    secret = "秘密-" + "s" * 40
    assert subscribe(client, f"{subscribers.url}/signed", topic=f"{BASE}/feeds/all.json?limit=5", **{"hub.secret": secret}).status_code == 202
    work(hub_app)
    post_article(client)
    work(hub_app)
    (headers, body), = subscribers["signed"].deliveries
    assert headers["Content-Type"] == "application/feed+json; charset=utf-8"
    assert headers["X-Hub-Signature"] == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert body == client.get("/feeds/all.json?limit=5").get_data()


def test_a_failing_subscriber_is_retried_and_gets_only_the_newest_content(hub_app, subscribers):
    client = answering(hub_app, subscribers, "flaky", 503)
    (failing,) = owed(hub_app)
    assert failing.attempts == 1 and failing.failing_since is not None
    assert timedelta(seconds=1) <= failing.due - failing.failing_since <= timedelta(seconds=3)  # the first retry within seconds
    assert rows(hub_app, websub_subscriptions)[0].failing_since is not None  # shown as failing
    post_article(client, id="2", url="https://news.example.cn/2.html", title="更新的")
    work(hub_app)
    assert len(subscribers["flaky"].deliveries) == 1  # news merged into the queued delivery waits for its pause
    (merged,) = owed(hub_app)
    assert merged.due == failing.due and merged.attempts == 1
    with hub_app.extensions["feeds"].store.db.engine.begin() as conn:  # the pause is over
        conn.execute(outbox.update().where(outbox.c.channel == "delivery").values(due=datetime.now(timezone.utc) - timedelta(seconds=1)))
    subscribers["flaky"].status = 200
    work(hub_app)
    deliveries = subscribers["flaky"].deliveries
    assert len(deliveries) == 2  # the failed one, then one with both articles: not one per change
    assert [e.title for e in feedparser.parse(deliveries[1][1]).entries] == ["更新的", article()["title"]]
    (healthy,) = rows(hub_app, websub_subscriptions)
    assert healthy.failing_since is None and owed(hub_app) == []
    (day,) = rows(hub_app, websub_days)
    assert (day.delivered, day.failed) == (1, 1)


def test_failures_are_given_up_after_retry_seconds(database_url, subscribers, caplog):
    app = create_app(hub_settings(database_url, retry_seconds=1))
    app.config["TESTING"] = True
    answering(app, subscribers, "down", 500)
    with app.extensions["feeds"].store.db.engine.begin() as conn:  # as if it had been failing for 5 seconds
        long_ago = datetime.now(timezone.utc) - timedelta(seconds=5)
        conn.execute(outbox.update().where(outbox.c.channel == "delivery").values(due=datetime.now(timezone.utc), failing_since=long_ago))
        conn.execute(websub_subscriptions.update().values(failing_since=long_ago))
    work(app)
    assert len(subscribers["down"].deliveries) == 2
    assert "gave up sending http://feeds.test/feeds/all.rss" in caplog.text
    (kept,) = rows(app, websub_subscriptions)
    assert kept.failing_since is not None and owed(app) == []  # owed nothing more; shown as failing
    work(app)
    assert len(subscribers["down"].deliveries) == 2
    post_article(app.test_client(), id="2", url="https://news.example.cn/2.html")
    work(app)  # a subscriber given up on gets one try of the next change, not another day of them
    assert len(subscribers["down"].deliveries) == 3 and owed(app) == []
    app.extensions["feeds"].store.close()


def test_410_ends_the_subscription(hub_app, subscribers):
    answering(hub_app, subscribers, "gone", 410)
    assert len(subscribers["gone"].deliveries) == 1 and rows(hub_app, websub_subscriptions) == []


def test_unsubscribe_is_confirmed_and_ends_deliveries(hub_app, subscribers):
    client = hub_app.test_client()
    subscribe(client, f"{subscribers.url}/leaving")
    work(hub_app)
    assert subscribe(client, f"{subscribers.url}/leaving", mode="unsubscribe").status_code == 202
    work(hub_app)
    assert [asked["hub.mode"] for asked in subscribers["leaving"].verifications] == ["subscribe", "unsubscribe"]
    assert "hub.lease_seconds" not in subscribers["leaving"].verifications[1]
    assert rows(hub_app, websub_subscriptions) == []
    post_article(client)
    work(hub_app)
    assert subscribers["leaving"].deliveries == []


def test_an_unconfirmed_request_changes_nothing(hub_app, subscribers):
    client = hub_app.test_client()
    subscribers["liar"].confirm = "wrong"
    subscribers["stranger"].confirm = "refuse"
    subscribe(client, f"{subscribers.url}/liar")
    subscribe(client, f"{subscribers.url}/stranger")
    work(hub_app)
    assert rows(hub_app, websub_subscriptions) == [] and rows(hub_app, websub_intents) == []
    subscribe(client, f"{subscribers.url}/kept")
    work(hub_app)
    subscribers["kept"].confirm = "refuse"  # someone else asks to unsubscribe it: the callback says no
    subscribe(client, f"{subscribers.url}/kept", mode="unsubscribe")
    work(hub_app)
    assert [row.callback for row in rows(hub_app, websub_subscriptions)] == [f"{subscribers.url}/kept"]


def test_leases_are_bounded_renewed_and_expire(hub_app, subscribers):
    client = hub_app.test_client()
    subscribe(client, f"{subscribers.url}/short", **{"hub.lease_seconds": "5"})
    subscribe(client, f"{subscribers.url}/long", **{"hub.lease_seconds": str(10**9)})
    subscribe(client, f"{subscribers.url}/default")
    work(hub_app)
    granted = {name: int(subscribers[name].verifications[0]["hub.lease_seconds"]) for name in ("short", "long", "default")}
    assert granted == {"short": 60, "long": 2_592_000, "default": 864_000}
    subscribe(client, f"{subscribers.url}/short", **{"hub.lease_seconds": "3600"})  # a renewal
    work(hub_app)
    (short,) = [row for row in rows(hub_app, websub_subscriptions) if row.callback.endswith("/short")]
    assert short.expires - datetime.now(timezone.utc) > timedelta(seconds=3590)
    store = hub_app.extensions["feeds"].store
    with store.db.engine.begin() as conn:
        conn.execute(websub_subscriptions.update().where(websub_subscriptions.c.callback.endswith("/short"))
                     .values(expires=datetime.now(timezone.utc) - timedelta(seconds=1)))
    post_article(client)
    work(hub_app)
    assert subscribers["short"].deliveries == [] and len(subscribers["long"].deliveries) == 1
    assert store.subscriptions.expire(datetime.now(timezone.utc)) == 1
    assert len(rows(hub_app, websub_subscriptions)) == 2


def test_bytes_a_subscriber_has_are_not_sent_again(hub_app, subscribers):
    client = hub_app.test_client()
    post_article(client)
    subscribe(client, f"{subscribers.url}/newest", topic=f"{BASE}/feeds/all.atom?limit=1")
    work(hub_app)
    post_article(client, id="new", url="https://news.example.cn/new.html", published="2024-05-01 08:00:00")
    work(hub_app)
    assert len(subscribers["newest"].deliveries) == 1
    post_article(client, id="old", url="https://news.example.cn/old.html", published="2020-01-01 08:00:00")
    work(hub_app)  # the scope moved, but the newest article, and so the bytes, did not
    assert len(subscribers["newest"].deliveries) == 1


def test_each_topic_gets_its_own_bytes(hub_app, subscribers):
    client = hub_app.test_client()
    post_article(client)
    for name, topic in (("rss", "category/redian.rss"), ("atom", "source/hulianwang.atom"), ("hot", "hot/daily.json")):
        assert subscribe(client, f"{subscribers.url}/{name}", topic=f"{BASE}/feeds/{topic}").status_code == 202
    work(hub_app)
    post_article(client, id="2", url="https://news.example.cn/2.html")
    client.post("/api/views", json=[{"id": "2", "count": 3}], headers={"Authorization": "Bearer s3cret"})
    work(hub_app)
    assert subscribers["hot"].deliveries == []  # the hot lists, which every read moves, are sent once a minute
    work(hub_app, datetime.now(timezone.utc) + timedelta(seconds=60))
    for name, topic in (("rss", "category/redian.rss"), ("atom", "source/hulianwang.atom"), ("hot", "hot/daily.json")):
        assert subscribers[name].deliveries[-1][1] == client.get(f"/feeds/{topic}").get_data(), name


@pytest.fixture
def strict_app(sqlite_url: str) -> Iterator[Any]:
    """The hub as deployed by default: callbacks only at public addresses."""
    app = create_app(make_settings(sqlite_url, api={"token": "s3cret"}, websub={"max_per_host": 2, "max_subscriptions": 3}))
    app.config["TESTING"] = True
    yield app
    app.extensions["feeds"].store.close()


TOPIC = f"{BASE}/feeds/all.rss"


@pytest.mark.parametrize("form, status, says", [
    ({}, 400, "hub.mode is missing"),
    ({"hub.mode": "subscrib", "hub.topic": TOPIC, "hub.callback": "https://reader.example/cb"}, 400, "hub.mode must be"),
    ({"hub.mode": "publish", "hub.url": TOPIC}, 400, "hub.mode=publish is not needed"),
    ({"hub.mode": "subscribe", "hub.callback": "https://reader.example/cb"}, 400, "hub.topic is missing"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC}, 400, "hub.callback is missing"),
    ({"hub.mode": "subscribe", "hub.topic": "https://elsewhere.example/feeds/all.rss", "hub.callback": "https://r.example/"}, 404, "not one"),
    ({"hub.mode": "subscribe", "hub.topic": f"{BASE}/feeds/category/nowhere.rss", "hub.callback": "https://r.example/"}, 404, "feed URL of this site"),
    ({"hub.mode": "subscribe", "hub.topic": f"{BASE}/feeds/archive/all/1.rss", "hub.callback": "https://r.example/"}, 404, "feed URL"),
    ({"hub.mode": "subscribe", "hub.topic": f"{BASE}/feeds/all.xml", "hub.callback": "https://r.example/"}, 404, "feed URL"),
    ({"hub.mode": "subscribe", "hub.topic": f"{TOPIC}?limit=0", "hub.callback": "https://r.example/"}, 404, "feed URL"),
    ({"hub.mode": "subscribe", "hub.topic": f"{TOPIC}?x=%00", "hub.callback": "https://r.example/"}, 404, "feed URL"),
    ({"hub.mode": "subscribe", "hub.topic": "javascript:alert(1)", "hub.callback": "https://r.example/"}, 404, "feed URL"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "ftp://r.example/cb"}, 400, "http or https"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "not a url"}, 400, "http or https"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://127.0.0.1:8000/cb"}, 400, "not public"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://169.254.169.254/latest/meta-data/"}, 400, "not public"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://10.1.2.3/cb"}, 400, "not public"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://[::1]:80/cb"}, 400, "not public"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://[::ffff:127.0.0.1]/cb"}, 400, "not public"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://224.0.0.1/cb"}, 400, "not public"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://0.0.0.0/cb"}, 400, "not public"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "https://r.example/cb#frag"}, 400, "fragment"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://r.example:99999/cb"}, 400, "cannot be called"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "http://r.example:0/cb"}, 400, "cannot be called"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": f"http://{'a' * 64}.example/cb"}, 400, "cannot be called"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "https://r.example/" + "a" * 2100}, 400, "longer than 2048"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "https://r.example/", "hub.secret": "秘" * 67}, 400, "200 bytes"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "https://r.example/", "hub.lease_seconds": "-5"}, 400, "whole number"),
    ({"hub.mode": "subscribe", "hub.topic": TOPIC, "hub.callback": "https://r.example/", "hub.lease_seconds": "1e9"}, 400, "whole number"),
])
def test_bad_subscription_requests_get_a_clear_4xx(strict_app, form, status, says):
    client = strict_app.test_client()
    post_article(client)
    response = client.post("/hub", data=form)
    assert response.status_code == status and says in response.get_data(as_text=True)
    assert rows(strict_app, websub_intents) == []


def test_a_subscription_request_must_be_a_small_form(strict_app):
    client = strict_app.test_client()
    assert client.post("/hub", json={"hub.mode": "subscribe"}).status_code == 415
    assert client.post("/hub", data={"hub.mode": "subscribe", "hub.topic": "x" * 20_000}).status_code == 413
    assert client.get("/hub").status_code == 405
    chunked = client.post("/hub", input_stream=io.BytesIO(b"pad=" + b"x" * 20_000 + b"&hub.mode=subscribe"),
                          headers={"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"},
                          environ_base={"wsgi.input_terminated": True})  # as gunicorn marks a chunked body
    assert chunked.status_code == 400 and "hub.mode is missing" in chunked.get_data(as_text=True)  # read only to the limit
    assert rows(strict_app, websub_intents) == []


def test_unsubscribing_from_nothing_calls_no_one(hub_app, subscribers):
    client = hub_app.test_client()
    post_article(client)
    assert subscribe(client, f"{subscribers.url}/never", mode="unsubscribe").status_code == 202
    work(hub_app)
    assert subscribers["never"].verifications == [] and rows(hub_app, websub_intents) == []


def test_subscriptions_are_limited_per_host_and_in_all(strict_app):
    client = strict_app.test_client()
    post_article(client)
    statuses = [subscribe(client, f"https://{host}/cb{n}").status_code for host, n in
                (("a.example", 1), ("a.example", 2), ("a.example", 3), ("b.example", 1), ("c.example", 1))]
    assert statuses == [202, 202, 429, 202, 429]
    assert "at most 2 for the callback host a.example" in subscribe(client, "https://a.example/cb9").get_data(as_text=True)
    assert subscribe(client, "https://a.example/cb1").status_code == 202  # the same one again is no new one


def test_a_callback_name_for_a_private_address_is_never_called(strict_app, subscribers):
    """Judged on the address connected to: ``localhost`` passes as a name, and resolves to loopback."""
    client = strict_app.test_client()
    post_article(client)
    port = subscribers.url.rsplit(":", 1)[1]
    assert subscribe(client, f"http://localhost:{port}/sneaky").status_code == 202
    work(strict_app)
    assert subscribers["sneaky"].verifications == [] and rows(strict_app, websub_intents) == []


def test_a_rebound_name_is_refused_when_it_is_connected_to(hub_app, subscribers, monkeypatch):
    import socket

    client = hub_app.test_client()
    subscribe(client, "http://rebinding.example/cb")  # public when asked; 169.254.169.254 when called
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: (
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))] if host == "rebinding.example" else real(host, *args, **kwargs)))
    work(hub_app)
    assert rows(hub_app, websub_intents) == [] and rows(hub_app, websub_subscriptions) == []


def test_redirects_are_not_followed(hub_app, subscribers):
    client = hub_app.test_client()
    subscribers["moved"].confirm = "redirect"
    subscribe(client, f"{subscribers.url}/moved")
    work(hub_app)
    assert subscribers["elsewhere"].verifications == [] and rows(hub_app, websub_subscriptions) == []


def test_the_newsroom_sees_subscribers_by_service_and_deliveries(hub_app, subscribers):
    client = hub_app.test_client()
    post_article(client)
    for name in ("one", "two", "down"):
        subscribe(client, f"{subscribers.url}/{name}")
    work(hub_app)
    subscribers["down"].status = 500
    subscribe(client, f"{subscribers.url}/waiting")  # not confirmed yet
    post_article(client, id="2", url="https://news.example.cn/2.html")
    sender = hub_app.extensions["feeds"].sender  # deliveries only: "waiting" stays unconfirmed
    topic, delivery = [channel for channel in sender.channels if channel.name in ("topic", "delivery")]
    sender._batch(topic)
    sender._batch(delivery)
    client.get("/feeds/all.rss", headers={"User-Agent": "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 123 subscribers)"})
    client.get("/feeds/all.rss", headers={"User-Agent": "newsboat/2.30"}, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    body = client.get("/admin/stats.json", headers={"Authorization": "Bearer s3cret"}).get_json()
    (feed,) = [row for row in body["feeds"] if row["feed"] == "all"]
    assert feed["websub"] == {"active": 2, "pending": 1, "failing": 1, "delivered": 2, "failed": 1}
    assert feed["services"] == [{"service": "Feedly", "subscribers": 123}, {"service": "WebSub", "subscribers": 3},
                                {"service": "direct pollers", "subscribers": 1}]
    assert feed["subscribers"] == 127
    page = client.get("/admin/stats", headers={"Authorization": "Bearer s3cret"}).get_data(as_text=True)
    assert "WebSub 3" in page and "直接访问 1" in page and "2 / 1 / 1" in page
