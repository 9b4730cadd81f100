"""The public web layer: feeds, OPML, health. Routing and HTTP only (the pages for people are in pages.py).

Every answer here is conditional: a strong ETag from the body's hash and a
Last-Modified from the newest change the body shows, so a poller that already
has the bytes gets a 304 with no body.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NoReturn

from flask import Blueprint, Response, abort, current_app, request
from lxml import etree

from feeds.cache import Rendered
from feeds.catalog import Catalog, FeedSpec, feed_address
from feeds.config import Settings
from feeds.model import Category
from feeds.serving import ENCODINGS, etag_of
from feeds.writers import FORMATS

bp = Blueprint("web", __name__)

# Archive pages (/feeds/archive/...) hold still: new articles never change them, only an edit,
# a deletion or a back-dated insert of one of their articles does (catalog.Catalog.archive_page).
# Caches may keep them a day; this service itself never serves one stale (serving.RenderedFeeds).
ARCHIVE_MAX_AGE = 24 * 3600


def catalog() -> Catalog:
    return current_app.extensions["feeds"].catalog


def settings() -> Settings:
    return current_app.extensions["feeds"].settings


@bp.get("/feeds/<path:feed_path>")
def feed(feed_path: str) -> Response:
    path, dot, extension = feed_path.rpartition(".")
    if not dot or extension not in FORMATS:
        abort(404, description=f"No feed here. Feeds end in {', '.join('.' + e for e in FORMATS)}.")
    encoding = request.accept_encodings.best_match(ENCODINGS) or "identity"
    rendered = current_app.extensions["feeds"].feeds.get(path, extension, requested_limit(path), encoding)
    if rendered is None:
        no_feed(path)
    response = answer(rendered, f"{FORMATS[extension].mimetype}; charset=utf-8")
    current_app.extensions["feeds"].stats.record(path, request.remote_addr or "", request.headers.get("User-Agent", ""), response.status_code)
    if encoding != "identity" and response.status_code == 200:
        response.content_encoding = encoding
    response.vary.add("Accept-Encoding")
    if path.startswith("archive/"):
        response.cache_control.max_age = ARCHIVE_MAX_AGE
        return response  # nothing to subscribe to: no WebSub discovery
    hubs = settings().websub.hubs
    if hubs:  # WebSub discovery (W3C WebSub §4): the hubs, and the one URL to subscribe to
        links = [f'<{hub}>; rel="hub"' for hub in hubs] + [f'<{feed_url_of(path, extension)}>; rel="self"']
        response.headers["Link"] = ", ".join(links)
    return response


@bp.get("/feeds.opml")
def opml() -> Response:
    return conditional(opml_document(directory()), "text/x-opml; charset=utf-8", None)


@bp.get("/healthz")
def healthz() -> Response:
    current_app.extensions["feeds"].store.ping()
    return Response("ok\n", mimetype="text/plain")


def no_feed(path: str) -> NoReturn:
    """A 404 naming the path asked for, cut short: the path is anyone's text, of any length."""
    shown = path if len(path) <= 100 else path[:100] + "…"
    abort(404, description=f"No feed at /feeds/{shown}. The list of feeds is at / and /feeds.opml.")


def requested_limit(path: str = "") -> int:
    """``?limit=``, checked; without one, a hot list's size or the default."""
    feeds = settings().feeds
    raw = request.args.get("limit")
    if raw is None:
        return settings().hot.size if path.startswith("hot/") else feeds.default_limit
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= feeds.max_limit:
        abort(400, description=f"limit must be a whole number from 1 to {feeds.max_limit}, got {raw!r}.")
    return int(raw)


def conditional(body: bytes, mimetype: str, last_modified: datetime | None) -> Response:
    """``answer`` for a body made just now."""
    return answer(Rendered(body, etag_of(body), last_modified.timestamp() if last_modified else None), mimetype)


def answer(rendered: Rendered, mimetype: str) -> Response:
    """A 200 with validators, or a 304 when the client already has these bytes.

    When a client sends both validators, If-None-Match decides (RFC 9110 §13.2.2).
    """
    last_modified = datetime.fromtimestamp(rendered.last_modified, timezone.utc) if rendered.last_modified is not None else None
    if request.if_none_match:
        unchanged = request.if_none_match.contains_weak(rendered.etag)
    elif request.if_modified_since and last_modified is not None:
        unchanged = last_modified.replace(microsecond=0) <= request.if_modified_since
    else:
        unchanged = False
    response = Response(status=304) if unchanged else Response(rendered.body, content_type=mimetype)
    response.set_etag(rendered.etag)
    if last_modified is not None:
        response.last_modified = last_modified
    response.cache_control.public = True
    response.cache_control.max_age = settings().feeds.max_age
    return response


# -- the directory of feeds, for the index page and OPML ------------------------------


@dataclass(frozen=True)
class CategoryNode:
    spec: FeedSpec
    children: tuple[CategoryNode, ...]


@dataclass(frozen=True)
class Directory:
    everything: FeedSpec
    categories: tuple[CategoryNode, ...]
    sources: tuple[FeedSpec, ...]
    hot: tuple[FeedSpec, ...]

    def all_specs(self) -> list[FeedSpec]:
        found = [self.everything]

        def walk(nodes: tuple[CategoryNode, ...]) -> None:
            for node in nodes:
                found.append(node.spec)
                walk(node.children)

        walk(self.categories)
        return found + list(self.sources) + list(self.hot)


def directory() -> Directory:
    cat = catalog()
    return Directory(
        everything=cat.everything(),
        categories=_tree(cat, cat.store.categories(), ()),
        sources=tuple(cat.for_source(source) for source in cat.store.sources()),
        hot=tuple(cat.hot(window) for window in settings().hot.windows),
    )


def _tree(cat: Catalog, categories: list[Category], parent: tuple[str, ...]) -> tuple[CategoryNode, ...]:
    children = [c for c in categories if c.names[:-1] == parent]
    return tuple(CategoryNode(cat.for_category(c), _tree(cat, categories, c.names)) for c in children)


def feed_url(spec: FeedSpec, extension: str) -> str:
    return feed_url_of(spec.path, extension)


def feed_url_of(path: str, extension: str) -> str:
    return f"{feed_address(settings(), path)}.{extension}"


def opml_document(found: Directory) -> bytes:
    """OPML 2.0: every feed, grouped by kind, categories as a tree, so a reader subscribes in one step."""
    site = settings().site
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = f"{site.title} · 全部订阅源"
    etree.SubElement(head, "ownerName").text = site.title
    body = etree.SubElement(root, "body")

    def feed_outline(parent: etree._Element, spec: FeedSpec) -> None:
        etree.SubElement(
            parent, "outline", type="rss", text=spec.title, title=spec.title,
            xmlUrl=feed_url(spec, "rss"), htmlUrl=site.link,
        )

    def group(title: str) -> etree._Element:
        return etree.SubElement(body, "outline", text=title, title=title)

    feed_outline(group("全部文章"), found.everything)

    def categories(parent: etree._Element, nodes: tuple[CategoryNode, ...]) -> None:
        for node in nodes:
            if node.children:
                name = node.spec.category.name if node.spec.category else node.spec.title
                folder = etree.SubElement(parent, "outline", text=name, title=name)
                feed_outline(folder, node.spec)
                categories(folder, node.children)
            else:
                feed_outline(parent, node.spec)

    categories(group("栏目"), found.categories)
    sources = group("来源")
    for spec in found.sources:
        feed_outline(sources, spec)
    hot = group("热门文章")
    for spec in found.hot:
        feed_outline(hot, spec)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
