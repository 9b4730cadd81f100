"""Publishing on time: a scheduled article is in no public output until its time, then in all of them;
an expired one leaves all of them; nothing is ever dated later than now.

The clock is the schedule's own (``Schedule.clock``), set by each test: the API stores an article as
scheduled by it and ``Schedule.step`` releases by it, so no test sleeps to a deadline. The fake clock
runs two hours behind the real one, so that what it publishes is in the real past, as every output's
date must be.
"""
from __future__ import annotations

import email.utils
import json
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import feedparser
import pytest
import sqlalchemy as sa
from lxml import etree

from feeds import create_app
from feeds.model import Article
from feeds.schedule import LOOK_EVERY, Schedule
from feeds.store import Store
from feeds.text import slugify
from tests.conftest import Runner, article, make_settings
from tests import test_hub
from tests.test_hub import subscribe, work
from tests.test_serve import SERVERS, Served
from tests.test_store import counted_sizes, feed_sizes

BEIJING = timezone(timedelta(hours=8))
TOKEN = {"Authorization": "Bearer s3cret"}
TITLE = "独家:某集团并购案细节披露"  # what must not show anywhere before its time
TAG, CATEGORY, SOURCE, AUTHOR = "并购案", "突发/独家", "独家通讯社", "记者甲"
subscribers = test_hub.subscribers  # the fixture: callbacks on loopback


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2))


@pytest.fixture
def site(sqlite_url, clock, subscribers):
    """An app on the fake clock with two public articles, a hub that may call back to loopback, and archive
    pages of one article each (so that a third article makes a third page)."""
    app = create_app(make_settings(sqlite_url, api={"token": "s3cret"}, feeds={"default_limit": 1},
                                   websub={"allow_callbacks": ["127.0.0.1/32"], "timeout": 2}))
    app.config["TESTING"] = True
    app.extensions["feeds"].schedule.clock = clock
    client = app.test_client()
    post(client, article(), article(id="2", url="https://news.example.cn/2.html", title="第二条", published="2024-04-05 09:30:00"))
    yield app, client
    app.extensions["feeds"].store.close()


def post(client, *articles: dict) -> dict:
    response = client.post("/api/articles", json=list(articles), headers=TOKEN)
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def embargoed(at: datetime, **changes) -> dict:
    return article(id="embargo", url="https://news.example.cn/embargo.html", title=TITLE, category=CATEGORY, source=SOURCE,
                   author=AUTHOR, tags=[TAG], published=at.astimezone(BEIJING).isoformat(), **changes)


def public_urls() -> list[str]:
    """Every public output an article of ``embargoed`` could show in (archive page 3 exists only with it)."""
    feeds = ["all", f"category/{slugify('突发')}", f"category/{slugify('突发')}/{slugify('独家')}", f"source/{slugify(SOURCE)}",
             f"tag/{slugify(TAG)}", f"author/{slugify(AUTHOR)}", "hot/daily", "hot/weekly"]
    urls = [f"/feeds/{feed}.{extension}" for feed in feeds for extension in ("rss", "atom", "json", "html")]
    urls += [f"/feeds/search.{extension}?q={quote('并购')}" for extension in ("rss", "atom", "json", "html")]
    urls += ["/feeds/all.rss?variant=zh-TW", "/feeds/all.json?limit=50", "/", "/feeds.opml", "/feeds.opml?variant=zh-TW",
             "/embed/latest?feed=all", "/embed/hot", "/embed/hot?window=weekly", "/feeds/archive/all/3.rss"]
    return urls


ARTICLE = (TITLE, "embargo")  # its title, and its id in its guid and link
EVERY_NAME = (*ARTICLE, TAG, "並購案", "独家", "獨家", SOURCE, AUTHOR)  # ... and its tag, category, source and author


def shows(client, url: str, words: tuple[str, ...] = ARTICLE) -> bool:
    """Whether the answer at ``url`` holds any of ``words``."""
    response = client.get(url)
    if response.status_code == 404:
        return False
    assert response.status_code == 200, (url, response.status_code)
    text = response.get_data(as_text=True)
    return any(word in text for word in words)


