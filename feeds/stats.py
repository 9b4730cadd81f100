"""Who polls the feeds, as the newsroom reads it: subscribers, requests, 304s and client
applications per feed over the last 30 days, at ``/admin/stats`` (HTML), ``/admin/stats.json``
and ``feeds stats``. The counts come from ``polls.py``.

A feed's estimated subscribers on a day are the subscribers the aggregators reported
(``Feedly/1.0 (…; 123 subscribers)``: each service's largest report of the day, once,
however often it polled) plus the distinct other pollers (address and User-Agent).
WebSub subscribers of the service's own hub are a service of their own ("WebSub"),
counted as they stand now.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from html import escape
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request
from markupsafe import Markup

from feeds.api import ApiError, check_token, token_matches
from feeds.catalog import Catalog
from feeds.config import Settings
from feeds.model import FeedDay, HubFeed
from feeds.partners import readiness
from feeds.polls import PollCounter
from feeds.responses import refuse_framing
from feeds.services import services as current_services
from feeds.store.subscriptions import Subscriptions
from feeds.text import aligned

TREND_DAYS = 30
DIRECT = "direct pollers"  # the service that pollers with no aggregator's report count under
TOP_CLIENTS = 3


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
        partner, _, public = feed.removeprefix("partner/").partition("/") if feed.startswith("partner/") else ("", "", feed)
        spec = catalog.resolve(public)
        busiest = sorted(clients.get(feed, {}).items(), key=lambda item: (-item[1], item[0]))[:TOP_CLIENTS]
        delivered, failed = deliveries.get(feed, (0, 0))
        found.append(FeedStats(
            feed, (f"合作方 {partner} · " if partner else "") + (spec.title if spec else public), trend[-1], trend,
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
    return aligned(table, numeric=frozenset({2, 4, 5, 6, 7}))


# -- /admin/stats ---------------------------------------------------------------------------

bp = Blueprint("stats", __name__, url_prefix="/admin")


@bp.before_request
def _authorize() -> None:
    """The API token, as ``Authorization: Bearer <token>`` (api.check_token), or for a browser
    as the password of HTTP Basic with any user name."""
    settings: Settings = current_services().settings
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
    services = current_services()
    rows = report(services.stats, services.catalog, services.store.subscriptions)
    body = render_template("stats.html", rows=rows, site=services.settings.site, days=TREND_DAYS, sparkline=sparkline,
                           channels=services.store.outbox.states(), tz=services.settings.tz)
    return Response(body, mimetype="text/html")


@bp.get("/partners")
def partners_check() -> Response:
    """What ``feeds partners check`` prints: each partner's broken rules, as JSON."""
    found = readiness()
    return jsonify(ready=not any(found.values()),
                   partners={name: [asdict(problem) for problem in problems] for name, problems in found.items()})


@bp.get("/stats.json")
def stats_json() -> Response:
    services = current_services()
    today = datetime.now(services.settings.tz).date()
    rows = report(services.stats, services.catalog, services.store.subscriptions, today)
    return jsonify(
        today=today.isoformat(),
        timezone=services.settings.site.timezone,
        days=TREND_DAYS,
        feeds=[stats.as_json() for stats in rows],
        pushes=[{**asdict(state), **{name: getattr(state, name).isoformat() for name in ("last_sent", "last_error_at")
                                                 if getattr(state, name)}}
                for state in services.store.outbox.states()],
    )
