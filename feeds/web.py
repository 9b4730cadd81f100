"""The public web layer: feeds, OPML, health. Routing and HTTP only (the pages for people are in pages.py).

Every answer here is conditional: a strong ETag from the body's hash and a
Last-Modified from the newest change the body shows, so a poller that already
has the bytes gets a 304 with no body.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from http import HTTPStatus
from typing import Any, NoReturn

from flask import Blueprint, Response, abort, request
from lxml import etree
from werkzeug.http import http_date

from feeds.addresses import feed_path_of, limit_of, variant_of
from feeds.addresses import feed_url as address_of_feed
from feeds.cache import Rendered
from feeds.catalog import Catalog, FeedSpec
from feeds.metrics import log_access, observe_request
from feeds.model import Category
from feeds.polls import PollCounter
from feeds.responses import CORS_PREFLIGHT, answer, client_has, cors_headers, negotiated_encoding
from feeds.serving import Stamp, etag_of, scope_of
from feeds.services import Services, catalog, settings
from feeds.services import services as current_services
from feeds.text import in_variant
from feeds.writers import FORMATS

bp = Blueprint("web", __name__)

# Archive pages (/feeds/archive/...) hold still: new articles never change them, only an edit,
# a deletion or a back-dated insert of one of their articles does (catalog.Catalog.archive_page).
# Caches may keep them a day; this service itself never serves one stale (serving.RenderedFeeds).
ARCHIVE_MAX_AGE = 24 * 3600


FEED_RULE = "/feeds/<path:feed_path>"


@bp.get(FEED_RULE, provide_automatic_options=False)  # preflight below
def feed(feed_path: str) -> Response:
    """A poll that the fast path (``FastPolls``) handed on: an unknown feed, a bad query, a failure;
    or any poll when the app is served without it."""
    failed = request.environ.get(FAST_PATH_FAILURE)
    if failed is not None:
        raise failed  # answered by the app's error handlers, as any other failure is
    path, dot, extension = feed_path.rpartition(".")
    if not dot or extension not in FORMATS:
        abort(404, description=f"No feed here. Feeds end in {', '.join('.' + e for e in FORMATS)}.")
    path = requested_path(path)
    services = current_services()
    answer = feed_answer(services, request.environ, path, extension, requested_limit(path), requested_variant())
    if answer is None:
        no_feed(path)
    status, headers, body = answer.to(request.environ, services.stats)
    return Response(body, status, headers)


@dataclass(frozen=True, slots=True)
class Answer:
    """A feed's answer to every poll of one URL in one encoding (and from one origin, where CORS depends on
    it) while its content holds still, as it goes on the wire: made once per content version, not per poll."""

    feed: str  # what poll counting calls the feed
    scope: str
    stamp: Stamp  # the content it shows: good while its scope's stamp is this one
    etag: str
    last_modified: float | None
    fresh: tuple[tuple[str, str], ...]  # the headers of a 200
    not_modified: tuple[tuple[str, str], ...]  # and of a 304
    body: bytes

    def to(self, environ: dict[str, Any], stats: PollCounter) -> tuple[int, list[tuple[str, str]], bytes]:
        """The status, headers and body of one poll, a 304 when the client has these bytes; the poll counted.
        The one place that decides them: Flask's view and the fast path both answer with it
        (tests/test_fast_path.py holds them to the same bytes)."""
        if client_has(self.etag, self.last_modified, environ):
            status, headers, body = 304, self.not_modified, b""
        else:
            status, headers, body = 200, self.fresh, self.body
        stats.record(self.feed, environ.get("REMOTE_ADDR", ""), environ.get("HTTP_USER_AGENT", ""), status)
        return status, list(headers), body  # a copy: a WSGI layer outside may add to the list it is given


def feed_answer(services: Services, environ: dict[str, Any], path: str, extension: str,
                limit: int, variant: str | None = None) -> Answer | None:
    """The answer to polls of the feed at ``path`` (None when there is no such feed), at its content's
    current stamp, in the encoding and for the origin ``environ`` asks with."""
    encoding = negotiated_encoding(environ.get("HTTP_ACCEPT_ENCODING", ""))
    scope = scope_of(path)
    stamp = services.feeds.stamp(scope)
    rendered = services.feeds.get(path, extension, limit, encoding, stamp, variant)
    if rendered is None:
        return None
    site = services.settings
    archived = path.startswith("archive/")
    fresh, not_modified = feed_headers(
        address_of_feed(site, path, extension, variant), extension, encoding, rendered.etag, rendered.last_modified, len(rendered.body),
        tuple(cors_headers(environ, site)), () if archived else services.catalog.hubs,
        ARCHIVE_MAX_AGE if archived else site.feeds.max_age)
    # Keyword feeds are counted as one: their paths are anyone's text.
    return Answer("search" if path.startswith("search/") else path, scope, stamp, rendered.etag, rendered.last_modified,
                  fresh, not_modified, rendered.body)


@lru_cache(maxsize=8192)  # made once per feed version, encoding and origin: polls ask for the same all day
def feed_headers(url: str, extension: str, encoding: str, etag: str, last_modified: float | None, length: int,
                 cors: tuple[tuple[str, str], ...], hubs: tuple[str, ...],
                 max_age: int) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """The headers of a 200 and of a 304 of the feed at ``url``."""
    common = [("Vary", "Accept-Encoding"), *cors]
    if hubs:  # WebSub discovery (W3C WebSub §4): the hubs, and the one URL to subscribe to
        links = [*(f'<{hub}>; rel="hub"' for hub in hubs), f'<{url}>; rel="self"']
        common.append(("Link", ", ".join(links)))
    common += [("ETag", f'"{etag}"'), ("Cache-Control", f"public, max-age={max_age}")]
    fresh = [*common, *([("Content-Encoding", encoding)] if encoding != "identity" else ())]
    if last_modified is not None:
        fresh.append(("Last-Modified", http_date(last_modified)))
    fresh += [("Content-Type", FORMATS[extension].content_type), ("Content-Length", str(length))]
    return tuple(fresh), tuple(common)  # a 304 carries no entity headers (RFC 9110 §15.4.5), as Werkzeug sends it


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
FAST_PATH_FAILURE = "feeds.fast_path_failure"
_STATUS_LINES = {status: f"{status} {HTTPStatus(status).phrase}" for status in (200, 304)}
Request = tuple[str, str, str, str | None]  # what a poll's answer depends on: path, query, Accept-Encoding, Origin
MAX_ANSWERS = 100_000  # kept by each process at most, whatever their size


class FastPolls:
    """The polling path in front of Flask: a WSGI layer that answers the polls it fully understands
    (GET or HEAD of /feeds/<feed>.<format>, with ``?limit=``, ``?variant=`` and a keyword feed's
    ``?q=``), counted, measured and logged as Flask's view is, and hands every other request to Flask
    unchanged. Most of what the service answers is a poll that finds nothing new; going through
    Flask's request, routing and response objects cost it most of its time (bench/throughput.py).

    Each URL's ``Answer`` is kept, by what it depends on, for as long as its content's stamp holds: a
    poll of a known feed is then a dictionary lookup, a version check and a comparison of ETags.

    An unknown feed, a bad ``?limit=``, ``?variant=`` or ``?q=``, or a failure go to Flask's view, whose
    errors and handlers answer them; a failure is handed over, not tried again (a database that is
    down would otherwise be waited for twice).
    """

    def __init__(self, flask: WSGIApp, services: Services, max_bytes: int = 32 * 1024 * 1024):
        self.flask = flask
        self.services = services
        self.max_bytes = max_bytes  # of bodies: most are the cache's own bytes objects, shared
        allowed = services.settings.cors.allow_origins
        self._by_origin = bool(allowed) and "*" not in allowed  # only then do the headers depend on Origin
        self._answers: dict[Request, Answer] = {}  # oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ["REQUEST_METHOD"]
        if method != "GET" and method != "HEAD":
            return self.flask(environ, start_response)
        asked = (environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""), environ.get("HTTP_ACCEPT_ENCODING", ""),
                 environ.get("HTTP_ORIGIN") if self._by_origin else None)
        answer = self._answers.get(asked)
        try:
            kept = answer is not None and self.services.feeds.stamp(answer.scope) == answer.stamp
            if not kept:
                answer = self._answer(environ, *asked[:2])
        except Exception as exc:  # noqa: BLE001 - handed to Flask, whose error handlers log and answer it
            environ[FAST_PATH_FAILURE] = exc
            return self.flask(environ, start_response)
        if answer is None:
            return self.flask(environ, start_response)
        if not kept:
            self._keep(asked, answer)
        status, headers, body = answer.to(environ, self.services.stats)
        start_response(_STATUS_LINES[status], headers)
        sent = b"" if method == "HEAD" else body
        seconds = time.perf_counter() - started
        observe_request(FEED_RULE, status, seconds, cache_hit=kept)
        log_access(method, asked[0], status, seconds, len(sent), environ.get("REMOTE_ADDR"))
        return [sent]

    def _answer(self, environ: dict[str, Any], target: str, query: str) -> Answer | None:
        """The answer to a poll of ``target`` as Flask's view would make it; None for what Flask must answer."""
        if not target.startswith("/feeds/") or not target.isascii() or "//" in target:
            return None
        path, dot, extension = target[7:].rpartition(".")
        if not dot or extension not in FORMATS:
            return None
        try:  # the URL read as Flask's view reads it, with the same functions: no second way in
            found = feed_path_of(path, query)
            if found is None:
                return None
            limit, variant = limit_of(found, query, self.services.settings), variant_of(query)
        except ValueError:  # Flask's view says what is allowed
            return None
        return feed_answer(self.services, environ, found, extension, limit, variant)

    def _keep(self, asked: Request, answer: Answer) -> None:
        """Keep ``answer`` for later polls that ask the same, dropping the oldest kept beyond ``max_bytes``
        (the path and the headers are anyone's text: what is kept must stay bounded)."""
        with self._lock:
            replaced = self._answers.pop(asked, None)
            self._bytes += len(answer.body) - (len(replaced.body) if replaced else 0)
            self._answers[asked] = answer
            while self._bytes > self.max_bytes or len(self._answers) > MAX_ANSWERS:
                self._bytes -= len(self._answers.pop(next(iter(self._answers))).body)


