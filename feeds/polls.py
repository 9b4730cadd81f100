"""Counting the polls of the feeds, per feed and day: requests, 304s, pollers, client applications
and the subscribers aggregators report. What is done with the counts is ``stats.py``'s.

A feed is its path without the format: ``/feeds/all.rss`` and ``/feeds/all.json`` are
the same feed, read by the same people in different readers. Days are the site's
(``site.timezone``). Only polls of feeds that exist are counted.

Counting is cheap on the polling path: a lock, a dict and a set in this process's
memory (``PollCounter.record``). A background thread writes the counts to the
database every ``stats.flush_seconds`` and at exit, one transaction per flush, merged
into what other processes and instances wrote (requests summed, pollers united,
reports the largest). Pollers are kept as keyed hashes of address and User-Agent
under a random salt for the day, kept in the database while the day is open so
that every process and instance hashes a poller alike; once the day is closed the
salt is deleted with the hashes, which are collapsed into a count, so they cannot
be reversed nor linked to another day's.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

from feeds.config import Settings
from feeds.errors import StoreUnavailable
from feeds.model import PollCounts
from feeds.store import Store

log = logging.getLogger("feeds.stats")

_NAME_CHARS = 100  # the longest client or service name stored

# "123 subscribers", "45 subscribers;", "- 31 subscribers -", "5 readers": Feedly, Inoreader,
# The Old Reader, NewsBlur, Feedbin and others all say it this way.
_REPORTED = re.compile(r"\b(\d{1,9})\s+(?:subscribers?|readers?)\b", re.IGNORECASE)
_COMPATIBLE = re.compile(r"\(compatible;\s*([^;)]+)")
_PRODUCT = re.compile(r"([A-Za-z][\w.-]*)/[\w.]")
_NAMED = re.compile(r"^([A-Za-z][\w .+-]*?)/\d")  # "Tiny Tiny RSS/22.08"
_FIRST_WORD = re.compile(r"[\w.+-]+")
_VERSION = re.compile(r"(?:/|\s+v?\d).*$")  # "Miniflux/2.0.50" -> "Miniflux", "MSIE 9.0" -> "MSIE"
# Product tokens every browser sends; the browser's own name is the one left.
_ENGINE_TOKENS = {"Mozilla", "AppleWebKit", "KHTML", "Gecko", "Safari", "Mobile", "Version", "like"}


@lru_cache(maxsize=4096)  # a few readers poll all day with the same User-Agent
def parse_user_agent(user_agent: str) -> tuple[str, int | None]:
    """The client application of a User-Agent, and the subscribers it reports (None: not an aggregator).

    The client is the product token (``Feedly/1.0`` -> Feedly), for a browser-like
    ``Mozilla/5.0 (compatible; theoldreader.com; …)`` the name after ``compatible;``,
    for another ``Mozilla/…`` the last token that is not an engine's (Thunderbird,
    Firefox, Chrome), else the first word (``NewsBlur Feed Fetcher - …`` -> NewsBlur).
    """
    user_agent = user_agent.strip()
    reported = _REPORTED.search(user_agent)
    subscribers = int(reported.group(1)) if reported else None
    if not user_agent:
        return "(none)", subscribers
    compatible = _COMPATIBLE.search(user_agent)
    if user_agent.startswith("Mozilla/") and compatible:
        name = _VERSION.sub("", compatible.group(1).strip())
    elif user_agent.startswith("Mozilla/"):
        tokens = _PRODUCT.findall(user_agent)
        own = [token for token in tokens if token not in _ENGINE_TOKENS]
        name = own[-1] if own else tokens[-1]
    else:
        named, word = _NAMED.match(user_agent), _FIRST_WORD.match(user_agent)
        name = named.group(1) if named else word.group(0) if word else user_agent
    return (name.strip() or "(none)")[:_NAME_CHARS], subscribers


@dataclass
class _Tally:
    """One feed's polls on one day, since the last flush."""

    requests: int = 0
    not_modified: int = 0
    pollers: set[str] = field(default_factory=set)
    subscribers: dict[str, int] = field(default_factory=dict)
    clients: Counter[str] = field(default_factory=Counter)

    def merge(self, other: _Tally) -> None:
        self.requests += other.requests
        self.not_modified += other.not_modified
        self.pollers |= other.pollers
        for service, count in other.subscribers.items():
            self.subscribers[service] = max(count, self.subscribers.get(service, 0))
        self.clients.update(other.clients)


