"""Feed to bytes: RSS 2.0 and Atom 1.0 through feedgen, JSON Feed 1.1 by hand.

feedgen has pitfalls, all handled here and nowhere else (each has a test):
- ``add_entry`` prepends unless told ``order="append"``;
- an entry's ``updated`` and the channel's ``lastBuildDate`` default to now, which
  would change the bytes on every request: both are always set from the feed;
- the RSS channel ``<link>`` is the *last* link added, so the alternate link goes last;
- its RFC 822 dates switch the whole process's locale back and forth, which is
  not thread-safe; dates are formatted by ``feeds.dates.rfc822`` instead;
- characters XML forbids make lxml refuse the whole feed: they are stripped when
  articles are stored (``feeds.text.strip_forbidden``);
- Atom entry links lose their ``rel``, ``type`` and ``length`` (feedgen 1.0 reads
  them from the element it has just made), which turns an enclosure into a
  second alternate link: the links of each Atom entry are written here instead;
- feedgen writes an item's source into RSS and Atom alike, but Atom's
  ``<source>`` wants an id and update time we do not have: Atom gets a "via" link;
- feedgen drops ``rel="hub"`` links from RSS: they are added to the channel here;
- feedgen refuses link relations it does not know, such as RFC 5005's ``prev-archive``:
  the archive links and ``fh:archive`` are added to the tree here (``_history``);
- its ``image`` (RSS) also sets the Atom logo, and ``logo`` (Atom) also sets the RSS image
  (without the title and link RSS requires): each format's generator calls only its own;
- it writes no Media RSS caption or credit: ``media:content`` and ``media:thumbnail``, which
  news aggregators read images from, are added to the tree here (``_media``), with Feedly's
  ``webfeeds:`` icon and logo.
"""
from __future__ import annotations

import html
import json
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass

import feedgen.entry
import feedgen.feed
from feedgen.feed import FeedGenerator
from lxml import etree

from feeds.dates import rfc822, rfc3339
from feeds.model import Feed, Item

feedgen.entry.formatRFC2822 = rfc822
feedgen.feed.formatRFC2822 = rfc822

GENERATOR = "feeds"
ATOM = "http://www.w3.org/2005/Atom"
FH = "http://purl.org/syndication/history/1.0"  # RFC 5005 feed history
MEDIA = "http://search.yahoo.com/mrss/"  # Media RSS, in RSS and Atom alike
WEBFEEDS = "http://webfeeds.org/rss/1.0"  # Feedly's feed identity


@dataclass(frozen=True)
class Format:
    extension: str
    mimetype: str
    render: Callable[[Feed], bytes]

    @property
    def content_type(self) -> str:
        return f"{self.mimetype}; charset=utf-8"


def _generator(feed: Feed, extension: str) -> FeedGenerator:
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(feed.url(extension))
    fg.title(feed.title)
    fg.subtitle(feed.description)
    fg.description(feed.description)
    fg.language(feed.language)
    fg.author({"name": feed.publisher})
    fg.generator(GENERATOR)
    fg.updated(feed.updated)
    fg.lastBuildDate(feed.updated)
    fg.link(href=feed.url(extension), rel="self", type=FORMATS[extension].mimetype)
    for hub in feed.hubs:
        fg.link(href=hub, rel="hub")
    fg.link(href=feed.link, rel="alternate", type="text/html")
    if extension == "rss" and (feed.icon or feed.logo):
        fg.image(url=feed.icon or feed.logo, title=feed.title, link=feed.link)  # at most 144 px wide: the square icon first
    if extension == "atom":
        if feed.logo:
            fg.logo(feed.logo)
        if feed.icon:
            fg.icon(feed.icon)
    for item in feed.items:
        _entry(fg.add_entry(order="append"), item)
    return fg


def _entry(entry: feedgen.entry.FeedEntry, item: Item) -> None:
    entry.guid(item.guid, permalink=False)
    entry.title(item.title)
    entry.link(href=item.link, rel="alternate", type="text/html")
    entry.published(item.published)
    entry.updated(item.updated)
    entry.pubDate(item.published)
    if item.author:
        entry.author({"name": item.author})
        entry.dc.dc_creator(item.author)
    for category in item.categories:
        entry.category(term=category)
    if item.image:
        entry.enclosure(item.image.url, "0", _image_type(item.image.url))


def render_rss(feed: Feed) -> bytes:
    fg = _generator(feed, "rss")
    for entry, item in zip(fg.entry(), feed.items):
        # RSS readers take <description> as HTML: the plain-text summary is escaped once for that.
        entry.description(html.escape(item.summary or item.title, quote=False))
        if item.source and item.source_feed:
            entry.source(url=f"{item.source_feed}.rss", title=item.source.name)
        if item.content_html:
            entry.content(item.content_html, type="CDATA")
    root, _ = fg._create_rss(extensions=True)
    channel = root.find("channel")
    hubs = [etree.Element(f"{{{ATOM}}}link", rel="hub", href=hub) for hub in feed.hubs]
    _before_entries(channel, hubs + _history(feed, "rss", link=f"{{{ATOM}}}link") + _webfeeds(feed), entry="item")
    for element, item in zip(channel.iterfind("item"), feed.items):
        _media(element, item)
    return _bytes(root, feed)