def read(client, article_id: str, count: int = 50) -> dict:
    response = client.post("/api/views", json=[{"id": article_id, "count": count}], headers=TOKEN)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_scheduled_article_is_nowhere_until_its_time_then_everywhere(site, clock, tmp_path):
    app, client = site
    schedule = app.extensions["feeds"].schedule
    due = clock.now + timedelta(hours=1)
    before = {url: client.get(url) for url in ("/feeds/all.rss", "/feeds/all.atom", "/feeds/all.json")}

    (result,) = post(client, embargoed(due))["results"]
    assert result["result"] == "scheduled" and result["status"] == "scheduled"
    assert datetime.fromisoformat(result["publishes_at"]) == due and result["publishes_at"].endswith("+08:00")
    assert read(client, "embargo") == {"recorded": 0, "not_public": 1}  # a preview's reads never rank it
    assert [url for url in public_urls() if shows(client, url, EVERY_NAME)] == []
    for url, answer in before.items():  # the feeds did not even change
        assert client.get(url, headers={"If-None-Match": answer.headers["ETag"]}).status_code == 304, url
    build = Runner(app).invoke("build", str(tmp_path / "early"))
    assert build.exit_code == 0, build.output
    assert not [path for path in (tmp_path / "early").rglob("*") if path.is_file() and path.suffix != ".gz"
                and TITLE.encode() in path.read_bytes()]

    clock.now = due - timedelta(seconds=1)
    assert schedule.step() == 1  # a second to go: the timer is set to it
    assert [url for url in public_urls() if shows(client, url, EVERY_NAME)] == []

    clock.now = due
    assert schedule.step() == LOOK_EVERY  # released; nothing else is due
    read(client, "embargo")
    assert [url for url in public_urls() if not shows(client, url, EVERY_NAME if "opml" in url else ARTICLE)] == []
    for url, answer in before.items():
        again = client.get(url, headers={"If-None-Match": answer.headers["ETag"]})
        assert again.status_code == 200 and again.headers["ETag"] != answer.headers["ETag"], url
        assert email.utils.parsedate_to_datetime(again.headers["Last-Modified"]) == due
    entry = feedparser.parse(client.get("/feeds/all.atom").data).entries[0]
    assert entry.title == TITLE and datetime(*entry.published_parsed[:6], tzinfo=timezone.utc) == due
    build = Runner(app).invoke("build", str(tmp_path / "due"))
    assert TITLE.encode() in (tmp_path / "due" / "feeds" / "all.rss").read_bytes()


def test_an_article_leaves_every_output_when_it_expires(site, clock):
    app, client = site
    leaves = clock.now + timedelta(minutes=30)
    (result,) = post(client, embargoed(clock.now - timedelta(minutes=5), expires=leaves.isoformat()))["results"]
    assert (result["result"], result["status"]) == ("created", "published")
    read(client, "embargo")
    assert [url for url in public_urls() if not shows(client, url, EVERY_NAME if "opml" in url else ARTICLE)] == []
    etag = client.get("/feeds/all.rss").headers["ETag"]

    clock.now = leaves
    app.extensions["feeds"].schedule.step()
    assert [url for url in public_urls() if shows(client, url)] == []
    assert client.get("/feeds/all.rss", headers={"If-None-Match": etag}).status_code == 200
    assert read(client, "embargo") == {"recorded": 0, "not_public": 1}
    listed = client.get("/api/articles?status=expired", headers=TOKEN).get_json()
    assert listed["total"] == 1 and listed["articles"][0]["id"] == "embargo"
    assert datetime.fromisoformat(listed["articles"][0]["expires"]) == leaves
    store = app.extensions["feeds"].store
    assert feed_sizes(store) == counted_sizes(store)


def test_the_index_and_opml_keep_feeds_that_have_shown_an_article(site, clock):
    """A category, source or label made for an article that was public stays listed after it expires, as it
    does after a delete (its feed is empty and says so); one made for a scheduled article is not listed."""
    app, client = site
    post(client, embargoed(clock.now - timedelta(minutes=5), expires=(clock.now + timedelta(minutes=1)).isoformat()))
    clock.now += timedelta(minutes=1)
    app.extensions["feeds"].schedule.step()
    opml = etree.fromstring(client.get("/feeds.opml").data)
    assert opml.xpath(f"//outline[@xmlUrl='http://feeds.test/feeds/source/{slugify(SOURCE)}.rss']")
    assert SOURCE in client.get("/").get_data(as_text=True) and TITLE not in client.get("/").get_data(as_text=True)


