"""The polling fast path (feeds.web.FastPolls) answers exactly as Flask's feed view does: the same
status, headers and bytes for every kind of poll, counted alike; what it does not fully understand
it hands to Flask unchanged."""
from __future__ import annotations

import gzip
import logging
import itertools
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import brotli
import pytest
from flask import Flask
from freezegun import freeze_time
from werkzeug.http import http_date
from werkzeug.test import Client

from feeds import create_app
from feeds.errors import StoreUnavailable
from feeds.serving import RenderedFeeds
from tests.conftest import article, make_settings

PARTNER = "https://partner.example.com"
TOKEN = "s3cret"
ARTICLES = 5  # with feeds.default_limit 2: archive pages 1 and 2 are full


def make_app(database_url: str, origins: list[str]) -> Flask:
    app = create_app(make_settings(database_url, api={"token": TOKEN}, feeds={"default_limit": 2}, cors={"allow_origins": origins}))
    client = app.test_client()
    for number in range(ARTICLES):
        assert client.post("/api/articles", headers={"Authorization": f"Bearer {TOKEN}"}, json=article(
            id=f"a{number}", url=f"https://news.example.cn/{number}.html", title=f"第{number}条",
            published=f"2024-04-0{number + 1} 10:00:00")).status_code == 201
    return app


class Paths:
    """Clients of the whole app (the fast path in front) and of Flask alone, and which requests Flask saw."""

    def __init__(self, app: Flask):
        self.app = app
        self.reached_flask: list[str] = []
        flask = app.wsgi_app.flask  # type: ignore[attr-defined]

        def seen(environ: dict, start_response: Any) -> Any:
            query = environ.get("QUERY_STRING")
            self.reached_flask.append(environ["PATH_INFO"] + (f"?{query}" if query else ""))
            return flask(environ, start_response)

        app.wsgi_app.flask = seen  # type: ignore[attr-defined]
        self.fast = Client(app)
        self.flask = Client(seen)

    def both(self, method: str, url: str, headers: dict[str, str]) -> tuple:
        fast = self.fast.open(url, method=method, headers=headers)
        flask = self.flask.open(url, method=method, headers=headers)
        return ((fast.status_code, fast.headers.to_wsgi_list(), fast.get_data()),
                (flask.status_code, flask.headers.to_wsgi_list(), flask.get_data()))


@pytest.fixture(params=[["*"], [PARTNER]], ids=["any-origin", "listed-origins"])
def paths(request: pytest.FixtureRequest, database_url: str) -> Iterator[Paths]:
    app = make_app(database_url, request.param)
    yield Paths(app)
    app.extensions["feeds"].store.close()


FEEDS = ["/feeds/all.rss", "/feeds/category/redian.atom", "/feeds/source/hulianwang.json", "/feeds/hot/daily.rss",
         "/feeds/all.json?limit=1", "/feeds/category/redian/guonei.rss?limit=100", "/feeds/archive/all/1.atom",
         "/feeds/archive/category/redian/2.rss", "/feeds/all.rss?limit=2&variant=zh-TW", "/feeds/category/redian.atom?variant=zh-HK",
         "/feeds/search.rss?q=%E7%AC%AC", "/feeds/search.json?q=%E7%AC%AC%203&variant=zh-TW&limit=1", "/feeds/all.rss?utm_source=app"]
ENCODINGS = {"identity": "", "gzip": "gzip", "br": "br, gzip;q=0.5"}
ORIGINS = [None, PARTNER, "https://elsewhere.example"]


def validators(etag: str, last_modified: str) -> dict[str, dict[str, str]]:
    older = http_date(datetime(2020, 1, 1, tzinfo=timezone.utc))
    return {
        "none": {},
        "If-None-Match matching": {"If-None-Match": etag},
        "If-None-Match in a list": {"If-None-Match": f'"other", {etag}'},
        "If-None-Match not matching": {"If-None-Match": '"stale"'},
        "If-Modified-Since matching": {"If-Modified-Since": last_modified},
        "If-Modified-Since older": {"If-Modified-Since": older},
        "If-None-Match decides over If-Modified-Since": {"If-None-Match": '"stale"', "If-Modified-Since": last_modified},
    }