@bp.get("/feeds.opml", provide_automatic_options=False)
def opml() -> Response:
    response = conditional(opml_document(directory(), requested_variant()), "text/x-opml; charset=utf-8", None)
    response.headers.extend(cors_headers(request.environ, settings()))
    return response


@bp.route("/feeds/<path:feed_path>", methods=["OPTIONS"])
@bp.route("/feeds.opml", methods=["OPTIONS"])
def preflight(feed_path: str = "") -> Response:
    """A browser asks before a conditional cross-origin GET (If-None-Match is not a "simple" header)."""
    cors = cors_headers(request.environ, settings())
    allowed = any(name == "Access-Control-Allow-Origin" for name, _ in cors)
    return Response(status=204, headers=[("Allow", "GET, HEAD, OPTIONS"), *cors, *(CORS_PREFLIGHT if allowed else ())])


@bp.get("/healthz")
def healthz() -> Response:
    current_services().store.ping()
    return Response("ok\n", mimetype="text/plain")


def no_feed(path: str) -> NoReturn:
    """A 404 naming the path asked for, cut short: the path is anyone's text, of any length."""
    shown = path if len(path) <= 100 else path[:100] + "…"
    abort(404, description=f"No feed at /feeds/{shown}. The list of feeds is at / and /feeds.opml.")