def test_editing_the_times_reschedules(site, clock):
    app, client = site
    store = app.extensions["feeds"].store
    post(client, embargoed(clock.now - timedelta(minutes=5)))
    assert shows(client, "/feeds/all.rss")
    later = clock.now + timedelta(hours=3)
    (result,) = post(client, embargoed(later))["results"]
    assert (result["result"], result["status"]) == ("scheduled", "scheduled")
    assert not shows(client, "/feeds/all.rss") and not shows(client, f"/feeds/tag/{slugify(TAG)}.rss")
    assert feed_sizes(store) == counted_sizes(store)
    (result,) = post(client, embargoed(clock.now - timedelta(minutes=1)))["results"]
    assert (result["result"], result["status"]) == ("updated", "published")
    assert shows(client, "/feeds/all.rss") and shows(client, f"/feeds/search.rss?q={quote('并购')}")
    (result,) = post(client, embargoed(clock.now - timedelta(minutes=1), expires=clock.now.isoformat()))["results"]
    assert (result["result"], result["status"]) == ("updated", "expired")
    assert not shows(client, "/feeds/all.rss")
    assert feed_sizes(store) == counted_sizes(store)


def test_expires_must_come_after_published(site):
    _, client = site
    response = client.post("/api/articles", json=article(expires="2024-04-04 16:49:39"), headers=TOKEN)
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["field"] == "expires" and "not later than published" in error["message"]
    response = client.post("/api/articles", json=article(expires="next tuesday"), headers=TOKEN)
    assert response.get_json()["errors"][0]["field"] == "expires"


def test_no_output_is_dated_later_than_now(site):
    """An `updated` later than now is taken as now; sent again, it changes nothing."""
    _, client = site
    real_now = datetime.now(timezone.utc)
    ahead = (real_now + timedelta(days=400)).isoformat()
    (result,) = post(client, article(title="改过的标题", updated=ahead))["results"]
    assert result["result"] == "updated"
    (result,) = post(client, article(title="改过的标题", updated=ahead))["results"]
    assert result["result"] == "unchanged"
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    rss = feedparser.parse(client.get("/feeds/all.rss").data)
    atom = feedparser.parse(client.get("/feeds/all.atom").data)
    items = client.get("/feeds/all.json").get_json()["items"]
    dates = [datetime(*rss.feed.updated_parsed[:6], tzinfo=timezone.utc), datetime(*atom.feed.updated_parsed[:6], tzinfo=timezone.utc)]
    dates += [datetime(*entry.updated_parsed[:6], tzinfo=timezone.utc) for entry in atom.entries]
    dates += [datetime.fromisoformat(item[key]) for item in items for key in ("date_published", "date_modified") if key in item]
    dates.append(email.utils.parsedate_to_datetime(client.get("/feeds/all.rss").headers["Last-Modified"]))
    assert all(moment <= later for moment in dates), dates


def test_an_article_stored_dated_later_than_now_is_taken_out_by_the_first_release(sqlite_url):
    """As one stored before scheduling was known: public, with a date to come."""
    store = Store(sqlite_url)
    store.migrate()
    try:
        now = datetime.now(timezone.utc)
        ahead = Article("ahead", "https://news.example.cn/a.html", "来自未来", now + timedelta(days=1), ("热点",))
        store.articles.upsert([ahead], now=now + timedelta(days=2))  # public when written, by that clock
        assert [a.id for a in store.articles.newest(5)] == ["ahead"]
        assert store.articles.release(now) == 1
        assert store.articles.newest(5) == [] and store.articles.queued("scheduled", 5)[0] == 1
        assert feed_sizes(store) == counted_sizes(store) == {"all": 0, "category:redian": 0}
        assert store.articles.next_due() == ahead.published
    finally:
        store.close()


