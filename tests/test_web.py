"""Conditional GET, HEAD, caching headers, the index page and OPML."""
from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

import feedparser
import pytest
from lxml import etree, html

from tests.conftest import article


@pytest.fixture
def loaded(runner, write_jsonl):
    rows = [
        article(),
        article(id="old", url="https://news.example.cn/old.html", title="旧闻 <b>&</b> “引号”", published="2024-03-01 08:00:00",
                category="财经/股票/港股", source="经济日报 & 伙伴"),
    ]
    assert runner.invoke("import", write_jsonl(rows)).exit_code == 0


def test_validators_on_every_feed(loaded, client):
    response = client.get("/feeds/all.rss")
    assert response.status_code == 200
    etag = response.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert parsedate_to_datetime(response.headers["Last-Modified"]) == datetime(2024, 4, 4, 8, 49, 39, tzinfo=timezone.utc)
    assert response.headers["Cache-Control"] in ("public, max-age=300", "max-age=300, public")


def test_if_none_match_gives_304_without_body(loaded, client):
    etag = client.get("/feeds/all.rss").headers["ETag"]
    response = client.get("/feeds/all.rss", headers={"If-None-Match": etag})
    assert response.status_code == 304 and response.data == b""
    assert response.headers["ETag"] == etag
    assert client.get("/feeds/all.rss", headers={"If-None-Match": '"something-else"'}).status_code == 200
    assert client.get("/feeds/all.rss", headers={"If-None-Match": f'"x", {etag}'}).status_code == 304
    assert client.get("/feeds/all.rss", headers={"If-None-Match": f"W/{etag}"}).status_code == 304  # weak comparison
    assert client.get("/feeds/all.rss", headers={"If-None-Match": "*"}).status_code == 304
    assert client.get("/feeds/all.rss", headers={"If-None-Match": etag[:-2] + '"'}).status_code == 200
    last_modified = client.get("/feeds/all.rss").headers["Last-Modified"]
    # an empty If-None-Match is no validator: If-Modified-Since decides
    assert client.get("/feeds/all.rss", headers={"If-None-Match": "", "If-Modified-Since": last_modified}).status_code == 304


def test_if_modified_since(loaded, client):
    last_modified = client.get("/feeds/all.atom").headers["Last-Modified"]
    assert client.get("/feeds/all.atom", headers={"If-Modified-Since": last_modified}).status_code == 304
    earlier = format_datetime(datetime(2024, 4, 4, 8, 49, 38, tzinfo=timezone.utc), usegmt=True)
    assert client.get("/feeds/all.atom", headers={"If-Modified-Since": earlier}).status_code == 200


def test_if_none_match_decides_when_both_are_sent(loaded, client):
    last_modified = client.get("/feeds/all.rss").headers["Last-Modified"]
    # A stale ETag with a current date: the content differs, so the answer is the new body.
    response = client.get("/feeds/all.rss", headers={"If-None-Match": '"stale"', "If-Modified-Since": last_modified})
    assert response.status_code == 200 and response.data
    etag = response.headers["ETag"]
    long_ago = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get("/feeds/all.rss", headers={"If-None-Match": etag, "If-Modified-Since": long_ago}).status_code == 304


def test_head(loaded, client):
    get = client.get("/feeds/all.json")
    head = client.head("/feeds/all.json")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Length"] == str(len(get.data))


def test_editing_an_old_article_moves_last_modified_and_etag(loaded, client, runner, write_jsonl):
    before = client.get("/feeds/category/caijing.rss")
    edited = article(id="old", url="https://news.example.cn/old.html", title="旧闻(更正)", published="2024-03-01 08:00:00",
                     category="财经/股票/港股", updated="2024-04-10 12:00:00")
    assert runner.invoke("import", write_jsonl([edited], "edit.jsonl")).exit_code == 0
    after = client.get("/feeds/category/caijing.rss", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert parsedate_to_datetime(after.headers["Last-Modified"]) == datetime(2024, 4, 10, 4, 0, tzinfo=timezone.utc)


def test_edit_without_updated_time_is_stamped_with_the_import_time(loaded, client, runner, write_jsonl):
    edited = article(id="old", url="https://news.example.cn/old.html", title="旧闻(再更正)", published="2024-03-01 08:00:00",
                     category="财经/股票/港股")
    started = datetime.now(timezone.utc).replace(microsecond=0)
    assert runner.invoke("import", write_jsonl([edited], "edit.jsonl")).exit_code == 0
    modified = parsedate_to_datetime(client.get("/feeds/category/caijing.rss").headers["Last-Modified"])
    assert modified >= started


def test_index_lists_every_feed_with_autodiscovery(loaded, client):
    response = client.get("/")
    assert response.status_code == 200 and response.content_type == "text/html; charset=utf-8"
    page = html.fromstring(response.data)
    discovered = {link.get("href") for link in page.xpath("//head/link[@rel='alternate']")}
    for path in ("all", "category/redian", "category/redian/guonei", "category/caijing/gupiao/ganggu", "source/hulianwang",
                 "hot/daily", "hot/weekly"):
        assert f"http://feeds.test/feeds/{path}.rss" in discovered
    assert "http://feeds.test/feeds/all.atom" in discovered and "http://feeds.test/feeds/all.json" in discovered
    body_links = {a.get("href") for a in page.xpath("//body//a")}
    assert "http://feeds.test/feeds/category/redian/guonei.json" in body_links
    assert "/feeds.opml" in body_links


def test_index_escapes_names(loaded, client):
    text = client.get("/").get_data(as_text=True)
    assert "经济日报 &amp; 伙伴" in text and "经济日报 & 伙伴" not in text


def test_opml_lists_every_feed_grouped_by_kind(loaded, client):
    response = client.get("/feeds.opml")
    assert response.status_code == 200 and response.content_type == "text/x-opml; charset=utf-8"
    root = etree.fromstring(response.data)
    assert root.get("version") == "2.0"
    groups = {outline.get("text"): outline for outline in root.find("body")}
    assert list(groups) == ["全部文章", "栏目", "来源", "热门文章"]
    feeds = {o.get("xmlUrl"): o for o in root.iter("outline") if o.get("xmlUrl")}
    for url, outline in feeds.items():
        assert outline.get("type") == "rss" and outline.get("htmlUrl")
        title = feedparser.parse(client.get(url.replace("http://feeds.test", "")).data).feed.title
        assert outline.get("text") == outline.get("title") == title
    caijing = next(o for o in groups["栏目"] if o.get("text") == "财经")
    gupiao = next(o for o in caijing if o.get("text") == "股票")
    assert [o.get("xmlUrl") for o in gupiao] == [
        "http://feeds.test/feeds/category/caijing/gupiao.rss", "http://feeds.test/feeds/category/caijing/gupiao/ganggu.rss"]
    assert {o.get("xmlUrl") for o in groups["热门文章"]} == {
        "http://feeds.test/feeds/hot/daily.rss", "http://feeds.test/feeds/hot/weekly.rss"}


def test_opml_is_conditional_too(loaded, client):
    etag = client.get("/feeds.opml").headers["ETag"]
    assert client.get("/feeds.opml", headers={"If-None-Match": etag}).status_code == 304


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.data == b"ok\n"


def test_unexpected_errors_are_a_500_without_details(app, client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions["feeds"].store.articles, "newest", broken)
    response = client.get("/feeds/all.rss")
    assert response.status_code == 500
    assert b"secret" not in response.data
