"""Images as data: an article's lead image as a URL or {url, width, height, caption, credit}, stored whole and
written as Media RSS; and the site's icon and logo in every feed and page."""
from __future__ import annotations

import feedparser
import pytest
from lxml import etree, html

from feeds import create_app
from feeds.writers import MEDIA
from tests.conftest import article, make_settings

TOKEN = {"Authorization": "Bearer s3cret"}
LEAD = {"url": "https://news.example.cn/images/0001.jpg", "width": 1200, "height": 675, "caption": "联席会议现场",
        "credit": "工人日报记者 朱欣"}


def test_an_image_with_its_details_reaches_every_format(client):
    assert client.post("/api/articles", json=article(image=LEAD), headers=TOKEN).status_code == 201
    for extension in ("rss", "atom"):
        entry = feedparser.parse(client.get(f"/feeds/all.{extension}").data).entries[0]
        assert entry.media_content[0] == {"url": LEAD["url"], "medium": "image", "type": "image/jpeg", "width": "1200", "height": "675"}
        assert entry.media_credit[0]["content"] == "工人日报记者 朱欣"
        root = etree.fromstring(client.get(f"/feeds/all.{extension}").data)
        assert root.xpath("//media:description/text()", namespaces={"media": MEDIA}) == ["联席会议现场"]
    assert client.get("/feeds/all.json").get_json()["items"][0]["image"] == LEAD["url"]
    taiwan = etree.fromstring(client.get("/feeds/all.rss?variant=zh-TW").data)
    assert taiwan.xpath("//media:description/text()", namespaces={"media": MEDIA}) == ["聯席會議現場"]
    # The same image again is no change; a new caption is one.
    (result,) = client.post("/api/articles", json=article(image=LEAD), headers=TOKEN).get_json()["results"]
    assert result["result"] == "unchanged"
    (result,) = client.post("/api/articles", json=article(image={**LEAD, "caption": "会场"}), headers=TOKEN).get_json()["results"]
    assert result["result"] == "updated"


def test_an_image_given_as_a_url_is_still_taken(client):
    assert client.post("/api/articles", json=article(image=LEAD["url"]), headers=TOKEN).status_code == 201
    content = feedparser.parse(client.get("/feeds/all.rss").data).entries[0].media_content[0]
    assert content == {"url": LEAD["url"], "medium": "image", "type": "image/jpeg"}


@pytest.mark.parametrize("image, field, says", [
    ({**LEAD, "width": 0}, "image.width", "expected 1 to 100000 pixels, got 0"),
    ({**LEAD, "height": "675"}, "image.height", "expected a whole number of pixels, got a string"),
    ({**LEAD, "url": "ftp://x/1.jpg"}, "image.url", "expected an absolute http(s) URL"),
    ({"width": 10}, "image.url", "image.url is missing"),
    ({**LEAD, "alt": "x"}, "image.alt", "unknown field"),
    ("javascript:alert(1)", "image", "expected an absolute http(s) URL"),
])
def test_a_bad_image_is_a_422_naming_the_field(client, image, field, says):
    response = client.post("/api/articles", json=article(image=image), headers=TOKEN)
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["field"] == field and says in error["message"], error


def test_the_api_document_shows_both_forms(client):
    image = client.get("/api/openapi.json").get_json()["components"]["schemas"]["Article"]["properties"]["image"]
    url, details = image["oneOf"]
    assert "string" in url["type"] and set(details["properties"]) == {"url", "width", "height", "caption", "credit"}
    assert details["required"] == ["url"]


def test_the_site_icon_and_logo_are_in_the_feeds_and_pages(sqlite_url):
    app = create_app(make_settings(sqlite_url, site={"icon": "https://news.example.cn/icon.png", "logo": "https://news.example.cn/logo.svg"}))
    try:
        client = app.test_client()
        parsed = feedparser.parse(client.get("/feeds/all.atom").data)
        assert parsed.feed.icon == "https://news.example.cn/icon.png" and parsed.feed.logo == "https://news.example.cn/logo.svg"
        assert feedparser.parse(client.get("/feeds/all.rss").data).feed.image["href"] == "https://news.example.cn/icon.png"
        for page in ("/", "/feeds/all.html"):
            assert html.fromstring(client.get(page).data).xpath("//link[@rel='icon']/@href") == ["https://news.example.cn/icon.png"]
    finally:
        app.extensions["feeds"].store.close()