def render_atom(feed: Feed) -> bytes:
    fg = _generator(feed, "atom")
    for entry, item in zip(fg.entry(), feed.items):
        entry.summary(item.summary or item.title, type="text")
        if item.content_html:
            entry.content(item.content_html, type="html")
    root, _ = fg._create_atom(extensions=True)
    # feedgen builds Atom elements without a namespace and declares it as the default on the root.
    for element, item in zip(root.iterfind("entry"), feed.items):
        for link in element.findall("link"):
            element.remove(link)
        etree.SubElement(element, "link", rel="alternate", type="text/html", href=item.link)
        if item.image:
            etree.SubElement(element, "link", rel="enclosure", type=_image_type(item.image.url), href=item.image.url)
        # The 来源 line: "via" names where the information came from (RFC 4287 §4.2.7.2);
        # atom:source would want the id and update time of a feed we do not have.
        if item.source and (item.source.url or item.source_feed):
            etree.SubElement(element, "link", rel="via", href=item.source.url or f"{item.source_feed}.atom", title=item.source.name)
        _media(element, item)
    _before_entries(root, _history(feed, "atom", link="link") + _webfeeds(feed), entry="entry")
    return _bytes(root, feed)


def _history(feed: Feed, extension: str, link: str) -> list[etree._Element]:
    """RFC 5005 §4: ``fh:archive`` on an archive page, and its ``current``, ``prev-archive`` and
    ``next-archive`` links (in RSS as atom:link)."""
    history = feed.history
    elements = [etree.Element(f"{{{FH}}}archive", nsmap={"fh": FH})] if history.archived else []
    for rel, address in (("current", history.current), ("prev-archive", history.prev_archive), ("next-archive", history.next_archive)):
        if address:
            elements.append(etree.Element(link, rel=rel, type=FORMATS[extension].mimetype, href=f"{address}.{extension}"))
    return elements


def _media(element: etree._Element, item: Item) -> None:
    """The item's image as Media RSS: ``media:content`` (with its size, caption and credit when known) and
    ``media:thumbnail``, where MSN, Flipboard and SmartNews look for it."""
    image = item.image
    if image is None:
        return
    size = {name: str(value) for name, value in (("width", image.width), ("height", image.height)) if value}
    content = etree.SubElement(element, f"{{{MEDIA}}}content", url=image.url, medium="image", type=_image_type(image.url), **size)
    if image.caption:
        etree.SubElement(content, f"{{{MEDIA}}}description", type="plain").text = image.caption
    if image.credit:
        etree.SubElement(content, f"{{{MEDIA}}}credit").text = image.credit
    etree.SubElement(element, f"{{{MEDIA}}}thumbnail", url=image.url, **size)


def _webfeeds(feed: Feed) -> list[etree._Element]:
    """Feedly's ``webfeeds:icon`` and ``webfeeds:logo``."""
    found = []
    for name, url in (("icon", feed.icon), ("logo", feed.logo)):
        if url:
            element = etree.Element(f"{{{WEBFEEDS}}}{name}")
            element.text = url
            found.append(element)
    return found


def _bytes(root: etree._Element, feed: Feed) -> bytes:
    """The document, each namespace it uses declared once on its root (lxml would declare one on each element that
    uses it): Media RSS when an item has an image, webfeeds when the site has an icon or a logo."""
    used = {"media": MEDIA} if any(item.image for item in feed.items) else {}
    used |= {"webfeeds": WEBFEEDS} if feed.icon or feed.logo else {}
    etree.cleanup_namespaces(root, top_nsmap=used)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _before_entries(parent: etree._Element, elements: list[etree._Element], entry: str) -> None:
    """Feed metadata goes before the first entry: validators flag an item followed by channel elements."""
    first = parent.find(entry)
    position = parent.index(first) if first is not None else len(parent)
    for offset, element in enumerate(elements):
        parent.insert(position + offset, element)


def render_json(feed: Feed) -> bytes:
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": feed.title,
        "home_page_url": feed.link,
        "feed_url": feed.url("json"),
        "description": feed.description,
        "language": feed.language,
        "authors": [{"name": feed.publisher}],
        **({"icon": feed.icon, "favicon": feed.icon} if feed.icon else {}),
        **({"hubs": [{"type": "WebSub", "url": hub} for hub in feed.hubs]} if feed.hubs else {}),
        # JSON Feed's paging: the next older archive page, which is where a poller that was away goes on
        **({"next_url": f"{feed.history.prev_archive}.json"} if feed.history.prev_archive else {}),
        "items": [_json_item(item) for item in feed.items],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_item(item: Item) -> dict[str, object]:
    entry: dict[str, object] = {"id": item.guid, "url": item.link, "title": item.title}
    if item.content_html:
        entry["content_html"] = item.content_html
    else:
        entry["content_text"] = item.summary or item.title
    if item.summary:
        entry["summary"] = item.summary
    if item.image:
        entry["image"] = item.image.url
    entry["date_published"] = rfc3339(item.published)
    entry["date_modified"] = rfc3339(item.updated)
    if item.author:
        entry["authors"] = [{"name": item.author}]
    if item.categories:
        entry["tags"] = list(item.categories)
    if item.source:
        entry["_source"] = {"name": item.source.name, **({"url": item.source.url} if item.source.url else {})}
    return entry


def _image_type(url: str) -> str:
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    return guessed if guessed and guessed.startswith("image/") else "image/jpeg"


FORMATS: dict[str, Format] = {
    "rss": Format("rss", "application/rss+xml", render_rss),
    "atom": Format("atom", "application/atom+xml", render_atom),
    "json": Format("json", "application/feed+json", render_json),
}


def render(feed: Feed, extension: str) -> bytes:
    """The feed's bytes in the format named by ``extension`` (``rss``, ``atom`` or ``json``)."""
    return FORMATS[extension].render(feed)
