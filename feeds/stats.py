"""Who polls the feeds: subscribers, requests, 304s and client applications, per feed and day.

A feed is its path without the format: ``/feeds/all.rss`` and ``/feeds/all.json`` are
the same feed, read by the same people in different readers. Days are the site's
(``site.timezone``). Only polls of feeds that exist are counted.

A feed's estimated subscribers on a day are the subscribers the aggregators reported
(``Feedly/1.0 (…; 123 subscribers)``: each service's largest report of the day, once,
however often it polled) plus the distinct other pollers (address and User-Agent).

Counting is cheap on the polling path: a lock, a dict and a set in this process's
memory (``PollCounter.record``). A background thread writes the counts to the
database every ``stats.flush_seconds`` and at exit, one transaction per flush, merged
into what other processes and instances wrote (requests summed, pollers united,
reports the largest). Pollers are kept as keyed hashes of address and User-Agent
under a random salt for the day, kept in the database while the day is open so
that every process and instance hashes a poller alike; once the day is closed the
salt is deleted with the hashes, which are collapsed into a count, so they cannot
be reversed nor linked to another day's.

WebSub subscribers of the service's own hub are a service of their own ("WebSub"),
counted as they stand now.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import re
import secrets
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from html import escape
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from markupsafe import Markup

from feeds.api import ApiError, check_token, token_matches
from feeds.catalog import Catalog
from feeds.config import Settings
from feeds.errors import StoreUnavailable
from feeds.model import FeedDay, HubFeed, PollCounts
from feeds.store import Store
from feeds.store.subscriptions import Subscriptions
from feeds.web import refuse_framing

log = logging.getLogger("feeds.stats")

TREND_DAYS = 30
DIRECT = "direct pollers"  # the service that pollers with no aggregator's report count under
TOP_CLIENTS = 3
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


# -- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedStats:
    """What /admin/stats shows of one feed: subscribers today, the trend, and the last 30 days' polls."""

    feed: str  # path, e.g. category/redian/guonei
    title: str
    subscribers: int  # today's: the services' below, added up
    trend: tuple[int, ...]  # estimated subscribers per day, oldest first, today last
    requests: int
    not_modified: int
    clients: tuple[tuple[str, int], ...]  # the busiest client applications, most requests first
    services: tuple[tuple[str, int], ...] = ()  # today's subscribers by service: aggregators, WebSub, direct pollers
    websub: HubFeed | None = None  # the hub's subscribers now
    delivered: int = 0  # WebSub deliveries over the days of the trend
    failed: int = 0  # and attempts that failed

    @property
    def not_modified_share(self) -> float:
        return self.not_modified / self.requests if self.requests else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "title": self.title,
            "subscribers": self.subscribers,
            "trend": list(self.trend),
            "requests": self.requests,
            "not_modified": self.not_modified,
            "not_modified_share": round(self.not_modified_share, 4),
            "clients": [{"client": name, "requests": count} for name, count in self.clients],
            "services": [{"service": name, "subscribers": count} for name, count in self.services],
            "websub": {"active": self.websub.active if self.websub else 0, "pending": self.websub.pending if self.websub else 0,
                       "failing": self.websub.failing if self.websub else 0, "delivered": self.delivered, "failed": self.failed},
        }


def report(counter: PollCounter, catalog: Catalog, subscriptions: Subscriptions, today: date | None = None) -> list[FeedStats]:
    """Every feed polled or subscribed to through the hub in the last ``TREND_DAYS`` days (today
    included), most subscribers first. This process's counts are written first, so they show at once."""
    counter.flush()
    today = today or datetime.now(counter.settings.tz).date()
    first = today - timedelta(days=TREND_DAYS - 1)
    by_feed: dict[str, dict[date, FeedDay]] = {}
    for row in counter.polls.feed_days(first, today):
        by_feed.setdefault(row.feed, {})[row.day] = row
    clients = counter.polls.client_requests(first, today)
    reports = counter.polls.reports(today)
    hub = subscriptions.feeds(datetime.now(counter.settings.tz))
    deliveries: dict[str, list[int]] = {}
    for day in subscriptions.days(first, today):
        tally = deliveries.setdefault(day.feed, [0, 0])
        tally[0], tally[1] = tally[0] + day.delivered, tally[1] + day.failed
    found = []
    for feed in sorted(set(by_feed) | set(hub) | set(deliveries)):
        days = by_feed.get(feed, {})
        websub = hub.get(feed, HubFeed(feed))
        pushed = websub.active + websub.failing  # subscribed through the hub, counted as they stand now
        trend = tuple(_subscribers(days.get(first + timedelta(days=n))) for n in range(TREND_DAYS))
        trend = trend[:-1] + (trend[-1] + pushed,)
        polled_today = days.get(today)
        services = sorted(reports.get(feed, {}).items(), key=lambda item: (-item[1], item[0]))
        services += [(name, count) for name, count in (("WebSub", pushed), (DIRECT, polled_today.pollers if polled_today else 0)) if count]
        spec = catalog.resolve(feed)
        busiest = sorted(clients.get(feed, {}).items(), key=lambda item: (-item[1], item[0]))[:TOP_CLIENTS]
        delivered, failed = deliveries.get(feed, (0, 0))
        found.append(FeedStats(
            feed, spec.title if spec else feed, trend[-1], trend,
            sum(row.requests for row in days.values()), sum(row.not_modified for row in days.values()), tuple(busiest),
            tuple(services), websub, delivered, failed,
        ))
    return sorted(found, key=lambda stats: (-stats.subscribers, -stats.requests, stats.feed))


