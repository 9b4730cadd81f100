"""Traditional Chinese: ?variant=zh-TW|zh-HK|zh-Hant on every feed, cached apart, with the same guids and links."""
from __future__ import annotations

import json

import feedparser
import pytest

from feeds import create_app
from feeds.websub.hub import parse_topic
from tests.conftest import article, make_settings

AUTH = {"Authorization": "Bearer s3cret"}
SOFTWARE = article(id="soft", url="https://news.example.cn/soft.html", title="国内软件企业发布新版本",
                   content='<p>国内软件<a href="https://news.example.cn/国内.html">鼠标</a>厂商</p>', tags=["软件"],
                   published="2024-04-05 09:00:00")


@pytest.fixture
def client(database_url):
    app = create_app(make_settings(database_url, api={"token": "s3cret"}))
    app.config["TESTING"] = True
    client = app.test_client()
    for row in (article(), SOFTWARE):
        assert client.post("/api/articles", json=row, headers=AUTH).status_code == 201
    yield client
    app.extensions["feeds"].store.close()


@pytest.mark.parametrize("variant, title, feed_title", [
    ("zh-TW", "國內軟體企業釋出新版本", "國內"),  # Taiwan's words: 软件 -> 軟體, 发布 -> 釋出
    ("zh-HK", "國內軟件企業發佈新版本", "國內"),
    ("zh-Hant", "國內軟件企業發佈新版本", "國內"),
])
def test_every_text_converted_and_the_language_set(client, variant, title, feed_title):
    plain = feedparser.parse(client.get("/feeds/category/redian/guonei.rss").data)
    response = client.get(f"/feeds/category/redian/guonei.rss?variant={variant}")
    assert response.status_code == 200
    parsed = feedparser.parse(response.data)
    assert parsed.bozo == 0
    assert parsed.feed.language == variant
    assert parsed.feed.title.endswith(f"熱點 > {feed_title}")
    assert parsed.entries[0].title == title
    assert [(e.id, e.link) for e in parsed.entries] == [(e.id, e.link) for e in plain.entries]  # the same items
    assert f'/feeds/category/redian/guonei.rss?variant={variant}>; rel="self"' in response.headers["Link"]
    assert any(link.rel == "self" and link.href.endswith(f"guonei.rss?variant={variant}") for link in parsed.feed.links)


def test_content_text_converted_but_not_its_links(client):
    feed = json.loads(client.get("/feeds/all.json?variant=zh-TW").data)
    soft = next(item for item in feed["items"] if item["url"] == SOFTWARE["url"])
    assert '<a href="https://news.example.cn/国内.html" rel="noopener noreferrer">滑鼠</a>' in soft["content_html"]
    assert "國內軟體" in soft["content_html"]
    assert soft["tags"][-1] == "軟體"
    assert feed["language"] == "zh-TW"


def test_variant_names_are_case_insensitive(client):
    assert feedparser.parse(client.get("/feeds/all.rss?variant=zh-hant").data).feed.language == "zh-Hant"


def test_each_variant_is_cached_apart(client):
    plain = client.get("/feeds/all.atom")
    taiwan = client.get("/feeds/all.atom?variant=zh-TW")
    assert plain.headers["ETag"] != taiwan.headers["ETag"]
    assert client.get("/feeds/all.atom?variant=zh-TW", headers={"If-None-Match": taiwan.headers["ETag"]}).status_code == 304
    assert client.get("/feeds/all.atom?variant=zh-HK", headers={"If-None-Match": taiwan.headers["ETag"]}).status_code == 200
    assert client.get("/feeds/all.atom", headers={"If-None-Match": taiwan.headers["ETag"]}).status_code == 200


def test_an_edit_shows_in_every_variant(client):
    before = client.get("/feeds/all.rss?variant=zh-HK")
    assert client.post("/api/articles", json={**SOFTWARE, "title": "国内软件企业更新"}, headers=AUTH).status_code == 200
    after = client.get("/feeds/all.rss?variant=zh-HK", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert feedparser.parse(after.data).entries[0].title == "國內軟件企業更新"


@pytest.mark.parametrize("query", ["variant=zh-CN", "variant=", "variant=zh_TW", "variant=%00", "variant=" + "x" * 500])
def test_an_unknown_variant_is_a_400_naming_those_there_are(client, query):
    response = client.get(f"/feeds/all.rss?{query}")
    assert response.status_code == 400
    assert "zh-TW, zh-HK, zh-Hant" in response.get_data(as_text=True)


def test_each_variant_is_a_topic_of_its_own(client):
    settings = client.application.extensions["feeds"].settings
    taiwan = parse_topic("http://feeds.test/feeds/tag/ruanjian.rss?variant=zh-TW", settings)
    assert taiwan is not None and taiwan.variant == "zh-TW" and taiwan.path == "tag/ruanjian"
    assert parse_topic("http://feeds.test/feeds/all.rss?variant=zh-XX", settings) is None
    feeds = client.application.extensions["feeds"].feeds
    body = feeds.get(taiwan.path, taiwan.extension, taiwan.limit, variant=taiwan.variant).body
    assert feedparser.parse(body).entries[0].title == "國內軟體企業釋出新版本"


def test_pages_and_opml_in_a_variant(client):
    from lxml import etree

    index = client.get("/?variant=zh-TW")
    assert index.status_code == 200
    html = etree.HTML(index.data)
    assert html.get("lang") == "zh-TW"
    assert html.xpath("//main//h2/text()")[:4] == ["全部文章", "熱門文章", "欄目", "來源"]
    assert "熱點" in html.xpath('//link[@rel="alternate"]/@title')[1]
    feed_links = html.xpath('//section[@id="categories"]//a[@class="format"]/@href')
    assert feed_links and all(link.endswith("?variant=zh-TW") for link in feed_links)
    assert html.xpath('//a[@aria-current="page"]/text()') == ["繁體（臺灣）"]
    assert client.get("/?variant=xx").status_code == 400
    preview = client.get("/feeds/tag/ruanjian.html?variant=zh-HK")
    assert preview.status_code == 200 and "國內軟件企業發佈新版本" in preview.get_data(as_text=True)
    opml = etree.fromstring(client.get("/feeds.opml?variant=zh-Hant").data)
    urls = [o.get("xmlUrl") for o in opml.iter("outline") if o.get("xmlUrl")]
    assert urls and all(url.endswith(".rss?variant=zh-Hant") for url in urls)
    assert "熱點" in {o.get("text") for o in opml.iter("outline")}


def test_embedded_boxes_in_a_variant(client):
    from lxml import etree

    box = client.get("/embed/latest?feed=tag/ruanjian&variant=zh-TW")
    assert box.status_code == 200
    html = etree.HTML(box.data)
    assert html.get("lang") == "zh-TW"
    assert "國內軟體企業釋出新版本" in "".join(html.itertext())
    assert client.get("/embed/hot?variant=zh-XX").status_code == 400
