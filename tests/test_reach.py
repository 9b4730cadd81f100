"""Reach: robots.txt, the sitemaps, and the pushes to IndexNow and Baidu, against local fake endpoints.

The fakes are ``test_hub.Subscribers``: an HTTP server on loopback whose paths each note the requests
they get and answer as a test says. ``Sender.work_once`` is called by the tests themselves.
"""
from __future__ import annotations

import gzip
import json
import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

import pytest
import sqlalchemy as sa
from lxml import etree

from feeds import create_app, sitemaps
from feeds.store import sitemaps as store_sitemaps
from feeds.config import load_settings
from feeds.errors import ConfigError
from feeds.store.schema import outbox
from tests import test_hub
from tests.conftest import article, make_settings

subscribers = test_hub.subscribers  # the fixture: the fake endpoints
TOKEN = {"Authorization": "Bearer s3cret"}
KEY = "a1b2c3d4-e5f6"
NS = {"s": sitemaps.SITEMAP, "news": sitemaps.NEWS}
BEIJING = timezone(timedelta(hours=8))


@pytest.fixture
def reach(database_url, subscribers):
    """An app pushing to a fake IndexNow and a fake Baidu; its clock, the schedule's, is the real one."""
    app = create_app(make_settings(database_url, api={"token": "s3cret"}, indexnow={"key": KEY, "endpoint": f"{subscribers.url}/indexnow"},
                                   baidu={"site": "https://news.example.cn", "token": "bd-token", "endpoint": f"{subscribers.url}/baidu"},
                                   robots={"lines": ["Disallow: /private/"]}))
    app.config["TESTING"] = True
    subscribers["baidu/urls"].reply = b'{"remain": 99998, "success": 1}'
    subscribers["baidu/update"].reply = b'{"remain": 99998, "success": 1}'
    subscribers["baidu/del"].reply = b'{"success": 1}'
    yield app
    app.extensions["feeds"].store.close()


def post(client, *articles: dict) -> None:
    response = client.post("/api/articles", json=list(articles), headers=TOKEN)
    assert response.status_code in (200, 201), response.get_json()


def news(n: int, **changes) -> dict:
    moment = datetime.now(timezone.utc) - timedelta(hours=n)
    return article(**{"id": f"n{n}", "url": f"https://news.example.cn/n/{n}.html", "title": f"新闻{n}", "published": moment.isoformat(),
                      **changes})


def push(app, now: datetime | None = None) -> None:
    while app.extensions["feeds"].sender.work_once(now):
        pass


def xml(client, url: str) -> etree._Element:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert response.content_type == "application/xml; charset=utf-8"
    return etree.fromstring(response.data)


def listed(client) -> list[str]:
    """Every URL the article sitemaps list, page after page as the index names them."""
    index = xml(client, "/sitemap.xml")
    urls = []
    for loc in index.xpath("//s:sitemap/s:loc/text()", namespaces=NS):
        if "/sitemaps/articles-" in loc:
            urls += xml(client, loc.removeprefix("http://feeds.test")).xpath("//s:url/s:loc/text()", namespaces=NS)
    return urls


def test_robots_names_the_sitemaps_by_absolute_url(reach):
    text = reach.test_client().get("/robots.txt").get_data(as_text=True)
    lines = text.splitlines()
    assert "Sitemap: http://feeds.test/sitemap.xml" in lines and "Sitemap: http://feeds.test/sitemaps/news.xml" in lines
    assert lines[-1] == "Disallow: /private/" and "Disallow: /api/" in lines


