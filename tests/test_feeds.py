"""End to end: articles imported, then every feed read back by feedparser and lxml."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import feedparser
import pytest
from lxml import etree

from feeds import create_app
from tests.conftest import article, jsonl, make_settings

NS = {"atom": "http://www.w3.org/2005/Atom", "content": "http://purl.org/rss/1.0/modules/content/",
      "dc": "http://purl.org/dc/elements/1.1/"}
FORMATS = {"rss": "application/rss+xml", "atom": "application/atom+xml", "json": "application/feed+json"}

ARTICLES = [
    article(),
    article(id="a2", url="https://news.example.cn/2.html", title="国际新闻", category="热点/国际",
            published="2024-04-05 09:00:00", source="新华社", source_url="https://www.news.cn/", summary="一条国际新闻。"),
    article(id="a3", url="https://news.example.cn/3.html", title="热点评论", category=["热点"],
            published="2024/04/06 10:30", source="新华社", image=None),
    article(id="a4", url="https://news.example.cn/4.html", title="股市收盘", category="财经/股票/港股",
            published="2024年4月3日 15:00", source="经济日报", author=None),
]


@pytest.fixture
def loaded(runner, write_jsonl):
    result = runner.invoke("import", write_jsonl(ARTICLES))
    assert result.exit_code == 0, result.output
    return runner.app


def parse(body: bytes, extension: str):
    if extension == "json":
        return json.loads(body)
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    etree.fromstring(body)  # strict XML parser: raises on anything malformed
    return parsed


def entry_ids(parsed, extension: str) -> list[str]:
    return [item["id"] for item in parsed["items"]] if extension == "json" else [e.id for e in parsed.entries]


@pytest.mark.parametrize("extension", FORMATS)
@pytest.mark.parametrize("path", ["all", "category/redian", "category/redian/guonei", "source/xinhuashe", "category/caijing/gupiao"])
def test_every_feed_parses_with_the_right_content_type(loaded, client, path, extension):
    response = client.get(f"/feeds/{path}.{extension}")
    assert response.status_code == 200
    assert response.content_type == f"{FORMATS[extension]}; charset=utf-8"
    parse(response.data, extension)


@pytest.mark.parametrize("extension", FORMATS)
def test_newest_first_with_stable_guids(loaded, client, extension):
    parsed = parse(client.get(f"/feeds/all.{extension}").data, extension)
    assert entry_ids(parsed, extension) == [f"tag:news.example.cn,2024:article:{i}" for i in ("a3", "a2", "20240404-0001", "a4")]


def test_seed_time_is_beijing_time(loaded, client):
    rss = parse(client.get("/feeds/all.rss").data, "rss")
    seed = next(e for e in rss.entries if e.id.endswith("20240404-0001"))
    assert seed.published == "Thu, 04 Apr 2024 16:49:39 +0800"
    assert datetime(*seed.published_parsed[:6]) == datetime(2024, 4, 4, 8, 49, 39)
    atom = parse(client.get("/feeds/all.atom").data, "atom")
    seed = next(e for e in atom.entries if e.id.endswith("20240404-0001"))
    assert seed.published == "2024-04-04T16:49:39+08:00"
    assert datetime(*seed.published_parsed[:6]) == datetime(2024, 4, 4, 8, 49, 39)
    item = next(i for i in parse(client.get("/feeds/all.json").data, "json")["items"] if i["id"].endswith("0001"))
    assert datetime.fromisoformat(item["date_published"]).astimezone(timezone.utc) == datetime(2024, 4, 4, 8, 49, 39, tzinfo=timezone.utc)


def test_category_feed_holds_descendants_only(loaded, client):
    ids = lambda path: {e.id.rsplit(":", 1)[1] for e in parse(client.get(f"/feeds/category/{path}.rss").data, "rss").entries}
    assert ids("redian") == {"20240404-0001", "a2", "a3"}
    assert ids("redian/guonei") == {"20240404-0001"}
    assert ids("caijing") == ids("caijing/gupiao") == ids("caijing/gupiao/ganggu") == {"a4"}


def test_source_feed(loaded, client):
    parsed = parse(client.get("/feeds/source/xinhuashe.atom").data, "atom")
    assert [e.title for e in parsed.entries] == ["热点评论", "国际新闻"]
    assert parsed.feed.title == "融易新闻 · 来源:新华社"


def test_item_fields_in_rss(loaded, client):
    root = etree.fromstring(client.get("/feeds/category/redian/guonei.rss").data)
    item = root.find("channel/item")
    assert item.findtext("title") == ARTICLES[0]["title"]
    assert item.findtext("link") == ARTICLES[0]["url"]
    assert item.find("guid").get("isPermaLink") == "false"
    assert item.findtext("pubDate") == "Thu, 04 Apr 2024 16:49:39 +0800"
    assert item.findtext("dc:creator", namespaces=NS) == "朱欣"
    assert [c.text for c in item.findall("category")] == ["热点/国内", "工会", "纺织"]
    assert item.find("source").text == "互联网"
    assert item.find("source").get("url") == "http://feeds.test/feeds/source/hulianwang.rss"
    assert item.find("enclosure").attrib == {"url": ARTICLES[0]["image"], "length": "0", "type": "image/jpeg"}
    description = item.findtext("description")
    assert description.startswith("中工网北京4月2日电") and "原标题" not in description and "免责声明" not in description
    assert "<p>中工网北京4月2日电" in item.findtext("content:encoded", namespaces=NS)


def test_item_fields_in_atom(loaded, client):
    parsed = parse(client.get("/feeds/category/redian/guonei.atom").data, "atom")
    entry = parsed.entries[0]
    assert entry.link == ARTICLES[0]["url"]
    assert entry.author == "朱欣"
    assert entry.summary_detail.type == "text/plain"
    assert entry.content[0].type == "text/html"
    assert [(link.rel, link.get("title")) for link in entry.links] == [("alternate", None), ("enclosure", None), ("via", "互联网")]
    assert entry.links[2].href == "http://feeds.test/feeds/source/hulianwang.atom"
    assert entry.updated == "2024-04-04T16:49:39+08:00"
    assert "source" not in entry


def test_json_feed_fields(loaded, client):
    document = parse(client.get("/feeds/category/redian.json").data, "json")
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["feed_url"] == "http://feeds.test/feeds/category/redian.json"
    assert document["language"] == "zh-CN"
    first = document["items"][0]
    assert first["title"] == "热点评论" and first["date_published"] == "2024-04-06T10:30:00+08:00"
    assert "content_html" in first and first["summary"]
    international = document["items"][1]
    assert international["summary"] == "一条国际新闻。"
    assert international["_source"] == {"name": "新华社", "url": "https://www.news.cn/"}


@pytest.mark.parametrize("extension", ["rss", "atom"])
def test_feed_level_fields(loaded, client, extension):
    parsed = parse(client.get(f"/feeds/category/redian/guonei.{extension}").data, extension)
    assert parsed.feed.title == "融易新闻 · 热点 > 国内"
    assert "热点 > 国内" in parsed.feed.subtitle
    assert parsed.feed.language == "zh-CN"
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links["self"] == f"http://feeds.test/feeds/category/redian/guonei.{extension}"
    assert links["alternate"] == "https://news.example.cn/"
    assert parsed.feed.updated_parsed[:6] == (2024, 4, 4, 8, 49, 39)


def test_rss_channel_link_is_the_site_not_the_self_link(loaded, client):
    root = etree.fromstring(client.get("/feeds/all.rss").data)
    assert root.findtext("channel/link") == "https://news.example.cn/"
    assert root.find("channel/atom:link", NS).get("rel") == "self"


def test_last_build_date_is_the_latest_change_not_now(loaded, client):
    root = etree.fromstring(client.get("/feeds/all.rss").data)
    assert parsedate_to_datetime(root.findtext("channel/lastBuildDate")) == datetime(2024, 4, 6, 2, 30, tzinfo=timezone.utc)
    atom = etree.fromstring(client.get("/feeds/all.atom").data)
    assert atom.findtext("atom:updated", namespaces=NS) == "2024-04-06T10:30:00+08:00"
    assert [e.findtext("atom:updated", namespaces=NS) for e in atom.iterfind("atom:entry", NS)][0] == "2024-04-06T10:30:00+08:00"


@pytest.mark.parametrize("extension", FORMATS)
def test_bytes_do_not_change_between_requests(loaded, client, extension):
    first = client.get(f"/feeds/all.{extension}")
    second = client.get(f"/feeds/all.{extension}")
    assert first.data == second.data and first.headers["ETag"] == second.headers["ETag"]


def test_edit_keeps_guid_and_moves_updated(loaded, client, runner, write_jsonl):
    before = parse(client.get("/feeds/all.atom").data, "atom")
    edited = article(title="中国财贸轻纺烟草工会与中国纺织工业联合会召开联席会议(更新)", updated="2024-04-07 08:00:00")
    assert runner.invoke("import", write_jsonl([edited], "edit.jsonl")).exit_code == 0
    after = parse(client.get("/feeds/all.atom").data, "atom")
    assert [e.id for e in after.entries] == [e.id for e in before.entries]
    seed = next(e for e in after.entries if e.id.endswith("0001"))
    assert seed.title.endswith("(更新)") and seed.updated == "2024-04-07T08:00:00+08:00"
    assert after.feed.updated == "2024-04-07T08:00:00+08:00"


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=abc", "limit=101", "limit=1.5", "limit="])
def test_bad_limit_is_a_400_that_says_what_is_allowed(loaded, client, query):
    response = client.get(f"/feeds/all.rss?{query}")
    assert response.status_code == 400
    assert "from 1 to 100" in response.get_data(as_text=True)


def test_limit(loaded, client):
    assert len(parse(client.get("/feeds/all.rss?limit=2").data, "rss").entries) == 2
    assert len(parse(client.get("/feeds/all.rss?limit=100").data, "rss").entries) == 4


@pytest.mark.parametrize("path", [
    "/feeds/all.xml", "/feeds/all", "/feeds/category/nowhere.rss", "/feeds/source/nobody.rss", "/feeds/source/a/b.rss",
    "/feeds/category/redian/../../etc/passwd.rss", "/feeds/category/'%20OR%201=1--.rss", "/feeds/nothing.rss",
    "/feeds/hot/yearly.rss", "/feeds/category/.rss",
])
def test_unknown_feeds_are_404(loaded, client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.content_type.startswith("text/plain")


def test_empty_store_still_gives_valid_feeds(client):
    for extension in ("rss", "atom"):
        parsed = parse(client.get(f"/feeds/all.{extension}").data, extension)
        assert parsed.entries == []
    assert parse(client.get("/feeds/all.json").data, "json")["items"] == []


def test_feeds_on_every_database(database_url, tmp_path):
    app = create_app(make_settings(database_url))
    try:
        store = app.extensions["feeds"].store
        from feeds.ingest import import_articles

        report = import_articles(store, app.extensions["feeds"].settings, jsonl(ARTICLES).splitlines())
        assert (report.created, report.rejected) == (4, [])
        parsed = parse(app.test_client().get("/feeds/category/redian.rss").data, "rss")
        assert [e.title for e in parsed.entries] == ["热点评论", "国际新闻", ARTICLES[0]["title"]]
        assert parsed.entries[2].published == "Thu, 04 Apr 2024 16:49:39 +0800"
    finally:
        app.extensions["feeds"].store.close()
