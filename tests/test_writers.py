"""The writers on a Feed built by hand: feedgen's pitfalls, each checked."""
from __future__ import annotations

import email.utils
import json
import locale
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import feedgen.entry
import feedparser
import pytest
from lxml import etree

from feeds.model import Feed, Image, Item, Source
from feeds.writers import ATOM, FORMATS, MEDIA, WEBFEEDS, render

BEIJING = ZoneInfo("Asia/Shanghai")
UPDATED = datetime(2024, 4, 4, 16, 49, 39, tzinfo=BEIJING)


def item(number: int, **changes) -> Item:
    fields = dict(
        guid=f"tag:news.example.cn,2024:article:{number}", title=f"第{number}条", link=f"https://news.example.cn/{number}.html",
        summary=f"摘要{number} <不是标签> & 符号", content_html=f"<p>正文{number}</p>",
        published=UPDATED - timedelta(hours=number), updated=UPDATED - timedelta(hours=number), author="朱欣",
        source=Source("新华社", "xinhuashe"), source_feed="http://feeds.test/feeds/source/xinhuashe", categories=("热点/国内",),
        image=Image(f"https://news.example.cn/{number}.png"),
    )
    return Item(**{**fields, **changes})


FEED = Feed(path="all", title="融易新闻 · 全部文章", description="全部", publisher="融易新闻", address="http://feeds.test/feeds/all",
            link="https://news.example.cn/", language="zh-CN", updated=UPDATED, items=tuple(item(n) for n in range(3)))


@pytest.mark.parametrize("extension", ["rss", "atom"])
def test_items_keep_their_order(extension):
    parsed = feedparser.parse(render(FEED, extension))
    assert [e.title for e in parsed.entries] == ["第0条", "第1条", "第2条"]


@pytest.mark.parametrize("extension", FORMATS)
def test_no_time_is_now(extension):
    body = render(FEED, extension)
    today = datetime.now(timezone.utc)
    for stamp in (today.strftime("%d %b %Y"), today.strftime("%Y-%m-%d")):
        assert stamp not in body.decode()
    assert body == render(FEED, extension)


def test_rss_channel_link_is_the_alternate_even_though_self_is_added_first():
    root = etree.fromstring(render(FEED, "rss"))
    assert root.findtext("channel/link") == "https://news.example.cn/"


def test_rss_dates_do_not_depend_on_the_locale_or_touch_it():
    assert feedgen.entry.formatRFC2822 is not None
    before = locale.setlocale(locale.LC_ALL)
    results = []

    def worker():
        results.append(render(FEED, "rss"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert locale.setlocale(locale.LC_ALL) == before
    assert len(set(results)) == 1
    root = etree.fromstring(results[0])
    assert root.findtext("channel/item/pubDate") == email.utils.format_datetime(UPDATED) == "Thu, 04 Apr 2024 16:49:39 +0800"


def test_atom_entry_links_keep_rel_type_and_the_enclosure():
    root = etree.fromstring(render(FEED, "atom"))
    ns = {"a": "http://www.w3.org/2005/Atom"}
    links = [link.attrib for link in root.find("a:entry", ns).findall("a:link", ns)]
    assert links == [
        {"rel": "alternate", "type": "text/html", "href": "https://news.example.cn/0.html"},
        {"rel": "enclosure", "type": "image/png", "href": "https://news.example.cn/0.png"},
        {"rel": "via", "href": "http://feeds.test/feeds/source/xinhuashe.atom", "title": "新华社"},
    ]


def test_plain_text_summary_survives_every_format():
    rss = feedparser.parse(render(FEED, "rss"))
    assert rss.entries[0].summary == "摘要0 &lt;不是标签&gt; &amp; 符号"  # HTML, read as text: 摘要0 <不是标签> & 符号
    atom = feedparser.parse(render(FEED, "atom"))
    assert atom.entries[0].summary == "摘要0 <不是标签> & 符号"
    assert json.loads(render(FEED, "json"))["items"][0]["summary"] == "摘要0 <不是标签> & 符号"


def test_an_item_without_content_or_image():
    bare = Feed(**{**FEED.__dict__, "items": (item(0, content_html="", image=None, author=None, source=None, source_feed=None),)})
    for extension in ("rss", "atom"):
        parsed = feedparser.parse(render(bare, extension))
        assert parsed.bozo == 0 and parsed.entries[0].title == "第0条"
    json_item = json.loads(render(bare, "json"))["items"][0]
    assert json_item["content_text"] == json_item["summary"] and "content_html" not in json_item and "image" not in json_item


CAPTIONED = Image("https://news.example.cn/lead.jpg", 1200, 675, "联席会议现场", "工人日报记者 朱欣")


@pytest.mark.parametrize("extension", ["rss", "atom"])
def test_images_are_media_rss_with_their_size_caption_and_credit(extension):
    feed = Feed(**{**FEED.__dict__, "items": (item(0, image=CAPTIONED), item(1))})
    root = etree.fromstring(render(feed, extension))
    assert root.nsmap["media"] == MEDIA  # declared once, on the root
    entries = root.findall("channel/item") if extension == "rss" else root.findall(f"{{{ATOM}}}entry")
    (content,) = entries[0].findall(f"{{{MEDIA}}}content")
    assert dict(content.attrib) == {"url": CAPTIONED.url, "medium": "image", "type": "image/jpeg", "width": "1200", "height": "675"}
    assert content.findtext(f"{{{MEDIA}}}description") == "联席会议现场" and content.findtext(f"{{{MEDIA}}}credit") == "工人日报记者 朱欣"
    (thumbnail,) = entries[0].findall(f"{{{MEDIA}}}thumbnail")
    assert thumbnail.get("url") == CAPTIONED.url and thumbnail.get("width") == "1200"
    bare = entries[1].find(f"{{{MEDIA}}}content")  # nothing known but the URL: no size, no caption
    assert dict(bare.attrib) == {"url": "https://news.example.cn/1.png", "medium": "image", "type": "image/png"} and len(bare) == 0
    parsed = feedparser.parse(render(feed, extension)).entries[0]
    assert parsed.media_content[0]["url"] == CAPTIONED.url and parsed.media_content[0]["width"] == "1200"
    assert parsed.media_thumbnail[0]["url"] == CAPTIONED.url
    assert parsed.enclosures[0]["href"] == CAPTIONED.url  # the enclosure stays


def test_the_site_icon_and_logo_identify_every_format():
    feed = Feed(**{**FEED.__dict__, "icon": "https://news.example.cn/icon.png", "logo": "https://news.example.cn/logo.svg"})
    rss = etree.fromstring(render(feed, "rss")).find("channel")
    assert rss.findtext("image/url") == feed.icon and rss.findtext("image/title") == feed.title and rss.findtext("image/link") == feed.link
    assert rss.findtext(f"{{{WEBFEEDS}}}icon") == feed.icon and rss.findtext(f"{{{WEBFEEDS}}}logo") == feed.logo
    atom = etree.fromstring(render(feed, "atom"))
    assert atom.findtext(f"{{{ATOM}}}icon") == feed.icon and atom.findtext(f"{{{ATOM}}}logo") == feed.logo
    document = json.loads(render(feed, "json"))
    assert document["icon"] == document["favicon"] == feed.icon
    assert "<image>" not in render(FEED, "rss").decode() and "icon" not in json.loads(render(FEED, "json"))
