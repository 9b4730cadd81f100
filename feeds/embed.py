"""Boxes for other sites' pages: the 热门文章 box (a tab per hot-list window, a numbered top ten) and the
newest articles of any feed, each as a page made to sit in an iframe (``/embed/hot``, ``/embed/latest``)
and as a script that draws the same box into a Shadow DOM on the host page (``/embed/hot.js``,
``/embed/latest.js``; static/embed.js, which also keeps the iframe's page fresh).

A box is drawn from the feeds' content and cached with them (``RenderedFeeds.made``) under the version
of the feed scope it shows, so a write is in the next box served, and an unchanged box is a 304.
Every option comes through ``embed_options``: the one place a new one (a Chinese variant, say) is
threaded through to the cache key and the template.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, abort, render_template, request
from werkzeug.datastructures import MultiDict

from feeds.cache import Rendered
from feeds.catalog import FeedSpec
from feeds.config import Settings
from feeds.model import Feed
from feeds.pages import feed_label
from feeds.serving import etag_of, scope_of
from feeds.text import VARIANTS, clip, html_in_variant
from feeds.responses import answer, cors_headers, negotiated_encoding
from feeds.services import catalog, settings
from feeds.services import services as current_services

bp = Blueprint("embed", __name__)

# The news site's own 热门文章 box cuts a headline to 28 Han characters (56 columns, an ASCII character
# taking one) with no mark, and the line under it to 80 columns with one.
TITLE_COLUMNS = 56
SUMMARY_COLUMNS = 80
THEMES = ("light", "dark", "auto")
LATEST_KINDS = ("all", "category", "source", "tag", "author")
SCRIPT = Path(__file__).parent / "static" / "embed.js"


@dataclass(frozen=True)
class EmbedOptions:
    """What a box shows and how, from its query string: ``window`` and ``category`` for the hot box,
    ``feed`` (a feed path) for the newest articles; ``variant`` is the written form of Chinese."""

    kind: str  # "hot" or "latest"
    limit: int
    theme: str
    variant: str
    window: str = ""
    category: str = ""
    feed: str = ""

    @property
    def key(self) -> str:
        """The box's name in the feed cache: every option that changes its bytes."""
        return (f"embed/{self.kind}?window={self.window}&category={self.category}&feed={self.feed}"
                f"&limit={self.limit}&theme={self.theme}&variant={self.variant}")

    @property
    def scope(self) -> str:
        return "hot" if self.kind == "hot" else scope_of(self.feed)


def embed_options(kind: str, args: MultiDict[str, str], site: Settings) -> EmbedOptions:
    """The options of a ``kind`` box from its query string; ValueError naming the parameter that is wrong.
    Whether the category or feed exists is the store's to say (``box_page``)."""
    allowed = ("window", "category") if kind == "hot" else ("feed",)
    allowed += ("limit", "theme", "variant")
    for name in args:
        if name not in allowed:
            raise ValueError(f"unknown parameter {name!r}: /embed/{kind} takes {', '.join(allowed)}.")
        if len(args.getlist(name)) > 1:
            raise ValueError(f"{name} is given more than once.")

    def one_of(name: str, choices: tuple[str, ...], default: str) -> str:
        value = args.get(name, default)
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value[:100]!r}.")
        return value

    windows = tuple(site.hot.windows)
    most = site.hot.size if kind == "hot" else site.feeds.max_limit
    raw_limit = args.get("limit", str(site.hot.size))
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= most:
        raise ValueError(f"limit must be a whole number from 1 to {most}, got {raw_limit[:100]!r}.")
    common = {"limit": int(raw_limit), "theme": one_of("theme", THEMES, "auto"),
              "variant": one_of("variant", (site.site.language, *VARIANTS), site.site.language)}
    if kind == "hot":
        category = args.get("category", "").strip("/")
        return EmbedOptions("hot", window=one_of("window", windows, windows[0]), category=category, **common)
    feed = args.get("feed", "")
    if not feed:
        raise ValueError("feed is missing: name a feed such as all, category/redian or source/xinhuashe.")
    if feed.partition("/")[0] not in LATEST_KINDS:
        raise ValueError(f"feed must be all, category/<slug path>, source/<slug>, tag/<slug> or author/<slug>, got {feed[:100]!r}.")
    return EmbedOptions("latest", feed=feed, **common)


@dataclass(frozen=True)
class Tab:
    """One list of a box: its tab's label and value (a hot-list window), and its feed."""

    value: str
    label: str
    feed: Feed