@pytest.mark.parametrize("url", FEEDS)
def test_every_poll_is_answered_as_flask_answers_it_and_never_reaches_flask(paths, url):
    answered = set()
    for method, (encoding, accept), origin in itertools.product(("GET", "HEAD"), ENCODINGS.items(), ORIGINS):
        base = {"Accept-Encoding": accept, **({"Origin": origin} if origin else {})}
        first = paths.fast.get(url, headers=base)
        assert first.status_code == 200, url
        for name, conditional in validators(first.headers["ETag"], first.headers["Last-Modified"]).items():
            case = f"{method} {url} {encoding} origin={origin} {name}"
            paths.reached_flask.clear()
            fast, flask = paths.both(method, url, {**base, **conditional})
            assert paths.reached_flask == [url], case  # only the Flask-alone request went through Flask
            assert fast == flask, case
            answered.add(fast[0])
            if fast[0] == 200 and method == "GET":
                body = {"identity": bytes, "gzip": gzip.decompress, "br": brotli.decompress}[encoding](fast[2])
                assert body.startswith(b"<?xml") or body.startswith(b"{"), case
    assert answered == {200, 304}


def test_the_answers_carry_what_a_poller_needs(paths):
    """Not only equal: right. (Flask's view is held to this by the other feed tests.)"""
    response = paths.fast.get("/feeds/all.rss", headers={"Accept-Encoding": "gzip", "Origin": PARTNER})
    assert response.headers["Content-Encoding"] == "gzip" and response.headers["Vary"] == "Accept-Encoding"
    assert response.headers["ETag"].endswith('-gzip"') and response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Link"] == '<http://feeds.test/hub>; rel="hub", <http://feeds.test/feeds/all.rss>; rel="self"'
    assert response.headers["Access-Control-Allow-Origin"] in ("*", PARTNER)
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    not_modified = paths.fast.get("/feeds/all.rss", headers={"Accept-Encoding": "gzip", "If-None-Match": response.headers["ETag"]})
    assert not_modified.status_code == 304 and not_modified.get_data() == b""
    assert {"Content-Encoding", "Content-Type", "Content-Length", "Last-Modified"}.isdisjoint(not_modified.headers.keys())
    archive = paths.fast.get("/feeds/archive/all/1.rss")
    assert archive.headers["Cache-Control"] == "public, max-age=86400" and "Link" not in archive.headers
    assert paths.reached_flask == []


@pytest.mark.parametrize("url, status", [
    ("/feeds/nothing.rss", 404),
    ("/feeds/category/nowhere.atom", 404),
    ("/feeds/all.xml", 404),
    ("/feeds/all.rss?limit=0", 400),
    ("/feeds/all.rss?limit=abc", 400),
    ("/feeds/all.rss?variant=zh-XX", 400),  # no such variant
    ("/feeds/search.rss?q=", 400),  # no term
    ("/feeds/all.html", 200),  # a page for people
    ("/feeds/archive/all/9.rss", 404),
    ("/feeds/search/abc.rss", 404),  # a keyword feed has one URL, with ?q=
    ("/feeds/search.rss?limit=2", 400),  # ... and needs its q
])
def test_what_the_fast_path_does_not_answer_goes_to_flask_unchanged(paths, url, status):
    for method in ("GET", "HEAD"):
        paths.reached_flask.clear()
        fast, flask = paths.both(method, url, {})
        assert paths.reached_flask == [url, url], method  # both requests went through Flask
        assert fast == flask and fast[0] == status, method


