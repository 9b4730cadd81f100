"""RFC 5005 archived feeds: every feed but the hot lists links back to immutable pages of
``archive_size`` articles counted from the oldest, so a poller that was away can backfill."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import feedparser
import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree

from feeds import create_app
from tests.conftest import article, make_settings

FH = "http://purl.org/syndication/history/1.0"
PAGE = 3  # feeds.default_limit here, which is also the archive page size
AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    app = create_app(make_settings(database_url, api={"token": "s3cret"}, feeds={"default_limit": PAGE}))
    app.config["TESTING"] = True
    yield app
    app.extensions["feeds"].store.close()


def post(client: FlaskClient, *articles: dict[str, Any]) -> None:
    response = client.post("/api/articles", json=list(articles), headers=AUTH)
    assert response.status_code in (200, 201), response.get_json()


def numbered(n: int, **changes: Any) -> dict[str, Any]:
    """Article ``n``, published on day ``n`` of April 2024: higher numbers are newer."""
    fields = {"id": f"a{n:03}", "url": f"https://news.example.cn/{n}.html", "title": f"第{n}篇",
              "published": f"2024-04-{n:02} 08:00:00", **changes}
    return article(**fields)


@pytest.fixture
def seven(client: FlaskClient) -> None:
    """Seven articles: archive pages 1 (a001-a003) and 2 (a004-a006); a007 is only in the feed."""
    post(client, *(numbered(n, source="新华社" if n % 2 else "互联网") for n in range(1, 8)))


def links(body: bytes, extension: str) -> dict[str, str]:
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.bozo_exception
    return {link.rel: link.href for link in parsed.feed.links}


def ids(body: bytes) -> list[str]:
    return [entry.id.rsplit(":", 1)[-1] for entry in feedparser.parse(body).entries]


def backfill(client: FlaskClient, url: str) -> list[str]:
    """What a poller that was away does (RFC 5005 §4): read the feed, then follow prev-archive."""
    seen = []
    while url:
        response = client.get(url.removeprefix("http://feeds.test"))
        assert response.status_code == 200
        seen += ids(response.data)
        url = links(response.data, "rss").get("prev-archive", "")
    return seen


@pytest.mark.usefixtures("seven")
@pytest.mark.parametrize("path, expected", [
    ("all", {f"a{n:03}" for n in range(1, 8)}),
    ("category/redian", {f"a{n:03}" for n in range(1, 8)}),
    ("source/xinhuashe", {"a001", "a003", "a005", "a007"}),
])
def test_feed_and_its_archive_hold_every_article_once(client: FlaskClient, path: str, expected: set[str]) -> None:
    for extension in ("rss", "atom"):
        seen = backfill(client, f"/feeds/{path}.{extension}")
        assert set(seen) == expected  # overlap is fine (readers go by guid), a gap is not


@pytest.mark.usefixtures("seven")
def test_subscription_document_links_its_newest_full_page(client: FlaskClient) -> None:
    rss = client.get("/feeds/all.rss")
    assert links(rss.data, "rss")["prev-archive"] == "http://feeds.test/feeds/archive/all/2.rss"
    assert links(client.get("/feeds/all.atom").data, "atom")["prev-archive"] == "http://feeds.test/feeds/archive/all/2.atom"
    assert json.loads(client.get("/feeds/all.json").data)["next_url"] == "http://feeds.test/feeds/archive/all/2.json"
    assert etree.fromstring(rss.data).find(f"channel/{{{FH}}}archive") is None
    assert ids(rss.data) == ["a007", "a006", "a005"]


@pytest.mark.usefixtures("seven")
def test_archive_page_is_marked_linked_and_cached_long(client: FlaskClient) -> None:
    response = client.get("/feeds/archive/all/1.atom")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=86400"
    root = etree.fromstring(response.data)
    assert root.find(f"{{{FH}}}archive") is not None
    assert links(response.data, "atom") == {
        "self": "http://feeds.test/feeds/archive/all/1.atom",
        "alternate": "https://news.example.cn/",
        "current": "http://feeds.test/feeds/all.atom",
        "next-archive": "http://feeds.test/feeds/archive/all/2.atom",
    }
    assert ids(response.data) == ["a003", "a002", "a001"]

    newest = client.get("/feeds/archive/all/2.rss")
    channel = etree.fromstring(newest.data).find("channel")
    assert channel.find(f"{{{FH}}}archive") is not None
    assert links(newest.data, "rss") == {
        "self": "http://feeds.test/feeds/archive/all/2.rss",
        "alternate": "https://news.example.cn/",
        "current": "http://feeds.test/feeds/all.rss",
        "prev-archive": "http://feeds.test/feeds/archive/all/1.rss",
    }
    document = json.loads(client.get("/feeds/archive/all/2.json").data)
    assert document["next_url"] == "http://feeds.test/feeds/archive/all/1.json"
    assert [item["id"].rsplit(":", 1)[-1] for item in document["items"]] == ["a006", "a005", "a004"]
    assert "next_url" not in json.loads(client.get("/feeds/archive/all/1.json").data)


@pytest.mark.usefixtures("seven")
def test_new_articles_leave_archive_pages_alone(client: FlaskClient) -> None:
    first, newest = client.get("/feeds/archive/all/1.rss"), client.get("/feeds/archive/all/2.rss")
    post(client, numbered(8))
    for before in (first, newest):
        again = client.get(before.request.path, headers={"If-None-Match": before.headers["ETag"]})
        assert again.status_code == 304
    post(client, numbered(9))  # completes page 3
    assert client.get("/feeds/archive/all/1.rss", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    # The newest page changes once, when the next one completes: it gains its next-archive link.
    again = client.get("/feeds/archive/all/2.rss")
    assert ids(again.data) == ids(newest.data) == ["a006", "a005", "a004"]
    assert links(again.data, "rss")["next-archive"] == "http://feeds.test/feeds/archive/all/3.rss"
    assert ids(client.get("/feeds/archive/all/3.rss").data) == ["a009", "a008", "a007"]
    assert links(client.get("/feeds/all.rss").data, "rss")["prev-archive"] == "http://feeds.test/feeds/archive/all/3.rss"


@pytest.mark.usefixtures("seven")
def test_an_edited_old_article_changes_its_page_and_is_never_served_stale(client: FlaskClient) -> None:
    before = client.get("/feeds/archive/all/1.rss")
    post(client, numbered(2, title="更正后的标题", updated="2024-05-01 09:00:00"))
    after = client.get("/feeds/archive/all/1.rss", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert "更正后的标题" in [entry.title for entry in feedparser.parse(after.data).entries]
    assert client.get("/feeds/archive/all/2.rss").status_code == 200


@pytest.mark.usefixtures("seven")
def test_back_dated_insert_and_delete_move_later_boundaries_and_keep_every_article(client: FlaskClient) -> None:
    post(client, numbered(0, id="a000", published="2024-03-31 08:00:00"))
    assert ids(client.get("/feeds/archive/all/1.rss").data) == ["a002", "a001", "a000"]
    assert set(backfill(client, "/feeds/all.rss")) == {f"a{n:03}" for n in range(0, 8)}
    assert client.delete("/api/articles/a000", headers=AUTH).status_code == 200
    assert client.delete("/api/articles/a001", headers=AUTH).status_code == 200
    assert ids(client.get("/feeds/archive/all/1.rss").data) == ["a004", "a003", "a002"]
    assert ids(client.get("/feeds/archive/all/2.rss").data) == ["a007", "a006", "a005"]
    assert client.get("/feeds/archive/all/3.rss").status_code == 404
    assert set(backfill(client, "/feeds/all.rss")) == {f"a{n:03}" for n in range(2, 8)}


@pytest.mark.usefixtures("seven")
@pytest.mark.parametrize("path", [
    "/feeds/archive/all/0.rss", "/feeds/archive/all/01.rss", "/feeds/archive/all/3.rss", "/feeds/archive/all/x.rss",
    "/feeds/archive/all.rss", "/feeds/archive/hot/daily/1.rss", "/feeds/archive/archive/all/1/1.rss",
    "/feeds/archive/source/nowhere/1.rss",
])
def test_no_such_archive_page(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_hot_lists_and_short_feeds_link_no_archive(client: FlaskClient) -> None:
    post(client, numbered(1), numbered(2))
    assert "prev-archive" not in links(client.get("/feeds/all.rss").data, "rss")
    assert "next_url" not in json.loads(client.get("/feeds/all.json").data)
    post(client, numbered(3))
    assert "prev-archive" not in links(client.get("/feeds/hot/daily.atom").data, "atom")