def test_the_timer_is_set_to_the_next_due_time(sqlite_url):
    store = Store(sqlite_url)
    store.migrate()
    try:
        now = datetime(2030, 1, 1, tzinfo=timezone.utc)
        schedule = Schedule(store, clock=lambda: now)
        assert schedule.step() == LOOK_EVERY
        store.articles.upsert([Article("soon", "https://news.example.cn/s.html", "快了", now + timedelta(seconds=0.3), ())], now=now)
        assert schedule.step() == pytest.approx(0.3)
        store.articles.upsert([Article("old", "https://news.example.cn/o.html", "旧", now - timedelta(days=1), (),
                                       expires=now + timedelta(seconds=0.1))], now=now)
        assert schedule.step() == pytest.approx(0.1)
    finally:
        store.close()


def test_the_queue_is_listed_by_the_api_and_the_terminal(site, clock):
    app, client = site
    for hours in (5, 2, 9):
        post(client, article(id=f"s{hours}", url=f"https://news.example.cn/s{hours}.html", title=f"{hours}小时后",
                             published=(clock.now + timedelta(hours=hours)).isoformat()))
    listed = client.get("/api/articles?status=scheduled&limit=2", headers=TOKEN).get_json()
    assert listed["total"] == 3 and [entry["id"] for entry in listed["articles"]] == ["s2", "s5"]
    assert client.get("/api/articles?status=expired", headers=TOKEN).get_json() == {"status": "expired", "total": 0, "articles": []}
    assert client.get("/api/articles?status=scheduled").status_code == 401
    for query, says in (("", "status: expected one of scheduled, expired, got nothing"), ("?status=published", "'published'"),
                        ("?status=scheduled&limit=0", "limit: expected a whole number from 1 to 1000")):
        answer = client.get(f"/api/articles{query}", headers=TOKEN)
        assert answer.status_code == 400 and says in answer.get_json()["error"], query
    printed = Runner(app).invoke("scheduled")
    assert printed.exit_code == 0
    lines = printed.output.splitlines()
    assert lines[0] == "3 scheduled (Asia/Shanghai):" and [line.split()[3] for line in lines[2:]] == ["s2", "s5", "s9"]
    due = (clock.now + timedelta(hours=2)).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
    assert lines[2].startswith(due)
    assert Runner(app).invoke("scheduled", "--expired").output == "No article is expired.\n"


def test_the_hub_delivers_a_scheduled_article_at_its_time_not_before(site, clock, subscribers):
    app, client = site
    subscribe(client, f"{subscribers.url}/reader", topic="http://feeds.test/feeds/all.rss")
    work(app)
    post(client, embargoed(clock.now + timedelta(minutes=10)))
    work(app)
    assert subscribers["reader"].deliveries == []
    clock.now += timedelta(minutes=10)
    app.extensions["feeds"].schedule.step()
    work(app)
    (_, body), = subscribers["reader"].deliveries
    assert feedparser.parse(body).entries[0].title == TITLE


