"""The pages for people: the index of every feed and each feed's HTML preview, read with lxml."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import segno
from lxml import html

from feeds import create_app, pages
from feeds.ingest import load_sample
from feeds.model import ReadEvent
from feeds.web import directory
from tests.conftest import article, make_settings

HOSTILE = "<script>alert(1)</script>"
BASE = "http://feeds.test"


@pytest.fixture
def loaded(runner, write_jsonl, store):
    rows = [
        article(),  # 热点 > 国内, 互联网, 2024-04-04 16:49:39 Beijing time
        article(id="old", url="https://news.example.cn/old.html", title="旧闻 <b>&</b> “引号”", published="2024-03-01 08:00:00",
                category="财经/股票/港股", source="经济日报 & 伙伴"),
        article(id="macro", url="https://news.example.cn/macro.html", title="宏观经济数据发布", published="2024-04-05 09:05:00",
                category="财经/宏观", source="新华社", summary="一季度宏观经济数据发布。"),
        article(id="evil", url="https://news.example.cn/evil.html", title=f"标题{HOSTILE}", published="2024-04-03 07:30:00",
                category="热点/社会", source=HOSTILE, summary=f"摘要{HOSTILE}"),
    ]
    assert runner.invoke("import", write_jsonl(rows)).exit_code == 0
    now = datetime.now(timezone.utc)
    store.reads.record([ReadEvent("old", now - timedelta(hours=1), 9), ReadEvent("macro", now - timedelta(hours=2), 4)])


def page_of(client, url: str) -> html.HtmlElement:
    response = client.get(url)
    assert response.status_code == 200, (url, response.data[:200])
    assert response.content_type == "text/html; charset=utf-8"
    return html.fromstring(response.data)


def every_path(app) -> list[str]:
    with app.test_request_context():
        return [spec.path for spec in directory().all_specs()]


def entry(page: html.HtmlElement, path: str) -> html.HtmlElement:
    """The index's list item of the feed at ``path``, found by its preview link."""
    found = page.xpath(f"//li[@class='feed'][div/h3/a/@href='/feeds/{path}.html']")
    assert len(found) == 1, f"{path}: {len(found)} entries"
    return found[0]


def text(element: html.HtmlElement) -> str:
    return " ".join(element.text_content().split())


# -- the index ---------------------------------------------------------------------------


def test_index_lists_every_feed_with_its_urls_copy_buttons_and_preview(loaded, app, client):
    page = page_of(client, "/")
    paths = every_path(app)
    assert {"all", "category/redian", "category/redian/guonei", "category/redian/shehui", "category/caijing",
            "category/caijing/gupiao", "category/caijing/gupiao/ganggu", "category/caijing/hongguan",
            "source/hulianwang", "source/xinhuashe", "source/script-alert-1-script", "hot/daily", "hot/weekly"} <= set(paths)
    listed = [a.get("href") for a in page.xpath("//li[@class='feed']/div/h3/a")]
    assert sorted(listed) == sorted(f"/feeds/{path}.html" for path in paths)
    for path in paths:
        item = entry(page, path)
        links = {a.get("href") for a in item.xpath("./div/ul[@class='formats']//a")}
        copies = [(b.get("data-copy"), b.get("aria-label")) for b in item.xpath("./div/ul[@class='formats']//button")]
        urls = [f"{BASE}/feeds/{path}.{ext}" for ext in ("rss", "atom", "json")]
        assert links == set(urls)
        assert [url for url, _ in copies] == urls
        assert all(label and label.startswith("复制") for _, label in copies)


def test_index_groups_feeds_and_shows_categories_as_a_tree(loaded, client):
    page = page_of(client, "/")
    sections = {s.get("id"): s for s in page.xpath("//main//section")}
    assert list(sections) == ["all", "hot", "categories", "sources", "tags", "authors"]
    assert [text(s.find("h2")) for s in sections.values()] == ["全部文章", "热门文章", "栏目", "来源", "标签", "作者"]

    def in_section(path: str) -> str:
        return entry(page, path).xpath("ancestor::section")[0].get("id")

    assert in_section("all") == "all" and in_section("hot/daily") == "hot"
    assert in_section("category/caijing/gupiao/ganggu") == "categories" and in_section("source/xinhuashe") == "sources"

    def parent(path: str) -> str | None:
        up = entry(page, path).xpath("ancestor::li[@class='feed'][1]/div/h3/a/@href")
        return up[0] if up else None

    assert parent("category/caijing") is None
    assert parent("category/caijing/gupiao") == "/feeds/category/caijing.html"
    assert parent("category/caijing/gupiao/ganggu") == "/feeds/category/caijing/gupiao.html"
    assert parent("category/redian/guonei") == "/feeds/category/redian.html"
    assert text(entry(page, "category/caijing/gupiao/ganggu").find("div/h3")) == "港股"


