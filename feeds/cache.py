"""Rendered feeds, kept so that a poll costs no rendering: one small interface, two backends.

Keys name a feed, its format, limit and encoding *and the version of the
content it shows* (see ``feeds.store.versions``), so an entry never needs deleting:
a write bumps the version and the next request looks under a new key. Old
entries fall out by LRU (in memory) or by their time to live (Redis).

Redis is shared by every instance; when it is down the service renders from
the database (slower, never wrong) and tries Redis again after a pause. Through
Redis, too, each write tells every process which feed versions it moved
(``ChangeNews``), so that none goes on trusting an old one.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

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


def is_redis(url: str) -> bool:
    """Whether ``cache.url`` names a Redis shared by every instance."""
    return url.startswith(("redis://", "rediss://"))


def redis_client(url: str) -> Any:
    """A client for the Redis at ``url`` with the short timeouts a request can afford."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)


class _Pause:
    """After a Redis call fails, Redis is left alone for ``seconds``, so an outage costs one short
    timeout, not one per request; one warning (``message``, with the seconds and the error) per pause."""

    def __init__(self, seconds: float, message: str):
        self.seconds = seconds
        self.message = message
        self._until = 0.0

    def on(self) -> bool:
        return time.monotonic() < self._until

    def failed(self, exc: Exception) -> None:
        if not self.on():
            log.warning(self.message, self.seconds, exc)
        self._until = time.monotonic() + self.seconds


class RedisCache:
    """Rendered feeds in Redis, shared by every instance. A failing Redis is skipped for
    ``retry_after`` seconds, so an outage costs one short timeout, not one per request."""

    def __init__(self, url: str, retry_after: float = 5.0, prefix: str = "feeds:"):
        self.client = redis_client(url)
        self.prefix = prefix
        self._pause = _Pause(retry_after, "redis cache unavailable, serving from the database for %.0f s: %s")

    def get(self, key: str) -> Rendered | None:
        if self._pause.on():
            return None
        try:
            data = self.client.get(self.prefix + key)
        except Exception as exc:  # redis.RedisError and socket errors alike: serve without the cache
            self._pause.failed(exc)
            return None
        return Rendered.loads(data) if data else None

    def set(self, key: str, value: Rendered, ttl: int) -> None:
        if self._pause.on():
            return
        try:
            self.client.set(self.prefix + key, value.dumps(), ex=ttl)
        except Exception as exc:
            self._pause.failed(exc)


def open_cache(url: str, retry_after: float = 5.0) -> Cache:
    """``redis://…`` or ``rediss://…`` for Redis; empty or ``memory://`` for this process alone."""
    return RedisCache(url, retry_after) if is_redis(url) else MemoryCache()


class ChangeNews:
    """Which feed scopes a write changed, told to every process of the site through Redis pub/sub.

    Each process trusts the versions it read for ``cache.recheck_seconds``
    (``FeedVersions.current``); on this news it forgets those of the changed scopes at once, so a
    write through one instance shows on the others at their next poll. Best effort: news
    lost while Redis is away costs at most ``recheck_seconds`` of delay, never a wrong feed.
    """

    def __init__(self, url: str, retry_after: float = 5.0):
        self.url = url
        self.retry_after = retry_after
        self.client = redis_client(url)
        # Channels are not per database: the database's number keeps sites sharing a server apart.
        self.channel = f"feeds:changed:{self.client.connection_pool.connection_kwargs.get('db', 0)}"
        self._listening: int | None = None  # the process whose listener runs (server workers are forked)
        self._pause = _Pause(retry_after, "redis unavailable for change news for %.0f s: %s")

    def publish(self, scopes: Iterable[str]) -> None:
        if self._pause.on():
            return
        try:
            self.client.publish(self.channel, json.dumps(sorted(scopes)))
        except Exception as exc:  # the others see the change within recheck_seconds all the same
            self._pause.failed(exc)

    def listen(self, forget: Callable[[set[str] | None], None]) -> None:
        """Call ``forget`` with the scopes of every change told from now on, from a thread of
        this process's own; a no-op once listening in this process."""
        if self._listening == os.getpid():
            return
        self._listening = os.getpid()
        threading.Thread(target=self._listen, args=(forget,), name="feeds-change-news", daemon=True).start()

    def _listen(self, forget: Callable[[set[str] | None], None]) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.25, socket_timeout=5, health_check_interval=10)
        told = False  # of this outage: one warning, not one a retry
        while True:
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                forget(None)  # news may have been missed before this subscription: trust nothing read before
                told = False
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        forget(set(json.loads(message["data"])))
            except Exception as exc:
                if not told:
                    log.warning("change news from redis interrupted, trying again every %.0f s: %s", self.retry_after, exc)
                    told = True
                time.sleep(self.retry_after)