def _subscribers(row: FeedDay | None) -> int:
    return row.reported + row.pollers if row else 0


def sparkline(values: tuple[int, ...], width: int = 120, height: int = 24) -> Markup:
    """A small inline SVG line of ``values`` (oldest first), scaled to its largest."""
    top = max(values, default=0) or 1
    step = width / max(len(values) - 1, 1)
    points = " ".join(f"{n * step:.1f},{height - 2 - value / top * (height - 4):.1f}" for n, value in enumerate(values))
    label = f"{len(values)} 天估计订阅数：最低 {min(values, default=0)}，最高 {max(values, default=0)}，今天 {values[-1] if values else 0}"
    return Markup(
        f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}"><polyline fill="none" stroke="currentColor" stroke-width="1.5" '
        f'stroke-linejoin="round" points="{points}"/></svg>'
    )


def text_table(rows: list[FeedStats]) -> str:
    """The report as aligned columns for a terminal; Chinese characters take two columns."""
    table = [("订阅源", "路径", "今日订阅", "按服务", "WebSub 活跃/待确认/失败", "推送/失败", "30天请求", "304", "常用客户端")]
    for stats in rows:
        hub = stats.websub or HubFeed(stats.feed)
        table.append((stats.title, stats.feed, str(stats.subscribers), ", ".join(f"{name} {count}" for name, count in stats.services),
                      f"{hub.active}/{hub.pending}/{hub.failing}", f"{stats.delivered}/{stats.failed}", str(stats.requests),
                      f"{stats.not_modified_share:.0%}", ", ".join(f"{name} {count}" for name, count in stats.clients)))
    widths = [max(display_width(row[column]) for row in table) for column in range(len(table[0]))]
    numeric = {2, 4, 5, 6, 7}
    lines = []
    for row in table:
        cells = []
        for column, cell in enumerate(row):
            padding = " " * (widths[column] - display_width(cell))
            cells.append(padding + cell if column in numeric else cell + padding)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


# -- /admin/stats ---------------------------------------------------------------------------

bp = Blueprint("stats", __name__, url_prefix="/admin")


@bp.before_request
def _authorize() -> None:
    """The API token, as ``Authorization: Bearer <token>`` (api.check_token), or for a browser
    as the password of HTTP Basic with any user name."""
    settings: Settings = current_app.extensions["feeds"].settings
    basic = request.authorization if request.authorization and request.authorization.type == "basic" else None
    if basic is None or not settings.api.token:
        check_token(settings)
    elif not token_matches(basic.password or "", settings.api.token):
        raise ApiError(403, "The API token is wrong.")


@bp.errorhandler(ApiError)
def _refused(exc: ApiError) -> Response:
    response = jsonify(error=exc.message) if request.path.endswith(".json") else Response(exc.message + "\n", mimetype="text/plain")
    response.status_code = exc.status
    if exc.status == 401:  # a browser asks for a password only when offered Basic
        response.headers.add("WWW-Authenticate", 'Basic realm="feeds", charset="UTF-8"')
        response.headers.add("WWW-Authenticate", 'Bearer realm="feeds"')
    return response


@bp.after_request
def _private(response: Response) -> Response:
    response.cache_control.no_store = True
    return refuse_framing(response)


@bp.get("/stats")
def stats_page() -> Response:
    services = current_app.extensions["feeds"]
    rows = report(services.stats, services.catalog, services.store.subscriptions)
    body = render_template("stats.html", rows=rows, site=services.settings.site, days=TREND_DAYS, sparkline=sparkline)
    return Response(body, mimetype="text/html")


@bp.get("/stats.json")
def stats_json() -> Response:
    services = current_app.extensions["feeds"]
    today = datetime.now(services.settings.tz).date()
    rows = report(services.stats, services.catalog, services.store.subscriptions, today)
    return jsonify(
        today=today.isoformat(),
        timezone=services.settings.site.timezone,
        days=TREND_DAYS,
        feeds=[stats.as_json() for stats in rows],
    )
