"""Pages for people: the index of every feed, and an HTML preview of each feed.

The index (``/``) lists every feed (everything, the hot lists, the category tree,
the sources) with its three URLs, a copy button, its newest headline and a link to
its preview. A preview (``/feeds/<path>.html``) shows what a feed holds, the same
items as the feed itself, and how to subscribe, with a QR code of the RSS URL.

Both answer with conditional GET (``web.conditional``). Routing and HTML only: the
content comes from ``Catalog`` and the store's public methods.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

import segno
from flask import Blueprint, Response, current_app, render_template, url_for
from markupsafe import Markup

from feeds.catalog import FeedSpec
from feeds.model import Article, Feed
from feeds.text import html_in_variant
from feeds.responses import refuse_framing
from feeds.services import catalog, settings
from feeds.web import Directory, conditional, directory, feed_url, no_feed, requested_limit, requested_path, requested_variant
from feeds.writers import FORMATS

bp = Blueprint("pages", __name__)
bp.after_request(refuse_framing)

# The index reads the newest HEADLINE_SCAN articles in one query and takes each feed's
# headline from them; only a feed with nothing among them costs a query of its own.
HEADLINE_SCAN = 200
FORMAT_LABELS = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
EXPLANATION = (
    "订阅源（RSS）是一个网址：把它添加到 RSS 阅读器（如 Feedly、Inoreader、NetNewsWire、Reeder），"
    "新文章就会自动出现在阅读器里，不必再一次次打开网站查看。"
)


@dataclass(frozen=True)
class Headline:
    """What the index shows of a feed's content: its first item, and when that was published."""

    title: str
    link: str
    published: datetime  # in the site's timezone


@bp.get("/")
def index() -> Response:
    found = directory()
    return page("index.html", None, directory=found, headlines=headlines(found))


@bp.get("/feeds/<path:feed_path>.html")
def preview(feed_path: str) -> Response:
    spec = catalog().resolve(requested_path(feed_path))
    if spec is None:
        no_feed(feed_path)
    variant = requested_variant()
    built = catalog().build(spec, requested_limit(), variant=variant)
    qr = qr_svg(feed_url(spec, "rss", variant), f"{spec.title} 的 RSS 订阅地址二维码")
    return page("preview.html", built.updated, spec=spec, feed=built, qr_svg=qr)


def page(template: str, last_modified: datetime | None, **context: object) -> Response:
    """A page for people, in the Traditional Chinese that ``?variant=`` asks for: its text converted
    once rendered, its tags and links (slugs, URLs) left as they are."""
    variant = requested_variant()
    body = render_template(template, site=settings().site, explanation=EXPLANATION, language=variant, **context)
    if variant:
        body = html_in_variant(body, variant)
    return conditional(body.encode("utf-8"), "text/html; charset=utf-8", last_modified)


def variant_links() -> list[tuple[str, str, bool]]:
    """The index's language switch: (name, URL, whether it is the one shown)."""
    shown = requested_variant()
    names = {None: "简体", "zh-TW": "繁體（臺灣）", "zh-HK": "繁體（香港）", "zh-Hant": "繁體"}
    return [(name, url_for("pages.index", **({"variant": code} if code else {})), code == shown) for code, name in names.items()]


# -- the newest headline of every feed, cheaply ---------------------------------------------


def headlines(found: Directory) -> dict[str, Headline | None]:
    """Each feed's first item by feed path: the newest article, or for a hot list its top one.

    Cost: one query for the newest ``HEADLINE_SCAN`` articles, which answers every feed
    that has an article among them (a feed's newest article is the first of them that
    it holds: both are ordered by publication time, then storage order); one
    ``store.articles.newest(1, …)`` (an index range scan) per feed with none among them, which is
    only the quiet ones; and one ranking per hot list, as its feed costs.
    """
    cat = catalog()
    tz = settings().tz
    recent = cat.store.articles.newest(HEADLINE_SCAN)
    complete = len(recent) < HEADLINE_SCAN  # every stored article is in ``recent``
    firsts: dict[tuple[object, ...], Article] = {}
    for article in recent:  # newest first: the first article seen for a feed is its newest
        for key in _feed_keys(article):
            firsts.setdefault(key, article)

    found_headlines: dict[str, Headline | None] = {}
    for spec in found.all_specs():
        if spec.kind == "hot":
            items = cat.build(spec, 1).items
            found_headlines[spec.path] = Headline(items[0].title, items[0].link, items[0].published) if items else None
            continue
        first = firsts.get(_spec_key(spec))
        if first is None and not complete:
            newest = cat.store.articles.newest(1, category=spec.category, source=spec.source, label=spec.label)
            first = newest[0] if newest else None
        found_headlines[spec.path] = Headline(first.title, first.url, first.published.astimezone(tz)) if first else None
    return found_headlines


