"""The polling path: a feed's bytes, from the cache when its content has not changed.

Each feed belongs to one *scope* ("all", "category:<slug path>", "source:<slug>",
"tag:<slug>", "author:<slug>", "hot") whose version the store bumps in the same transaction as any change to
what the feed shows. A request reads that one version (a primary-key lookup),
and looks for the bytes rendered at that version: a hit, or a 304, does no
rendering and no other query. Hot lists also change as reads age out of their
window, so their key moves on every ``cache.hot_ttl`` seconds as well.

Compressed bytes are cached beside the plain ones, each with its own ETag.
"""
from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Callable, Iterable

import brotli

from feeds.cache import Cache, ChangeNews, Rendered
from feeds.catalog import Catalog
from feeds.config import PartnerSettings, Settings
from feeds.metrics import CACHE_MISSES, RENDER_SECONDS, count_hit
from feeds.store import Store
from feeds.writers import render

ENCODINGS = ("br", "gzip")

# A scope's content version, and for hot lists the period of ``cache.hot_ttl`` they were ranked in:
# what rendered feeds are kept under, and what a kept answer to a poll (web.Answer) holds good for.
Stamp = tuple[int, int | None]


def scope_of(path: str) -> str:
    """The version scope a feed path belongs to: ``category/redian/guonei`` -> ``category:redian/guonei``;
    an archive page belongs to its feed's scope: ``archive/category/redian/3`` -> ``category:redian``."""
    kind, _, rest = path.partition("/")
    if kind == "archive":
        return scope_of(rest.rpartition("/")[0])
    if kind == "search":  # a keyword feed searches everything
        return "all"
    return "hot" if kind == "hot" else f"{kind}:{rest}" if rest else kind


def feed_paths(scopes: Iterable[str], windows: Iterable[str]) -> list[str]:
    """The feed paths whose content a change to ``scopes`` may have changed."""
    paths = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        if kind == "hot":
            paths.extend(f"hot/{window}" for window in windows)
        elif kind in ("all", "category", "source", "tag", "author"):
            paths.append(f"{kind}/{rest}" if rest else kind)
    return paths


def etag_of(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def compress(body: bytes, encoding: str) -> bytes:
    if encoding == "br":
        return brotli.compress(body, quality=9)
    # mtime=0: the same content gives the same bytes, here and on every instance
    return gzip.compress(body, compresslevel=6, mtime=0)


class RenderedFeeds:
    """Rendered feeds by path, format, limit and encoding, rendered at most once per content version."""

    def __init__(self, store: Store, catalog: Catalog, cache: Cache, settings: Settings, news: ChangeNews | None = None):
        self.store = store
        self.catalog = catalog
        self.cache = cache
        self.settings = settings
        self.news = news

    def stamp(self, scope: str, version: int | None = None) -> Stamp:
        """What the rendered feeds of ``scope`` are kept under now: the scope's content version (its current one,
        or ``version`` when the caller read a newer one itself) and, for hot lists, the ``cache.hot_ttl`` period."""
        if self.news is not None:  # from the first poll on, in each process (server workers are forked after start)
            self.news.listen(self.store.versions.forget)
        if version is None:
            version = self.store.versions.current(scope)
        return version, int(time.time() // self.settings.cache.hot_ttl) if scope == "hot" else None

    def get(self, path: str, extension: str, limit: int, encoding: str = "identity", stamp: Stamp | None = None,
            variant: str | None = None) -> Rendered | None:
        """The feed at ``path`` in the format ``extension`` (and Traditional Chinese ``variant``), encoded; None when
        there is no such feed. At its scope's ``stamp`` (by default, the current one)."""

        def make() -> tuple[bytes, float] | None:
            spec = self.catalog.resolve(path)
            if spec is None:
                return None
            feed = self.catalog.build(spec, limit, variant=variant)
            with RENDER_SECONDS.labels(extension).time():
                body = render(feed, extension)
            return body, feed.updated.timestamp()

        return self.made(f"{path}.{extension}?{limit}~{variant or ''}", scope_of(path), make, encoding, stamp)

    def partner(self, name: str, partner: PartnerSettings, key: str, path: str, extension: str, limit: int,
                encoding: str = "identity", stamp: Stamp | None = None, variant: str | None = None) -> Rendered | None:
        """The feed at ``path`` as the partner ``name`` gets it through ``key`` (``Catalog.partner_feed``), like ``get``."""

        def make() -> tuple[bytes, float] | None:
            feed = self.catalog.partner_feed(partner, key, path, limit, variant)
            return None if feed is None else (render(feed, extension), feed.updated.timestamp())

        keyed = hashlib.sha256(key.encode()).hexdigest()[:16]  # the key is in the bytes (the self link), never in key names
        return self.made(f"partner/{name}/{keyed}/{path}.{extension}?{limit}~{variant or ''}", scope_of(path), make, encoding, stamp)

    def made(self, name: str, scope: str, make: Callable[[], tuple[bytes, float | None] | None], encoding: str = "identity",
             stamp: Stamp | None = None) -> Rendered | None:
        """The bytes ``make`` gives (with their last change), kept under ``name`` at the ``stamp`` of
        ``scope``: a feed, or anything else drawn from the feeds' content (the embeddable boxes, the sitemaps)."""
        version, period = self.stamp(scope) if stamp is None else stamp
        key = f"{name}@{version}" if period is None else f"{name}@{version}#{period}"
        ttl = self.settings.cache.hot_ttl if scope == "hot" else self.settings.cache.ttl
        found = self.cache.get(f"{key}:{encoding}")
        if found is not None:
            count_hit()
            return found
        plain = self.cache.get(f"{key}:identity") if encoding != "identity" else None
        if plain is None:
            fresh = make()
            if fresh is None:
                return None
            CACHE_MISSES.inc()
            body, last_modified = fresh
            plain = Rendered(body, etag_of(body), last_modified)
            self.cache.set(f"{key}:identity", plain, ttl)
        else:
            count_hit()  # rendered already; only compressed now
        if encoding == "identity":
            return plain
        encoded = Rendered(compress(plain.body, encoding), f"{plain.etag}-{encoding}", plain.last_modified)
        self.cache.set(f"{key}:{encoding}", encoded, ttl)
        return encoded
