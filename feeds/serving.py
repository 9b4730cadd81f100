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
from feeds.config import Settings
from feeds.metrics import CACHE_HITS, CACHE_MISSES, RENDER_SECONDS
from feeds.store import Store
from feeds.writers import render

ENCODINGS = ("br", "gzip")


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

    def get(self, path: str, extension: str, limit: int, encoding: str = "identity", version: int | None = None,
            variant: str | None = None) -> Rendered | None:
        """The feed at ``path`` in the format ``extension`` (and Traditional Chinese ``variant``), encoded; None when
        there is no such feed. At its scope's current version, or at ``version`` when the caller read a newer one itself."""

        def make() -> tuple[bytes, float] | None:
            spec = self.catalog.resolve(path)
            if spec is None:
                return None
            feed = self.catalog.build(spec, limit, variant=variant)
            with RENDER_SECONDS.labels(extension).time():
                body = render(feed, extension)
            return body, feed.updated.timestamp()

        return self.made(f"{path}.{extension}?{limit}~{variant or ''}", scope_of(path), make, encoding, version)

    def made(self, name: str, scope: str, make: Callable[[], tuple[bytes, float] | None], encoding: str = "identity",
             version: int | None = None) -> Rendered | None:
        """The bytes ``make`` gives (with their last change), kept under ``name`` at the current version of
        ``scope``: a feed, or anything else drawn from the feeds' content (the embeddable boxes)."""
        if self.news is not None:  # from the first poll on, in each process (server workers are forked after start)
            self.news.listen(self.store.versions.forget)
        key = f"{name}@{self.store.versions.current(scope) if version is None else version}"
        ttl = self.settings.cache.ttl
        if scope == "hot":
            ttl = self.settings.cache.hot_ttl
            key += f"#{int(time.time() // ttl)}"
        found = self.cache.get(f"{key}:{encoding}")
        if found is not None:
            CACHE_HITS.inc()
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
            CACHE_HITS.inc()  # rendered already; only compressed now
        if encoding == "identity":
            return plain
        encoded = Rendered(compress(plain.body, encoding), f"{plain.etag}-{encoding}", plain.last_modified)
        self.cache.set(f"{key}:{encoding}", encoded, ttl)
        return encoded