def test_every_public_article_is_listed_once_in_pages_that_a_new_article_leaves_alone(reach, monkeypatch):
    monkeypatch.setattr(store_sitemaps, "PAGE", 2)
    client = reach.test_client()
    post(client, *(news(n) for n in range(1, 6)), news(7, url="https://news.example.cn/n/1.html"))  # a URL twice
    urls = listed(client)
    assert sorted(urls) == sorted(f"https://news.example.cn/n/{n}.html" for n in range(1, 6))
    index = xml(client, "/sitemap.xml")
    pages = index.xpath("//s:sitemap/s:loc/text()", namespaces=NS)
    assert pages == [f"http://feeds.test/sitemaps/articles-{n}.xml" for n in (1, 2, 3)] + ["http://feeds.test/sitemaps/news.xml"]
    for stamp in index.xpath("//s:lastmod/text()", namespaces=NS):
        assert stamp.endswith("+08:00") and datetime.fromisoformat(stamp) <= datetime.now(timezone.utc)
    first = client.get("/sitemaps/articles-1.xml")
    assert client.get("/sitemaps/articles-1.xml", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    zipped = client.get("/sitemaps/articles-1.xml", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped.data) == first.data

    post(client, news(8))  # stored seventh: the last page changes, the first does not
    assert client.get("/sitemaps/articles-1.xml", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert "https://news.example.cn/n/8.html" in listed(client)
    assert client.get("/sitemaps/articles-9.xml").status_code == 404
    assert client.get("/sitemaps/articles-0.xml").status_code == 404


def test_nothing_scheduled_or_expired_is_in_a_sitemap_or_pushed(reach, subscribers):
    client = reach.test_client()
    schedule = reach.extensions["feeds"].schedule
    due = datetime.now(timezone.utc) + timedelta(hours=1)
    post(client, news(1, expires=(datetime.now(timezone.utc) + timedelta(minutes=30)).isoformat()),
         article(id="later", url="https://news.example.cn/later.html", title="稍后", published=due.isoformat()))
    push(reach)
    assert "https://news.example.cn/later.html" not in listed(client)
    assert b"later.html" not in client.get("/sitemaps/news.xml").data
    sent = [json.loads(body)["urlList"] for _, body in subscribers["indexnow"].deliveries]
    assert sent == [["https://news.example.cn/n/1.html"]]
    assert [body for _, body in subscribers["baidu/urls"].deliveries] == [b"https://news.example.cn/n/1.html"]

    schedule.clock = lambda: due + timedelta(minutes=1)  # the one leaves, the other joins
    schedule.step()
    push(reach, due + timedelta(minutes=1))
    assert listed(client) == ["https://news.example.cn/later.html"]
    assert json.loads(subscribers["indexnow"].deliveries[-1][1])["urlList"] in (
        ["https://news.example.cn/n/1.html", "https://news.example.cn/later.html"],
        ["https://news.example.cn/later.html", "https://news.example.cn/n/1.html"])
    assert subscribers["baidu/urls"].deliveries[-1][1] == b"https://news.example.cn/later.html"
    assert subscribers["baidu/del"].deliveries[-1][1] == b"https://news.example.cn/n/1.html"


def test_the_news_sitemap_holds_the_last_two_days(reach, monkeypatch):
    monkeypatch.setattr(sitemaps, "NEWS_MOST", 3)
    client = reach.test_client()
    post(client, *(news(n) for n in (1, 5, 20, 47)), news(49), news(80))
    root = xml(client, "/sitemaps/news.xml")
    assert root.xpath("//s:url/s:loc/text()", namespaces=NS) == [f"https://news.example.cn/n/{n}.html" for n in (1, 5, 20)]
    first = root.xpath("//s:url", namespaces=NS)[0]
    assert first.xpath("news:news/news:publication/news:name/text()", namespaces=NS) == ["融易新闻"]
    assert first.xpath("news:news/news:publication/news:language/text()", namespaces=NS) == ["zh-cn"]
    assert first.xpath("news:news/news:title/text()", namespaces=NS) == ["新闻1"]
    (stamp,) = first.xpath("news:news/news:publication_date/text()", namespaces=NS)
    assert stamp.endswith("+08:00") and abs(datetime.fromisoformat(stamp) - (datetime.now(timezone.utc) - timedelta(hours=1))) < timedelta(minutes=1)


def test_indexnow_gets_the_urls_written_together_in_one_request_and_the_key_file_is_served(reach, subscribers):
    client = reach.test_client()
    assert client.get(f"/{KEY}.txt").get_data(as_text=True) == KEY
    assert client.get("/wrong-key-000.txt").status_code == 404
    post(client, news(1))
    post(client, news(2))
    post(client, news(3, url="https://m.example.cn/n/3.html"))
    push(reach)
    requests = subscribers["indexnow"].deliveries
    assert len(requests) == 2  # one per host
    by_host = {json.loads(body)["host"]: (headers, json.loads(body)) for headers, body in requests}
    headers, body = by_host["news.example.cn"]
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert body == {"host": "news.example.cn", "key": KEY, "keyLocation": f"https://news.example.cn/{KEY}.txt",
                    "urlList": body["urlList"]}
    assert sorted(body["urlList"]) == ["https://news.example.cn/n/1.html", "https://news.example.cn/n/2.html"]
    assert by_host["m.example.cn"][1]["urlList"] == ["https://m.example.cn/n/3.html"]
    post(client, news(1, title="改过"))  # an edit is pushed too
    push(reach)
    assert json.loads(requests[-1][1])["urlList"] == ["https://news.example.cn/n/1.html"]


def test_baidu_gets_new_edited_and_deleted_urls_at_their_own_paths(reach, subscribers):
    client = reach.test_client()
    post(client, news(1), news(2))
    push(reach)
    (headers, body), = subscribers["baidu/urls"].deliveries
    assert headers["Content-Type"] == "text/plain" and sorted(body.decode().splitlines()) == [
        "https://news.example.cn/n/1.html", "https://news.example.cn/n/2.html"]
    assert parse_qs(headers["query"]) == {"site": ["https://news.example.cn"], "token": ["bd-token"]}
    post(client, news(1, title="改过"))
    assert client.delete("/api/articles/n2", headers=TOKEN).status_code == 200
    push(reach)
    assert [body for _, body in subscribers["baidu/update"].deliveries] == [b"https://news.example.cn/n/1.html"]
    assert [body for _, body in subscribers["baidu/del"].deliveries] == [b"https://news.example.cn/n/2.html"]
    (state,) = [state for state in reach.extensions["feeds"].store.outbox.states() if state.channel == "baidu"]
    assert (state.queued, state.sent, state.failed, state.remain) == (0, 4, 0, 99998)


def test_baidu_quota_spent_holds_new_urls_until_the_next_beijing_day(reach, subscribers, caplog):
    client = reach.test_client()
    subscribers["baidu/urls"].reply = b'{"remain": 0, "success": 1, "not_valid": ["https://news.example.cn/n/2.html"]}'
    with caplog.at_level(logging.WARNING, "feeds.reach"):
        post(client, news(1), news(2))
        push(reach)
    assert "not_valid" in caplog.text and "n/2.html" in caplog.text
    post(client, news(3))
    post(client, news(1, title="改过"))
    push(reach)
    assert len(subscribers["baidu/urls"].deliveries) == 1  # the quota is spent: n3 waits
    assert subscribers["baidu/update"].deliveries[-1][1] == b"https://news.example.cn/n/1.html"  # edits still go
    with reach.extensions["feeds"].store.db.engine.connect() as conn:
        (due,) = conn.execute(sa.select(outbox.c.due).where(outbox.c.channel == "baidu")).scalars().all()
    local = due.astimezone(BEIJING)
    assert (local.hour, local.minute) == (0, 0) and local.date() == datetime.now(BEIJING).date() + timedelta(days=1)


@pytest.mark.parametrize("status, headers, kept", [(429, {"Retry-After": "120"}, 120), (503, {}, 2), (400, {}, None)])
def test_failures_are_retried_with_backoff_or_given_up(reach, subscribers, status, headers, kept, caplog):
    client = reach.test_client()
    subscribers["indexnow"].status = status
    subscribers["indexnow"].headers = headers
    before = datetime.now(timezone.utc)
    with caplog.at_level(logging.WARNING):
        post(client, news(1))
        push(reach)
    with reach.extensions["feeds"].store.db.engine.connect() as conn:
        rows = conn.execute(sa.select(outbox).where(outbox.c.channel == "indexnow")).all()
    (state,) = [state for state in reach.extensions["feeds"].store.outbox.states() if state.channel == "indexnow"]
    assert f"HTTP {status}" in state.last_error
    if kept is None:
        assert rows == [] and state.failed == 1 and "gave up" in caplog.text
    else:
        (row,) = rows
        assert row.attempts == 1 and row.due - before >= timedelta(seconds=kept) and state.failed == 0
        subscribers["indexnow"].status = 200
        push(reach)  # not due yet: nothing more is sent
        assert len(subscribers["indexnow"].deliveries) == 1
        reach.extensions["feeds"].sender.work_once(now=row.due + timedelta(seconds=1))
        assert len(subscribers["indexnow"].deliveries) == 2
        (state,) = [state for state in reach.extensions["feeds"].store.outbox.states() if state.channel == "indexnow"]
        assert state.sent == 1 and state.queued == 0


def test_the_queue_survives_the_process_and_two_instances_send_each_url_once(database_url, subscribers):
    settings = make_settings(database_url, api={"token": "s3cret"}, indexnow={"key": KEY, "endpoint": f"{subscribers.url}/indexnow"})
    first = create_app(settings)
    post(first.test_client(), news(1), news(2))
    first.extensions["feeds"].store.close()  # as if killed before it pushed: the URLs are in the store
    a, b = create_app(settings), create_app(settings)
    try:
        for app in (a, b, a, b):
            push(app)
        sent = [url for _, body in subscribers["indexnow"].deliveries for url in json.loads(body)["urlList"]]
        assert sorted(sent) == ["https://news.example.cn/n/1.html", "https://news.example.cn/n/2.html"]
    finally:
        a.extensions["feeds"].store.close()
        b.extensions["feeds"].store.close()


def test_the_newsroom_sees_the_pushes(reach, subscribers):
    client = reach.test_client()
    post(client, news(1))
    push(reach)
    page = client.get("/admin/stats", headers=TOKEN).get_data(as_text=True)
    assert "推送" in page and "IndexNow" in page and "百度" in page and "99998" in page
    pushes = client.get("/admin/stats.json", headers=TOKEN).get_json()["pushes"]
    assert {entry["channel"]: entry["sent"] for entry in pushes if entry["channel"] in ("indexnow", "baidu")} == {"indexnow": 1, "baidu": 1}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'feeds_pushes_queued{channel="indexnow"} 0.0' in metrics
    assert 'feeds_pushes_total{channel="baidu",result="sent"}' in metrics


@pytest.mark.parametrize("section, values, says", [
    ("indexnow", {"key": "short"}, "indexnow.key"),
    ("indexnow", {"key": "has space in it"}, "indexnow.key"),
    ("baidu", {"token": "t"}, "baidu.site"),
    ("baidu", {"endpoint": "ftp://x"}, "baidu.endpoint"),
    ("robots", {"lines": ["a\nb"]}, "robots.lines[0]"),
])
def test_bad_push_settings_name_the_key(section, values, says):
    with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]")):
        load_settings(overrides={section: values}, environ={})


def test_the_kept_sitemap_pages_equal_a_fresh_count_after_every_kind_of_change(database_url, monkeypatch):
    """Creates, edits (a new time, a new URL), deletes, scheduling and expiry: the pages kept by the writes are what
    counting every article again gives."""
    from feeds.store import Store
    from feeds.store.sitemaps import Sitemaps

    monkeypatch.setattr(store_sitemaps, "PAGE", 3)
    store = Store(database_url)
    store.migrate()
    try:
        now = datetime.now(timezone.utc)
        from feeds.model import Article

        def made(n: int, **changes) -> Article:
            fields = {"id": f"a{n}", "url": f"https://news.example.cn/{n}.html", "title": f"第{n}条",
                      "published": now - timedelta(hours=n), "category": ("热点",), **changes}
            return Article(**fields)

        def kept_equals_fresh() -> None:
            kept = store.sitemaps.pages()
            with store.db.engine.begin() as conn:
                Sitemaps.count_all(conn)
            assert kept == store.sitemaps.pages()

        store.articles.upsert([made(n) for n in range(10)], now=now)
        kept_equals_fresh()
        store.articles.upsert([made(1, published=now - timedelta(minutes=1)), made(4, url="https://news.example.cn/new4.html"),
                               made(7, published=now + timedelta(hours=1)), made(8, expires=now + timedelta(minutes=5))], now=now)
        kept_equals_fresh()
        assert store.articles.delete("a2") and store.articles.delete("a5")
        kept_equals_fresh()
        store.articles.release(now + timedelta(hours=2))  # a7 joins, a8 leaves
        kept_equals_fresh()
        assert [number for number, _ in store.sitemaps.pages()] == [1, 2, 3, 4]
        store.articles.upsert([made(n, expires=now + timedelta(minutes=1)) for n in (6, 7)], now=now)
        store.articles.release(now + timedelta(hours=3))  # page 3 (a6, a7, a8: pks 7 to 9) is empty now
        kept_equals_fresh()
        assert [number for number, _ in store.sitemaps.pages()] == [1, 2, 4]
    finally:
        store.close()