class PollCounter:
    """Counts polls in memory and writes them to the database in batches (see the module's doc).

    A poll costs one dict increment: who polled (the hash of address and User-Agent, the client
    application, an aggregator's report) is worked out once per distinct poller at the next flush."""

    def __init__(self, store: Store, settings: Settings):
        self.polls = store.polls
        self.settings = settings
        self._polls: Counter[tuple[date, str, str, str, bool]] = Counter()
        self._tallies: dict[tuple[date, str], _Tally] = {}  # counted, not yet written (a flush that failed)
        self._salts: dict[date, bytes] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._flusher: threading.Thread | None = None
        self._today = (date.min, 0.0, 0.0)  # the site's date, and the Unix seconds it starts and ends

    def record(self, feed: str, address: str, user_agent: str, status: int, now: datetime | None = None) -> None:
        """Count one answered poll of ``feed`` (its path without the format)."""
        day = self._day() if now is None else now.astimezone(self.settings.tz).date()
        with self._lock:
            self._polls[day, feed, address, user_agent, status == 304] += 1
            if self._flusher is None:  # started on first use: in each server process, and never for CLI commands
                self._flusher = threading.Thread(target=self._flush_every, name="feeds-stats-flush", daemon=True)
                self._flusher.start()
                atexit.register(self.close)

    def _day(self) -> date:
        """Today in the site's timezone, worked out once a day rather than once a poll."""
        day, starts, ends = self._today
        if not starts <= time.time() < ends:
            day = datetime.now(self.settings.tz).date()
            midnight = datetime.combine(day, datetime.min.time(), self.settings.tz)
            self._today = (day, midnight.timestamp(), (midnight + timedelta(days=1)).timestamp())
        return day

    def flush(self, now: datetime | None = None) -> None:
        """Write what was counted since the last flush, in one transaction, and drop the days
        past ``stats.retention_days``. On failure the counts are kept for the next flush."""
        with self._lock:
            polls, self._polls = self._polls, Counter()
            tallies, self._tallies = self._tallies, {}
        for (day, feed, address, user_agent, not_modified), count in polls.items():
            tally = tallies.get((day, feed))
            if tally is None:
                tally = tallies[day, feed] = _Tally()
            client, subscribers = parse_user_agent(user_agent)
            tally.requests += count
            tally.not_modified += count if not_modified else 0
            tally.clients[client] += count
            if subscribers is None:
                tally.pollers.add(self._hash(day, address, user_agent))
            else:
                tally.subscribers[client] = max(subscribers, tally.subscribers.get(client, 0))
        if not tallies:
            return
        today = (now or datetime.now(self.settings.tz)).astimezone(self.settings.tz).date()
        counts = [
            PollCounts(day, feed, t.requests, t.not_modified, frozenset(t.pollers), dict(t.subscribers), dict(t.clients))
            for (day, feed), t in tallies.items()
        ]
        try:
            # Yesterday stays open: another instance may still flush polls it counted before midnight.
            self.polls.add(counts, keep_from=today - timedelta(days=self.settings.stats.retention_days - 1),
                           open_from=today - timedelta(days=1))
        except Exception:
            with self._lock:
                for key, tally in tallies.items():
                    self._tallies.setdefault(key, _Tally()).merge(tally)
            raise

    def close(self) -> None:
        """Stop the background flushes and write what is left."""
        self._stopped.set()
        try:
            self.flush()
        except Exception:
            log.exception("could not write the last poll counts")

    def _flush_every(self) -> None:
        while not self._stopped.wait(self.settings.stats.flush_seconds):
            try:
                self.flush()
            except Exception:
                log.exception("could not write poll counts; keeping them for the next try")

    def _hash(self, day: date, address: str, user_agent: str) -> str:
        key = self._salts.get(day) or self._salt(day)
        return hashlib.blake2b(f"{address}\n{user_agent}".encode(), key=key, digest_size=8).hexdigest()

    def _salt(self, day: date) -> bytes:
        """The day's salt, shared by every process and instance through the database; a
        process's own while the database cannot be reached (that poller may count twice)."""
        try:
            salt = self.polls.salt(day)
        except StoreUnavailable as exc:
            log.warning("the database is unavailable for the stats salt of %s; using this process's: %s", day, exc)
            salt = secrets.token_bytes(32)
        with self._lock:
            salt = self._salts.setdefault(day, salt)
            for old in [known for known in self._salts if known < day - timedelta(days=1)]:
                del self._salts[old]  # gone with its day: that day's hashes can no longer be made again
        return salt