def requested_limit(path: str = "") -> int:
    """``?limit=``, checked; without one, a hot list's size or the default."""
    try:
        return limit_of(path, request.environ.get("QUERY_STRING", ""), settings())
    except ValueError as exc:
        abort(400, description=str(exc))


def requested_path(path: str) -> str:
    """The feed a URL's path and query name: ``search`` with ``?q=`` is the keyword feed ``search/<terms>``."""
    try:
        found = feed_path_of(path, request.environ.get("QUERY_STRING", ""))
    except ValueError as exc:
        abort(400, description=str(exc))
    if found is None:
        no_feed(path)
    return found


def requested_variant() -> str | None:
    """``?variant=``, checked: one of ``text.VARIANTS``, or None for the site's own language."""
    try:
        return variant_of(request.environ.get("QUERY_STRING", ""))
    except ValueError as exc:
        abort(400, description=str(exc))


def conditional(body: bytes, content_type: str, last_modified: datetime | None) -> Response:
    """``answer`` for a body made just now."""
    stamp = last_modified.timestamp() if last_modified else None
    return answer(Rendered(body, etag_of(body), stamp), content_type, settings().feeds.max_age)


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
    tags: tuple[FeedSpec, ...] = ()
    authors: tuple[FeedSpec, ...] = ()

    def all_specs(self) -> list[FeedSpec]:
        found = [self.everything]

        def walk(nodes: tuple[CategoryNode, ...]) -> None:
            for node in nodes:
                found.append(node.spec)
                walk(node.children)

        walk(self.categories)
        return found + list(self.sources) + list(self.hot) + list(self.tags) + list(self.authors)