def _feed_keys(article: Article) -> list[tuple[object, ...]]:
    """The (non-hot) feeds that hold ``article``: everything, its category and each ancestor, its source, tags and author."""
    keys: list[tuple[object, ...]] = [("all",)]
    keys += [("category", article.category[:depth]) for depth in range(1, len(article.category) + 1)]
    if article.source is not None:
        keys.append(("source", article.source.slug))
    keys += [("tag", tag) for tag in article.tags]
    if article.author:
        keys.append(("author", article.author))
    return keys


def _spec_key(spec: FeedSpec) -> tuple[object, ...]:
    if spec.category is not None:
        return ("category", spec.category.names)
    if spec.source is not None:
        return ("source", spec.source.slug)
    if spec.label is not None:
        return (spec.label.kind, spec.label.name)
    return ("all",)


# -- helpers for the templates -------------------------------------------------------------


def qr_svg(url: str, title: str) -> Markup:
    """The QR code of ``url`` as inline SVG, dark on white whatever the page's colours."""
    code = segno.make(url, error="m", micro=False)
    svg = code.svg_inline(scale=4, border=2, dark="#000", light="#fff", title=title, svgclass="qr", lineclass="qr-line")
    return Markup(svg.replace("<svg ", '<svg role="img" ', 1))


@cache
def _asset_version(filename: str) -> str:
    path = Path(current_app.static_folder or "") / filename
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "0"


def static_url(filename: str) -> str:
    """A static file's URL that changes with its content, so it can be cached for long."""
    return url_for("static", filename=filename, v=_asset_version(filename))


def preview_url(spec: FeedSpec) -> str:
    variant = requested_variant()
    return url_for("pages.preview", feed_path=spec.path, **({"variant": variant} if variant else {}))


def local_time(moment: datetime) -> str:
    return moment.astimezone(settings().tz).strftime("%Y-%m-%d %H:%M")


def feed_urls(spec: FeedSpec | Feed) -> list[tuple[str, str, str]]:
    """(extension, label, URL) of each format, in the order the page shows them."""
    if isinstance(spec, Feed):
        return [(ext, FORMAT_LABELS.get(ext, ext), spec.url(ext)) for ext in FORMATS]
    return [(ext, FORMAT_LABELS.get(ext, ext), feed_url(spec, ext, requested_variant())) for ext in FORMATS]


def mimetype(extension: str) -> str:
    return FORMATS[extension].mimetype


def feed_label(spec: FeedSpec) -> str:
    """A feed's short name where the page already says what kind it is: 国内, 新华社, 日榜."""
    if spec.kind == "hot" and spec.window is not None:
        label = catalog().window_label(spec.window)
        return f"{' > '.join(spec.category.names)} · {label}" if spec.category else label
    if spec.category is not None:
        return spec.category.name
    if spec.source is not None:
        return spec.source.name
    if spec.label is not None:
        return spec.label.name
    return "全部文章"


def search_text(spec: FeedSpec) -> str:
    """What the index's filter box matches a feed on: its names and its URL path (pinyin)."""
    words = [feed_label(spec), spec.path.replace("/", " ")]
    if spec.category is not None:
        words.append(" ".join(spec.category.names))
    if spec.kind == "hot":
        words.append("热门文章 热榜")
    return " ".join(words)


def tz_label() -> str:
    """The site's timezone as people say it: 北京时间 (UTC+08:00)."""
    zone = settings().site.timezone
    offset = datetime.now(settings().tz).strftime("%z")
    utc = f"UTC{offset[:3]}:{offset[3:]}"
    return f"北京时间（{utc}）" if zone in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else f"{zone} 时间（{utc}）"


@bp.app_context_processor
def template_helpers() -> dict[str, object]:
    return {
        "static_url": static_url,
        "preview_url": preview_url,
        "label_preview_url": lambda label: preview_url(catalog().for_label(label)),
        "variant_links": variant_links,
        "local_time": local_time,
        "feed_urls": feed_urls,
        "feed_url": lambda spec, extension: feed_url(spec, extension, requested_variant()),
        "feed_mimetype": mimetype,
        "feed_label": feed_label,
        "search_text": search_text,
        "tz_label": tz_label,
    }