def test_instances_releasing_at_once_move_each_article_once(database_url):
    """Four stores on one database (four instances), all releasing at the same moment."""
    announced: list[set[str]] = []
    stores = [Store(database_url, on_change=announced.append) for _ in range(4)]
    try:
        stores[0].migrate()
        now = datetime.now(timezone.utc)
        batch = [Article(f"a{n}", f"https://news.example.cn/{n}.html", f"第{n}条", now + timedelta(minutes=1), (f"栏目{n % 7}",),
                         tags=(f"标签{n % 5}",)) for n in range(1200)]
        stores[0].articles.upsert(batch, now=now)
        announced.clear()
        moved: list[int] = []
        start = threading.Barrier(len(stores))

        def release(store: Store) -> None:
            start.wait()
            moved.append(store.articles.release(now + timedelta(minutes=1)))

        threads = [threading.Thread(target=release, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(moved) == 1200
        assert feed_sizes(stores[0]) == counted_sizes(stores[0])
        assert counted_sizes(stores[0])["all"] == 1200
        assert sum(len(store.articles.newest(1000, label=label)) for store in stores[:1]
                   for label, _ in store.labels.most_used("tag")) == 1200
        with stores[0].db.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM article_categories")) == 1200
    finally:
        for store in stores:
            store.close()


def test_served_a_scheduled_article_appears_at_its_time_and_is_delivered(tmp_path, subscribers):
    """End to end: ``feeds serve`` with its hub, a real subscriber, and an article due two seconds after it is sent."""
    config = '[websub]\nallow_callbacks = ["127.0.0.1/32"]\ntimeout = 2\n'
    server = Served(tmp_path, SERVERS["default"], config=config)
    try:
        def get(path: str) -> bytes:
            with urllib.request.urlopen(f"{server.base}{path}", timeout=10) as answer:
                return answer.read()

        form = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.topic": f"{server.base}/feeds/all.rss",
                                       "hub.callback": f"{subscribers.url}/reader"}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{server.base}/hub", data=form), timeout=10).close()
        deadline = time.monotonic() + 10
        while not subscribers["reader"].verifications:
            assert time.monotonic() < deadline, "the hub never asked the subscriber to confirm"
            time.sleep(0.05)
        due = datetime.now(timezone.utc) + timedelta(seconds=2)
        body = json.dumps(embargoed(due), ensure_ascii=False).encode()
        request = urllib.request.Request(f"{server.base}/api/articles", data=body, method="POST",
                                         headers={"Content-Type": "application/json", **TOKEN})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.load(answer)["results"][0]["result"] == "scheduled"
        assert TITLE.encode() not in get("/feeds/all.rss")
        while TITLE.encode() not in get("/feeds/all.rss"):
            assert datetime.now(timezone.utc) < due + timedelta(seconds=3), "not public within three seconds of its time"
            time.sleep(0.02)
        assert datetime.now(timezone.utc) >= due
        while not subscribers["reader"].deliveries:
            assert datetime.now(timezone.utc) < due + timedelta(seconds=5), "not delivered within five seconds of its time"
            time.sleep(0.02)
        (_, delivered), = subscribers["reader"].deliveries
        assert feedparser.parse(delivered).entries[0].title == TITLE
    finally:
        server.stop()


def test_finding_what_falls_due_reads_indexes_not_the_articles(sqlite_url):
    """Every statement the schedule runs once a second, and every one of a release, is a search of an index:
    SQLite's plan for it names no scan of the articles table."""
    store = Store(sqlite_url)
    store.migrate()
    statements: list[tuple[str, tuple]] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "articles" in statement:
            statements.append((statement, parameters))

    try:
        now = datetime.now(timezone.utc)
        store.articles.upsert([Article(f"a{n}", f"https://news.example.cn/{n}.html", f"第{n}条", now + timedelta(minutes=n - 3),
                                       ("热点",), expires=now + timedelta(hours=n)) for n in range(6)], now=now)
        sa.event.listen(store.db.engine, "before_cursor_execute", seen)
        store.articles.next_due()
        assert store.articles.release(now + timedelta(minutes=1)) == 1
        sa.event.remove(store.db.engine, "before_cursor_execute", seen)
        queries = [statement for statement, _ in statements if "FROM articles" in statement]
        assert len(queries) >= 4
        with store.db.engine.connect() as conn:
            for statement, parameters in statements:
                plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
                assert not any(step.startswith("SCAN articles") for step in plan), (statement, plan)
    finally:
        store.close()


def test_what_fell_due_while_nothing_ran_is_published_as_the_service_starts(sqlite_url):
    store = Store(sqlite_url)
    store.migrate()
    now = datetime.now(timezone.utc)
    store.articles.upsert([Article("overdue", "https://news.example.cn/o.html", TITLE, now - timedelta(minutes=1), ("热点",))],
                          now=now - timedelta(hours=1))  # scheduled then, due a minute ago
    store.close()
    app = create_app(make_settings(sqlite_url), background=True)
    try:
        deadline = time.monotonic() + 10
        while TITLE not in app.test_client().get("/feeds/all.rss").get_data(as_text=True):
            assert time.monotonic() < deadline, "not published within ten seconds of the start"
            time.sleep(0.05)
    finally:
        app.extensions["feeds"].store.close()
