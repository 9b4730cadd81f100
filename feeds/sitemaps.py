"""What search engines read: ``/robots.txt``, the sitemaps (sitemaps.org 0.9, and a Google News
sitemap), and the IndexNow key file.

``/sitemap.xml`` is an index of article sitemaps, each the public articles of one fixed range of
storage order (``store.sitemaps.PAGE`` of them: under 10 MB for URLs of up to 2,000 characters once
escaped, far under the protocol's 50,000 URLs), so a new article changes one small file, and of the news
sitemap: the public articles of the last ``NEWS_HOURS`` hours, at most ``NEWS_MOST``. Each is
rendered once per content version like a feed (``RenderedFeeds.made``), so it follows every write at
once and answers conditional requests with 304; the news sitemap is also rendered anew every
``NEWS_EVERY`` seconds, as articles age out of it.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, abort, request
from lxml import etree

from feeds.cache import Rendered
from feeds.responses import answer, negotiated_encoding
from feeds.services import services
from feeds.serving import etag_of

bp = Blueprint("sitemaps", __name__)

NEWS_HOURS = 48
NEWS_MOST = 1_000
NEWS_EVERY = 600
SITEMAP = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS = "http://www.google.com/schemas/sitemap-news/0.9"


@bp.get("/robots.txt", provide_automatic_options=False)
def robots() -> Response:
    base = services().settings.base_url
    lines = ["User-agent: *", "Disallow: /api/", "Disallow: /admin/", "Disallow: /hub", "",
             f"Sitemap: {base}/sitemap.xml", f"Sitemap: {base}/sitemaps/news.xml", *services().settings.robots.lines]
    body = ("\n".join(lines) + "\n").encode()
    return answer(Rendered(body, etag_of(body), None), "text/plain; charset=utf-8", services().settings.feeds.max_age)


@bp.get("/sitemap.xml", provide_automatic_options=False)
def index() -> Response:
    return _served("sitemap.xml", _index)


@bp.get("/sitemaps/articles-<int:number>.xml", provide_automatic_options=False)
def articles(number: int) -> Response:
    return _served(f"sitemaps/articles-{number}.xml", lambda: _page(number))


@bp.get("/sitemaps/news.xml", provide_automatic_options=False)
def news() -> Response:
    return _served("sitemaps/news.xml", _news, period=int(time.time() // NEWS_EVERY))


@bp.get("/<name>.txt", provide_automatic_options=False)
def indexnow_key(name: str) -> Response:
    """The IndexNow key file: the key, at /<key>.txt (robots.txt is a route of its own)."""
    key = services().settings.indexnow.key
    if not key or name != key:
        abort(404)
    return Response(key, content_type="text/plain; charset=utf-8")


def _served(name: str, make, period: int | None = None) -> Response:  # type: ignore[no-untyped-def]
    svc = services()
    encoding = negotiated_encoding(request.environ.get("HTTP_ACCEPT_ENCODING", ""))
    stamp = (svc.feeds.stamp("all")[0], period)
    rendered: Rendered | None = svc.feeds.made(name, "all", make, encoding, stamp)
    if rendered is None:
        abort(404)
    headers = [("Vary", "Accept-Encoding")] + ([("Content-Encoding", encoding)] if encoding != "identity" else [])
    return answer(rendered, "application/xml; charset=utf-8", svc.settings.feeds.max_age, headers)


def _index() -> tuple[bytes, float | None]:
    base = services().settings.base_url
    root = etree.Element("sitemapindex", nsmap={None: SITEMAP})
    changes = []
    for number, changed in services().store.sitemaps.pages():
        _entry(root, "sitemap", f"{base}/sitemaps/articles-{number}.xml", changed)
        changes.append(changed)
    newest = services().store.sitemaps.news(_news_since(), 1)
    _entry(root, "sitemap", f"{base}/sitemaps/news.xml", newest[0].changed if newest else None)
    return _bytes(root), _latest(changes)


def _page(number: int) -> tuple[bytes, float] | None:
    found = services().store.sitemaps.page(number) if number >= 1 else []
    if not found:
        return None
    root = etree.Element("urlset", nsmap={None: SITEMAP})
    for url, changed in found:
        _entry(root, "url", url, changed)
    return _bytes(root), _latest([changed for _, changed in found])


def _news() -> tuple[bytes, None]:
    """Undated: it changes as articles age out, with no write to date that by. Its ETag serves conditional requests."""
    settings = services().settings
    root = etree.Element("urlset", nsmap={None: SITEMAP, "news": NEWS})
    found = services().store.sitemaps.news(_news_since(), NEWS_MOST)
    for article in found:
        url = etree.SubElement(root, f"{{{SITEMAP}}}url")
        etree.SubElement(url, f"{{{SITEMAP}}}loc").text = article.url
        item = etree.SubElement(url, f"{{{NEWS}}}news")
        publication = etree.SubElement(item, f"{{{NEWS}}}publication")
        etree.SubElement(publication, f"{{{NEWS}}}name").text = settings.site.title
        etree.SubElement(publication, f"{{{NEWS}}}language").text = settings.site.language.lower()
        etree.SubElement(item, f"{{{NEWS}}}publication_date").text = _w3c(article.published)
        etree.SubElement(item, f"{{{NEWS}}}title").text = article.title
    return _bytes(root), None


def _latest(changes: list[datetime]) -> float | None:
    """The Last-Modified of a sitemap: its latest change; none for an empty one."""
    return max(changes).timestamp() if changes else None


def _news_since() -> datetime:
    return datetime.now(timezone.utc) - timedelta(hours=NEWS_HOURS)


def _entry(root: etree._Element, tag: str, loc: str, changed: datetime | None) -> None:
    entry = etree.SubElement(root, f"{{{SITEMAP}}}{tag}")
    etree.SubElement(entry, f"{{{SITEMAP}}}loc").text = loc
    if changed is not None:
        etree.SubElement(entry, f"{{{SITEMAP}}}lastmod").text = _w3c(changed)


def _w3c(moment: datetime) -> str:
    """A W3C datetime with the site's offset, to the second: 2024-04-04T16:49:39+08:00."""
    return moment.astimezone(services().settings.tz).isoformat(timespec="seconds")


def _bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
