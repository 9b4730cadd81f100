"""Rendered feeds, kept so that a poll costs no rendering: one small interface, two backends.

Keys name a feed, its format, limit and encoding *and the version of the
content it shows* (see ``Store.versions``), so an entry never needs deleting:
a write bumps the version and the next request looks under a new key. Old
entries fall out by LRU (in memory) or by their time to live (Redis).

Redis is shared by every instance; when it is down the service renders from
the database (slower, never wrong) and tries Redis again after a pause.
"""
from __future__ import annotations

import logging
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("feeds.cache")


@dataclass(frozen=True)
class Rendered:
    """A feed's bytes in one encoding, with what conditional GET needs."""

    body: bytes
    etag: str
    last_modified: float | None  # Unix seconds, None when the document has no date

    def dumps(self) -> bytes:
        etag = self.etag.encode()
        stamp = -1.0 if self.last_modified is None else self.last_modified
        return struct.pack("!dH", stamp, len(etag)) + etag + self.body

    @classmethod
    def loads(cls, data: bytes) -> Rendered:
        stamp, length = struct.unpack_from("!dH", data)
        start = struct.calcsize("!dH")
        etag = data[start : start + length].decode()
        return cls(data[start + length :], etag, None if stamp < 0 else stamp)


class Cache(Protocol):
    def get(self, key: str) -> Rendered | None: ...

    def set(self, key: str, value: Rendered, ttl: int) -> None: ...


class MemoryCache:
    """A thread-safe LRU of at most ``max_bytes`` of bodies, for one process."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Rendered, float]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Rendered | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires = entry
            if expires < time.monotonic():
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: Rendered, ttl: int) -> None:
        if len(value.body) > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._remove(key)
            self._entries[key] = (value, time.monotonic() + ttl)
            self._size += len(value.body)
            while self._size > self.max_bytes:
                self._remove(next(iter(self._entries)))

    def _remove(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self._size -= len(value.body)


class RedisCache:
    """Rendered feeds in Redis, shared by every instance. A failing Redis is skipped for
    ``retry_after`` seconds, so an outage costs one short timeout, not one per request."""

    def __init__(self, url: str, retry_after: float = 5.0, prefix: str = "feeds:"):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self.retry_after = retry_after
        self.prefix = prefix
        self._down_until = 0.0

    def get(self, key: str) -> Rendered | None:
        if self._skipping():
            return None
        try:
            data = self.client.get(self.prefix + key)
        except Exception as exc:  # redis.RedisError and socket errors alike: serve without the cache
            self._failed(exc)
            return None
        return Rendered.loads(data) if data else None

    def set(self, key: str, value: Rendered, ttl: int) -> None:
        if self._skipping():
            return
        try:
            self.client.set(self.prefix + key, value.dumps(), ex=ttl)
        except Exception as exc:
            self._failed(exc)

    def _skipping(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, exc: Exception) -> None:
        if not self._skipping():
            log.warning("redis cache unavailable, serving from the database for %.0f s: %s", self.retry_after, exc)
        self._down_until = time.monotonic() + self.retry_after


def open_cache(url: str, retry_after: float = 5.0) -> Cache:
    """``redis://…`` or ``rediss://…`` for Redis; empty or ``memory://`` for this process alone."""
    if url.startswith(("redis://", "rediss://")):
        return RedisCache(url, retry_after)
    return MemoryCache()