def test_other_methods_go_to_flask(paths):
    response = paths.fast.open("/feeds/all.rss", method="OPTIONS", headers={"Origin": PARTNER, "Access-Control-Request-Method": "GET"})
    assert response.status_code == 204 and paths.reached_flask == ["/feeds/all.rss"]
    assert paths.fast.post("/feeds/all.rss").status_code == 405


def test_a_failure_is_answered_by_flasks_error_handlers_and_tried_once(paths, monkeypatch):
    calls = []

    def down(*args, **kwargs):
        calls.append(args)
        raise StoreUnavailable("the database is away")

    assert paths.fast.get("/feeds/all.rss?limit=1").status_code == 200  # an answer kept from before
    monkeypatch.setattr(RenderedFeeds, "get", down)
    response = paths.fast.get("/feeds/all.rss")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert len(calls) == 1 and paths.reached_flask == ["/feeds/all.rss"]
    monkeypatch.setattr(RenderedFeeds, "stamp", down)  # the version check of a kept answer fails alike
    response = paths.fast.get("/feeds/all.rss?limit=1")
    assert response.status_code == 503 and len(calls) == 2 and paths.reached_flask == ["/feeds/all.rss", "/feeds/all.rss?limit=1"]


def test_fast_polls_are_counted_measured_and_logged(database_url, caplog):
    caplog.set_level(logging.INFO, logger="feeds")
    app = make_app(database_url, ["*"])
    paths = Paths(app)
    stats = app.extensions["feeds"].stats
    stats.flush()
    etag = paths.fast.get("/feeds/category/redian.rss", headers={"User-Agent": "Reader/1.0"}).headers["ETag"]
    for _ in range(3):
        assert paths.fast.get("/feeds/category/redian.atom?limit=1", headers={"User-Agent": "Reader/1.0"}).status_code == 200
    for _ in range(2):
        feedly = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 42 subscribers)"
        response = paths.fast.get("/feeds/category/redian.rss", headers={"If-None-Match": etag, "User-Agent": feedly})
        assert response.status_code == 304
    paths.fast.get("/feeds/nothing.rss")  # not a feed: not counted
    assert paths.reached_flask == ["/feeds/nothing.rss"]
    stats.flush()
    today = datetime.now(app.extensions["feeds"].settings.tz).date()
    polls = app.extensions["feeds"].store.polls
    days = {(day.feed, day.requests, day.not_modified) for day in polls.feed_days(today - timedelta(days=1), today)}
    assert days == {("category/redian", 6, 2)}
    assert app.extensions["feeds"].store.polls.reports(today)["category/redian"] == {"Feedly": 42}
    access = [record.getMessage() for record in caplog.records if record.name == "feeds.access"]
    assert access[-1].startswith("method=GET path=/feeds/nothing.rss status=404 ")
    assert access[-2].startswith("method=GET path=/feeds/category/redian.rss status=304 ") and " bytes=0 " in access[-2]
    assert " bytes=" in access[-3] and access[-3].startswith("method=GET path=/feeds/category/redian.rss status=304")
    metrics = app.test_client().get("/metrics").get_data(as_text=True)  # from 127.0.0.1
    assert 'feeds_http_requests_total{route="/feeds/<path:feed_path>",status="304"}' in metrics
    app.extensions["feeds"].store.close()


def test_the_day_a_poll_is_counted_on_is_the_sites(sqlite_url):
    """The day is worked out once a day, not once a poll; it still turns at the site's midnight."""
    from freezegun import freeze_time

    app = make_app(sqlite_url, ["*"])
    stats = app.extensions["feeds"].stats
    stats.flush()
    with freeze_time("2024-04-04 15:59:59", tz_offset=0) as frozen:  # 23:59:59 in Shanghai
        Client(app).get("/feeds/all.rss")
        frozen.tick(2)
        Client(app).get("/feeds/all.rss")
        stats.flush()
    days = app.extensions["feeds"].store.polls.feed_days(date(2024, 4, 4), date(2024, 4, 5))
    assert [(day.day, day.feed, day.requests) for day in days] == [(date(2024, 4, 4), "all", 1), (date(2024, 4, 5), "all", 1)]
    app.extensions["feeds"].store.close()


