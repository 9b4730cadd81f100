"""Prometheus metrics: what the service counts, and ``GET /metrics`` to read them.

Counters and histograms are module-level, as prometheus_client expects: every app
in a process adds to the same ones. Gunicorn runs several worker processes, each
with its own memory. Without ``PROMETHEUS_MULTIPROC_DIR`` each worker answers a
scrape with its own counts only; with it (a directory, emptied by ``feeds serve``
at start), every process — workers and ``feeds import`` runs alike — writes its
values to files there and a scrape sums them all (prometheus_client's
multiprocess mode). The variable must be set before the process starts: it is
read when prometheus_client is imported.

``/metrics`` is answered only to clients in ``metrics.allow``, judged by the TCP
peer's address alone: a header such as X-Forwarded-For can be written by anyone.
A request that does carry one came through a proxy, whose own (often loopback)
address the peer then is, so it is refused rather than let through as local.
"""
from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Response, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from feeds.errors import StoreUnavailable
from feeds.store import Store

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")

REQUESTS = Counter("feeds_http_requests_total", "HTTP requests answered, by URL rule and status.", ["route", "status"])
REQUEST_SECONDS = Histogram("feeds_http_request_duration_seconds", "Time to answer a request, by URL rule.", ["route"])
RENDER_SECONDS = Histogram("feeds_feed_render_seconds", "Time to render a feed's bytes from its items, by format.", ["format"])
QUERY_SECONDS = Histogram("feeds_store_query_seconds", "Time of each SQL statement the store runs.")
RENDERED_CACHE = Counter("feeds_rendered_cache_total", "Rendered-feed lookups: hit (no rendering) or miss.", ["result"])
IMPORTED = Counter("feeds_articles_imported_total", "Articles imported, by way in (api, cli) and result.", ["via", "result"])

# A request that matched no URL rule (a 404 or 405) is counted under this route, not its path,
# so that scanners cannot make a series per path they try.
UNMATCHED = "unmatched"


def observe_request(route: str | None, status: int, seconds: float) -> None:
    REQUESTS.labels(route or UNMATCHED, str(status)).inc()
    REQUEST_SECONDS.labels(route or UNMATCHED).observe(seconds)


def count_imports(via: str, **counts: int) -> None:
    """Count articles by result: ``created``, ``updated``, ``unchanged`` or ``rejected``."""
    for result, count in counts.items():
        if count:
            IMPORTED.labels(via, result).inc(count)


def time_queries(store: Store) -> None:
    """Observe every statement the store's engine runs (two engine events: cheap, no SQL here)."""

    def started(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        context.feeds_started = time.perf_counter()

    def finished(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        QUERY_SECONDS.observe(time.perf_counter() - context.feeds_started)

    sa.event.listen(store.engine, "before_cursor_execute", started)
    sa.event.listen(store.engine, "after_cursor_execute", finished)


def reset_multiprocess_dir() -> None:
    """Remove the files a previous run left in ``PROMETHEUS_MULTIPROC_DIR`` (before workers start)."""
    if MULTIPROCESS_DIR:
        for stale in Path(MULTIPROCESS_DIR).glob("*.db"):
            stale.unlink(missing_ok=True)


class _Scrape(Collector):
    """What one scrape shows: this process's metrics, or every process's in multiprocess
    mode, and the number of stored articles, counted now (left out while the database is
    down, so that the rest still reaches Prometheus)."""

    def __init__(self, store: Store):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield from (MultiProcessCollector(None) if MULTIPROCESS_DIR else REGISTRY).collect()
        try:
            count = self.store.count_articles()
        except StoreUnavailable:
            return
        yield GaugeMetricFamily("feeds_articles_stored", "Articles in the store.", value=count)


def endpoint(store: Store, allow: list[str]) -> Callable[[], Response]:
    """The ``/metrics`` view: the Prometheus text format, to allowed client addresses only."""
    networks = [ipaddress.ip_network(address, strict=False) for address in allow]

    def metrics() -> Response:
        if not _allowed(request.remote_addr, networks) or any(name in request.headers for name in PROXY_HEADERS):
            return Response("Metrics are not served to this address (metrics.allow).\n", status=403, mimetype="text/plain")
        return Response(generate_latest(_Scrape(store)), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    return metrics


def _allowed(address: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        client = ipaddress.ip_address((address or "").split("%", 1)[0])  # an IPv6 zone ("fe80::1%eth0") is not part of it
    except ValueError:
        return False  # e.g. a Unix socket's peer, which has no address to check
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped:
        client = client.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket is 127.0.0.1
    return any(client in network for network in networks)