def test_index_shows_each_feeds_newest_headline_in_beijing_time(loaded, client):
    page = page_of(client, "/")

    def headline(path: str) -> tuple[str, str, str]:
        [line] = entry(page, path).xpath("./div/p[contains(@class, 'headline')]")
        time = line.find("time")
        return line.find("a").text_content(), time.text_content(), time.get("datetime")

    seed = "中国财贸轻纺烟草工会与中国纺织工业联合会召开第二十一次联席会议"
    assert headline("category/redian/guonei") == (seed, "2024-04-04 16:49", "2024-04-04T16:49:39+08:00")
    assert headline("category/redian") == (seed, "2024-04-04 16:49", "2024-04-04T16:49:39+08:00")
    assert headline("source/hulianwang")[:2] == (seed, "2024-04-04 16:49")
    assert headline("all")[:2] == ("宏观经济数据发布", "2024-04-05 09:05")
    assert headline("category/caijing")[:2] == ("宏观经济数据发布", "2024-04-05 09:05")
    assert headline("category/caijing/gupiao")[:2] == ("旧闻 <b>&</b> “引号”", "2024-03-01 08:00")
    assert headline("hot/daily")[:2] == ("1. 旧闻 <b>&</b> “引号”", "2024-03-01 08:00")
    assert entry(page, "category/redian/guonei").xpath(".//p[contains(@class, 'headline')]/a/@href") == [
        "https://news.example.cn/redian/guonei/2024/0404/0001.html"]


def test_index_shows_no_headline_for_an_empty_feed(loaded, client, store):
    assert store.articles.delete("evil")
    page = page_of(client, "/")
    # The source survives its last article; its feed is empty and says so.
    assert text(entry(page, "source/script-alert-1-script").xpath(".//p[contains(@class, 'headline')]")[0]) == "暂无文章"


def test_headlines_are_right_when_most_feeds_are_not_among_the_newest(loaded, app, client, store, monkeypatch):
    """With a scan of one article every other feed falls back to a query of its own."""
    with app.test_request_context():
        found = directory()
        full = pages.headlines(found)
        calls = []
        newest = store.articles.newest
        monkeypatch.setattr(store.articles, "newest", lambda *a, **k: calls.append((a, k)) or newest(*a, **k))
        assert pages.headlines(found) == full
        assert len(calls) == 1  # the whole store fits in one scan: no query per feed
        calls.clear()
        monkeypatch.setattr(pages, "HEADLINE_SCAN", 1)
        assert pages.headlines(found) == full
        assert 1 < len(calls) < len(found.all_specs())
    for spec in found.all_specs():
        if spec.kind != "hot":
            expected = newest(1, category=spec.category, source=spec.source)
            assert (full[spec.path].title if full[spec.path] else None) == (expected[0].title if expected else None)


@pytest.mark.parametrize("scan", [pages.HEADLINE_SCAN, 16])
def test_index_and_previews_of_the_sample_on_every_database(database_url, monkeypatch, scan):
    """The bundled sample (256 articles): each headline is the feed's own first item, whether it
    came from the shared scan or (with a short scan) from a query of the feed's own."""
    monkeypatch.setattr(pages, "HEADLINE_SCAN", scan)
    app = create_app(make_settings(database_url))
    try:
        load_sample(app.extensions["feeds"].store, app.extensions["feeds"].settings)
        client = app.test_client()
        page = page_of(client, "/")
        paths = every_path(app)
        assert len(paths) > 30
        for path in paths:
            first = client.get(f"/feeds/{path}.json?limit=1").json["items"]
            shown = entry(page, path).xpath("./div/p[contains(@class, 'headline')]/a")
            assert [a.text_content() for a in shown] == [item["title"] for item in first[:1]], path
        for path in ("all", "category/caijing/gupiao", "source/xinhuashe", "hot/weekly"):
            preview = page_of(client, f"/feeds/{path}.html")
            assert len(preview.xpath("//ol[contains(@class, 'items')]/li")) == len(client.get(f"/feeds/{path}.json").json["items"]) > 0
    finally:
        app.extensions["feeds"].store.close()


