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

from feeds.model import Feed, Item, Source
from feeds.writers import FORMATS, render

BEIJING = ZoneInfo("Asia/Shanghai")
UPDATED = datetime(2024, 4, 4, 16, 49, 39, tzinfo=BEIJING)


def item(number: int, **changes) -> Item:
    fields = dict(
        guid=f"tag:news.example.cn,2024:article:{number}", title=f"第{number}条", link=f"https://news.example.cn/{number}.html",
        summary=f"摘要{number} <不是标签> & 符号", content_html=f"<p>正文{number}</p>",
        published=UPDATED - timedelta(hours=number), updated=UPDATED - timedelta(hours=number), author="朱欣",
        source=Source("新华社", "xinhuashe"), source_feed="http://feeds.test/feeds/source/xinhuashe", categories=("热点/国内",),
        image=f"https://news.example.cn/{number}.png",
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