def directory() -> Directory:
    cat = catalog()
    return Directory(
        everything=cat.everything(),
        categories=_tree(cat, cat.store.articles.categories(), ()),
        sources=tuple(cat.for_source(source) for source in cat.store.articles.sources()),
        hot=tuple(cat.hot(window) for window in settings().hot.windows),
        tags=tuple(cat.for_label(label) for label, _ in cat.store.labels.most_used("tag", settings().labels.index_tags)),
        authors=tuple(cat.for_label(label) for label, _ in cat.store.labels.most_used("author", settings().labels.index_authors)),
    )


def _tree(cat: Catalog, categories: list[Category], parent: tuple[str, ...]) -> tuple[CategoryNode, ...]:
    children = [c for c in categories if c.names[:-1] == parent]
    return tuple(CategoryNode(cat.for_category(c), _tree(cat, categories, c.names)) for c in children)


def feed_url(spec: FeedSpec, extension: str, variant: str | None = None) -> str:
    return address_of_feed(settings(), spec.path, extension, variant)


def opml_document(found: Directory, variant: str | None = None) -> bytes:
    """OPML 2.0: every feed, grouped by kind, categories as a tree, so a reader subscribes in one step;
    with a ``variant``, every name in that Traditional Chinese and every feed in it."""
    site = settings().site
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = f"{site.title} · 全部订阅源"
    etree.SubElement(head, "ownerName").text = site.title
    body = etree.SubElement(root, "body")

    def feed_outline(parent: etree._Element, spec: FeedSpec) -> None:
        etree.SubElement(
            parent, "outline", type="rss", text=spec.title, title=spec.title,
            xmlUrl=feed_url(spec, "rss", variant), htmlUrl=site.link,
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
    if settings().labels.opml:
        for title, specs in (("标签", found.tags), ("作者", found.authors)):
            if specs:
                labelled = group(title)
                for spec in specs:
                    feed_outline(labelled, spec)
    if variant:
        for element in root.iter():
            if element.text:
                element.text = in_variant(element.text, variant)
            for name in ("text", "title"):
                if element.get(name):
                    element.set(name, in_variant(element.get(name), variant))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