def test_index_keeps_autodiscovery_opml_and_explanation(loaded, client):
    page = page_of(client, "/")
    discovered = {link.get("href") for link in page.xpath("//head/link[@rel='alternate']")}
    assert f"{BASE}/feeds/category/redian/guonei.rss" in discovered and f"{BASE}/feeds/all.atom" in discovered
    header = page.xpath("//body/header")[0]
    assert header.xpath(".//a[@href='/feeds.opml']")
    assert "订阅源" in text(header) and "阅读器" in text(header)  # what a feed is, for people who don't know


def test_index_is_made_for_keyboards_and_screen_readers(loaded, client):
    page = page_of(client, "/")
    assert page.get("lang") == "zh-CN"
    assert page.xpath("//body/header") and page.xpath("//body/main[@id='main']") and page.xpath("//header//nav[@aria-label]")
    assert page.xpath("//a[@class='skip-link'][@href='#main']")
    [box] = page.xpath("//input[@id='filter']")
    assert page.xpath("//label[@for='filter']") and box.get("type") == "search"
    assert page.xpath("//form[@role='search']")
    for button in page.xpath("//button[not(@type='submit')]"):  # the keyword form's submit is named by its text
        assert button.get("type") == "button" and button.get("aria-label")
    assert page.xpath("//*[@role='status'][@aria-live='polite']")


# -- previews ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["all", "category/redian", "category/redian/guonei", "category/caijing/gupiao/ganggu",
                                  "source/hulianwang", "source/script-alert-1-script", "hot/daily", "hot/weekly"])
def test_preview_of_each_kind_shows_the_feeds_items_and_how_to_subscribe(loaded, client, path):
    page = page_of(client, f"/feeds/{path}.html")
    feed = client.get(f"/feeds/{path}.json").json
    assert text(page.find(".//main//h1")) == feed["title"]
    assert feed["description"] in text(page.find(".//main"))
    urls = [f"{BASE}/feeds/{path}.{ext}" for ext in ("rss", "atom", "json")]
    subscribe = page.xpath("//section[@class='subscribe']")[0]
    assert [a.get("href") for a in subscribe.xpath(".//a[@class='url']")] == urls
    assert [b.get("data-copy") for b in subscribe.xpath(".//button[@class='copy']")] == urls
    assert "阅读器" in text(subscribe)
    assert [text(h) for h in page.xpath("//ol[contains(@class, 'items')]/li//h3")] == [item["title"] for item in feed["items"]]
    assert [a.get("href") for a in page.xpath("//ol[contains(@class, 'items')]/li//h3/a")] == [item["url"] for item in feed["items"]]
    autodiscovery = {link.get("href") for link in page.xpath("//head/link[@rel='alternate']")}
    assert autodiscovery == set(urls)
    assert page.xpath("//header//nav//a[@href='/']")


def test_preview_shows_summaries_and_times_in_beijing_time(loaded, client):
    page = page_of(client, "/feeds/category/redian/guonei.html")
    [item] = page.xpath("//ol[contains(@class, 'items')]/li")
    time = item.find(".//time")
    assert time.text_content() == "2024-04-04 16:49" and time.get("datetime") == "2024-04-04T16:49:39+08:00"
    summary = text(item.xpath(".//p[@class='summary']")[0])
    assert summary.startswith("中工网北京4月2日电") and "免责声明" not in summary
    assert "来源：互联网" in text(item) and "作者：朱欣" in text(item)


def test_hot_list_preview_is_in_rank_order(loaded, client):
    page = page_of(client, "/feeds/hot/daily.html")
    titles = [text(h) for h in page.xpath("//ol[contains(@class, 'ranked')]/li//h3")]
    assert titles == ["1. 旧闻 <b>&</b> “引号”", "2. 宏观经济数据发布"]


def test_preview_has_a_qr_code_of_the_rss_url_as_inline_svg(loaded, client):
    page = page_of(client, "/feeds/category/redian/guonei.html")
    [svg] = page.xpath("//figure[@class='qr']/svg")
    assert svg.get("role") == "img" and "RSS" in svg.findtext("title")
    # The dark modules are those of the RSS URL's QR code (the path does not depend on scale or colours).
    expected = html.fromstring(segno.make(f"{BASE}/feeds/category/redian/guonei.rss", error="m").svg_inline(border=2, lineclass="dark"))
    assert svg.xpath(".//path[@class='qr-line']/@d") == expected.xpath(".//path[@class='dark']/@d")
    assert page.xpath("//figure[@class='qr']/figcaption")