@pytest.mark.parametrize("proxies, pollers", [(0, 1), (1, 2)])
def test_behind_a_proxy_pollers_are_told_apart_by_their_forwarded_address(sqlite_url, proxies, pollers):
    app = create_app(make_settings(sqlite_url, api={"token": TOKEN}, server={"proxies": proxies}))
    client = app.test_client()
    assert client.post("/api/articles", json=article(), headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 201
    for reader in ("203.0.113.7", "198.51.100.9"):  # one proxy (127.0.0.1), two readers behind it
        assert client.get("/feeds/all.rss", headers={"X-Forwarded-For": reader, "User-Agent": "Reader/1.0"}).status_code == 200
    stats = app.extensions["feeds"].stats
    stats.flush()
    today = datetime.now(app.extensions["feeds"].settings.tz).date()
    assert [(day.requests, day.pollers) for day in app.extensions["feeds"].store.polls.feed_days(today, today)] == [(2, pollers)]
    app.extensions["feeds"].store.close()


def test_a_kept_answer_is_given_until_its_content_changes(paths):
    """The second poll of a URL is answered from the kept answer, without asking the cache; a write makes
    the next poll of any worker's answer the new content, and a hot list is ranked again each period."""
    services = paths.app.extensions["feeds"]
    first = paths.fast.get("/feeds/all.rss")
    rendered = []
    real_get = services.feeds.get
    services.feeds.get = lambda *args, **kwargs: rendered.append(args) or real_get(*args, **kwargs)
    again = paths.fast.get("/feeds/all.rss", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and rendered == []  # the kept answer, and not even a cache lookup
    assert paths.fast.post("/api/articles", headers={"Authorization": f"Bearer {TOKEN}"}, json=article(
        id="new", url="https://news.example.cn/new.html", title="新的一条", published="2024-04-09 10:00:00")).status_code == 201
    changed = paths.fast.get("/feeds/all.rss", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and "新的一条" in changed.get_data(as_text=True) and len(rendered) == 1
    hot = paths.fast.get("/feeds/hot/daily.rss")
    assert paths.fast.get("/feeds/hot/daily.rss").status_code == 200 and len(rendered) == 2
    with freeze_time(datetime.now(timezone.utc) + timedelta(seconds=services.settings.cache.hot_ttl)):
        assert paths.fast.get("/feeds/hot/daily.rss").status_code == 200
    assert [args[0] for args in rendered] == ["all", "hot/daily", "hot/daily"]  # looked up again in the next period
    assert paths.reached_flask == ["/api/articles"] and hot.status_code == 200


def test_kept_answers_stay_within_their_bound(sqlite_url):
    app = make_app(sqlite_url, ["*"])
    fast = app.wsgi_app
    client = Client(app)
    size = len(client.get("/feeds/all.rss", headers={"Accept-Encoding": "identity"}).get_data())
    fast.max_bytes = 3 * size + size // 2
    for limit in range(1, 6):  # each ?limit= its own answer: all.rss?limit=5 holds the same five articles as all.rss
        assert client.get(f"/feeds/all.rss?limit={limit}", headers={"Accept-Encoding": "identity"}).status_code == 200
    kept = list(fast._answers)
    assert ("/feeds/all.rss", "", "identity", None) not in kept and fast._bytes == sum(len(answer.body) for answer in fast._answers.values()) <= fast.max_bytes
    assert kept[-1][:2] == ("/feeds/all.rss", "limit=5")  # the newest stay; the oldest went first
    for junk in range(200):  # anyone's Accept-Encoding text: each is a kept answer of its own, within the bound
        assert client.get("/feeds/all.rss?limit=1", headers={"Accept-Encoding": f"x-{junk}"}).status_code == 200
    assert fast._bytes <= fast.max_bytes
    app.extensions["feeds"].store.close()