def box_page(options: EmbedOptions) -> tuple[bytes, float] | None:
    """The box's page and its latest change; None when its category or feed does not exist."""
    cat = catalog()
    if options.kind == "hot":
        category = cat.store.articles.category(options.category) if options.category else None
        if options.category and category is None:
            return None
        now = datetime.now(timezone.utc)
        tabs = [Tab(window, cat.window_label(window), cat.build(cat.hot(window, category), options.limit, now))
                for window in settings().hot.windows]
        heading = f"{category.name} · 热门文章" if category else "热门文章"
    else:
        spec = cat.resolve(options.feed)
        if spec is None or spec.kind not in LATEST_KINDS or spec.page is not None:
            return None
        tabs = [Tab("latest", "最新文章", cat.build(spec, options.limit))]
        heading = "最新文章" if spec.kind == "all" else f"{feed_label(spec)} · 最新文章"
    site = settings()
    body = render_template(
        "embed.html",
        options=options,
        heading=heading,
        tabs=tabs,
        site=site.site,
        target=site.embed.link_target,
        refresh_seconds=site.embed.refresh_seconds,
        lines=lines,
    )
    if options.variant in VARIANTS:
        body = html_in_variant(body, options.variant)
    return body.encode("utf-8"), max(tab.feed.updated for tab in tabs).timestamp()


def lines(tab: Tab, options: EmbedOptions) -> list[tuple[int, str, str, str, str]]:
    """Each item of a tab as (rank, full title, title cut to fit, link, summary cut to fit)."""
    shown = []
    for rank, item in enumerate(tab.feed.items[: options.limit], 1):
        # Hot-list items carry their rank in the title ("1. "), for feed readers; the box numbers them itself.
        title = item.title.removeprefix(f"{rank}. ") if options.kind == "hot" else item.title
        shown.append((rank, title, clip(title, TITLE_COLUMNS), item.link, clip(item.summary, SUMMARY_COLUMNS, "…")))
    return shown


def requested_options(kind: str) -> EmbedOptions:
    if kind not in ("hot", "latest"):
        abort(404, description="No box here. The boxes are /embed/hot and /embed/latest (and their .js scripts).")
    try:
        return embed_options(kind, request.args, settings())
    except ValueError as exc:
        abort(400, description=str(exc))


def framing() -> tuple[str, str]:
    """Who may frame a box: ``embed.frame_ancestors`` (every other page refuses, ``responses.refuse_framing``)."""
    return ("Content-Security-Policy", f"frame-ancestors {' '.join(settings().embed.frame_ancestors)}")


@bp.get("/embed/<kind>", provide_automatic_options=False)
def box(kind: str) -> Response:
    options = requested_options(kind)
    services = current_services()
    encoding = negotiated_encoding(request.environ.get("HTTP_ACCEPT_ENCODING", ""))
    rendered = services.feeds.made(options.key, options.scope, lambda: box_page(options), encoding)
    if rendered is None:
        named = f"category {options.category!r}" if kind == "hot" else f"feed {options.feed!r}"
        abort(400, description=f"{'category' if kind == 'hot' else 'feed'}: there is no {named[:120]}; every feed is listed at /.")
    # The host page's script reads the box cross-origin (static/embed.js), as it may read the feeds.
    headers = [("Vary", "Accept-Encoding"), *cors_headers(request.environ, services.settings), framing()]
    if encoding != "identity":
        headers.append(("Content-Encoding", encoding))
    return answer(rendered, "text/html; charset=utf-8", services.settings.embed.refresh_seconds, headers)


@bp.get("/embed/<kind>.js", provide_automatic_options=False)
def script(kind: str) -> Response:
    """The script that draws the box named by its own URL (``/embed/hot.js?window=weekly`` draws
    ``/embed/hot?window=weekly``). The options are checked here too, so that a mistyped snippet fails
    where it is pasted."""
    requested_options(kind)
    return answer(script_rendered(), "text/javascript; charset=utf-8", settings().embed.refresh_seconds)


@cache  # the file is part of the package: it changes only with a new version
def script_rendered() -> Rendered:
    body = SCRIPT.read_bytes()
    return Rendered(body, etag_of(body), SCRIPT.stat().st_mtime)


def snippets(spec: FeedSpec) -> list[tuple[str, str]]:
    """The lines another site pastes to show the box of a hot list (or of a feed's newest articles): an
    iframe, or a script that draws the box in place."""
    base = settings().base_url
    if spec.kind == "hot":
        query = f"window={spec.window}" + (f"&amp;category={spec.category.slug_path}" if spec.category else "")
        page = f"{base}/embed/hot?{query}"
        script_url = f"{base}/embed/hot.js?{query}"
    else:
        page = f"{base}/embed/latest?feed={spec.path}"
        script_url = f"{base}/embed/latest.js?feed={spec.path}"
    return [
        ("iframe", f'<iframe src="{page}" title="{spec.title}" width="440" height="720" style="border:0;max-width:100%" loading="lazy"></iframe>'),
        ("脚本", f'<script src="{script_url}" async></script>'),
    ]


@bp.app_context_processor
def template_helpers() -> dict[str, object]:
    return {"embed_snippets_of": snippets}