def test_preview_honours_limit_like_the_feed(loaded, client):
    page = page_of(client, "/feeds/all.html?limit=2")
    assert len(page.xpath("//ol[contains(@class, 'items')]/li")) == 2
    assert client.get("/feeds/all.html?limit=0").status_code == 400


def test_preview_of_an_empty_feed_says_so(client):
    page = page_of(client, "/feeds/all.html")
    assert not page.xpath("//ol[contains(@class, 'items')]") and "还没有文章" in text(page.find(".//main"))
    assert page_of(client, "/").xpath("//li[@class='feed']")  # and the index of an empty store renders too


@pytest.mark.parametrize("url", ["/feeds/nope.html", "/feeds/category/nope.html", "/feeds/source/nope.html",
                                 "/feeds/source/hulianwang/x.html", "/feeds/hot/monthly.html", "/feeds/.html",
                                 "/feeds/category/redian/guonei.rss.html"])
def test_unknown_preview_is_a_404_like_the_feeds(loaded, client, url):
    response = client.get(url)
    assert response.status_code == 404 and response.content_type.startswith("text/plain")


def test_preview_route_wins_over_the_feed_route(loaded, app, client):
    adapter = app.url_map.bind("feeds.test")
    assert adapter.match("/feeds/category/redian/guonei.html") == ("pages.preview", {"feed_path": "category/redian/guonei"})
    assert adapter.match("/feeds/hot/daily.html") == ("pages.preview", {"feed_path": "hot/daily"})
    assert adapter.match("/feeds/all.rss") == ("web.feed", {"feed_path": "all.rss"})
    assert client.get("/feeds/all.html").content_type == "text/html; charset=utf-8"
    assert client.get("/feeds/all.xml").status_code == 404  # the feeds still refuse other extensions


def test_preview_is_conditional_with_the_feeds_last_modified(loaded, client):
    response = client.get("/feeds/category/redian.html")
    assert response.headers["Last-Modified"] == client.get("/feeds/category/redian.rss").headers["Last-Modified"]
    etag = response.headers["ETag"]
    again = client.get("/feeds/category/redian.html", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    since = client.get("/feeds/category/redian.html", headers={"If-Modified-Since": response.headers["Last-Modified"]})
    assert since.status_code == 304
    head = client.head("/feeds/category/redian.html")
    assert head.status_code == 200 and head.headers["ETag"] == etag
    index = client.get("/")
    assert client.get("/", headers={"If-None-Match": index.headers["ETag"]}).status_code == 304


# -- escaping and assets -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/feeds/all.html", "/feeds/source/script-alert-1-script.html", "/feeds/category/redian.html"])
def test_hostile_names_are_escaped(loaded, client, url):
    body = client.get(url).get_data(as_text=True)
    assert HOSTILE not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    page = html.fromstring(body)
    assert [s.get("src").split("?")[0] for s in page.xpath("//script")] == ["/static/feeds.js"]  # no other script, inline or not
    assert HOSTILE in text(page)  # shown as the text it is


@pytest.mark.parametrize("url", ["/", "/feeds/all.html", "/feeds/category/redian/guonei.html", "/feeds/hot/daily.html"])
def test_no_asset_comes_from_another_host(loaded, client, url):
    page = page_of(client, url)
    assets = (page.xpath("//script/@src | //img/@src | //iframe/@src | //source/@src | //source/@srcset | //video/@src"
                         " | //audio/@src | //embed/@src | //object/@data | //image/@href | //use/@href")
              + page.xpath("//link[not(@rel='alternate')]/@href"))
    assert assets  # at least the stylesheet and the script
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.scheme and not parts.netloc, asset
        assert client.get(asset).status_code == 200, asset
    styles = " ".join(page.xpath("//style/text() | //@style"))
    assert not re.search(r"url\(|@import", styles)


def test_static_files_are_served_and_self_contained(client):
    css = client.get("/static/feeds.css")
    js = client.get("/static/feeds.js")
    assert css.status_code == js.status_code == 200
    assert css.mimetype == "text/css" and js.mimetype in ("text/javascript", "application/javascript")
    assert not re.search(rb"url\(|@import|https?:", css.data)
    assert not re.search(rb"https?:|fetch\(|XMLHttpRequest|import\(", js.data)
    assert b"prefers-color-scheme: dark" in css.data and b"Noto Sans CJK SC" in css.data
