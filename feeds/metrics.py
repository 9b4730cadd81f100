"""What the service counts and logs: Prometheus metrics, ``GET /metrics`` to read them,
and the access log, one ``key=value`` line per request (``feeds.access``).

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

Unless logging is configured already, the package's lines go to stderr in batches,
written at least every second (``BufferedLines``), as nginx's ``access_log … buffer=
flush=`` does: a poll then costs no system call of its own.
"""
from __future__ import annotations

import atexit
import ipaddress
import json
import logging
import os
import re
import select
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
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
CACHE_HITS, CACHE_MISSES = RENDERED_CACHE.labels("hit"), RENDERED_CACHE.labels("miss")
IMPORTED = Counter("feeds_articles_imported_total", "Articles imported, by way in (api, cli) and result.", ["via", "result"])
PARTNER_POLLS = Counter("feeds_partner_polls_total", "Polls of partner feeds, by partner and status.", ["partner", "status"])
PUSHES = Counter("feeds_pushes_total", "Pushes sent from the outbox, by channel and result (sent, failed: tried again "
                 "later, deferred: quota spent, given_up, dropped: nothing left to send).", ["channel", "result"])

access_log = logging.getLogger("feeds.access")

# A request that matched no URL rule (a 404 or 405) is counted under this route, not its path,
# so that scanners cannot make a series per path they try.
UNMATCHED = "unmatched"


def observe_request(route: str | None, status: int, seconds: float, cache_hit: bool = False) -> None:
    """Count one answered request and its duration, by URL rule (None: it matched none) and status; and
    with ``cache_hit``, a rendered-feed lookup that it answered without one (a kept answer)."""
    pending.request(route or UNMATCHED, status, seconds, cache_hit)


def count_hit() -> None:
    """Count a rendered-feed lookup that needed no rendering."""
    pending.hit()


@cache  # a few dozen (rule, status) pairs; labels() takes a lock and builds a key each time
def _request_series(route: str, status: int) -> tuple[Any, Any]:
    return REQUESTS.labels(route, str(status)), REQUEST_SECONDS.labels(route)


class Pending:
    """Request counts and durations, and rendered-cache hits, kept in this process's memory and added to
    their Prometheus series at least once a second, before this process answers a scrape, and at exit.

    A poll then costs a few increments under one lock, where prometheus_client's own would take three
    locks, and in multiprocess mode write three memory-mapped values. A scrape of another worker may
    show up to a second less than has been answered; a process killed with SIGKILL loses that second.
    """

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._bounds = REQUEST_SECONDS._upper_bounds  # the histogram's buckets, the last +Inf
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], list[float]] = {}  # (route, status) -> [count, seconds, per bucket...]
        self._hits = 0
        self._started = False  # this process's flush thread (server workers are forked)
        os.register_at_fork(after_in_child=self._forget)

    def request(self, route: str, status: int, seconds: float, cache_hit: bool = False) -> None:
        bucket = 2 + bisect_left(self._bounds, seconds)  # observe()'s rule: the first bucket whose bound is >= seconds
        with self._lock:
            self._hits += cache_hit
            tally = self._requests.get((route, status))
            if tally is None:
                tally = self._requests[route, status] = [0] * (2 + len(self._bounds))
            tally[0] += 1
            tally[1] += seconds
            tally[bucket] += 1
        if not self._started:
            self._start()

    def hit(self) -> None:
        with self._lock:
            self._hits += 1
        if not self._started:  # a hub delivery may render before any request is answered
            self._start()

    def flush(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, {}
            hits, self._hits = self._hits, 0
        for (route, status), tally in requests.items():
            counter, histogram = _request_series(route, status)
            counter.inc(tally[0])
            # prometheus_client observes one value at a time; these are the values observe() adds to
            # (tests/test_ops.py compares the two).
            histogram._sum.inc(tally[1])
            for bucket, count in enumerate(tally[2:]):
                if count:
                    histogram._buckets[bucket].inc(count)
        if hits:
            CACHE_HITS.inc(hits)

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=every, args=(self.interval, self.flush), name="feeds-metrics-flush", daemon=True).start()
        atexit.register(self.flush)

    def _forget(self) -> None:
        """In a forked child: the parent adds what it counted; this process starts from nothing."""
        self._lock = threading.Lock()
        self._requests, self._hits, self._started = {}, 0, False


pending = Pending()


def every(interval: float, work: Callable[[], None]) -> None:
    """Do ``work`` every ``interval`` seconds, for as long as the process lives: a flush thread's loop."""
    while True:
        time.sleep(interval)
        work()


def count_imports(via: str, **counts: int) -> None:
    """Count articles by result: ``created``, ``updated``, ``unchanged`` or ``rejected``."""
    for result, count in counts.items():
        if count:
            IMPORTED.labels(via, result).inc(count)


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
            count = self.store.articles.count()
        except StoreUnavailable:
            return
        yield GaugeMetricFamily("feeds_articles_stored", "Articles in the store.", value=count)
        queued = GaugeMetricFamily("feeds_pushes_queued", "Pushes waiting in the outbox, by channel.", labels=["channel"])
        for state in self.store.outbox.states():
            queued.add_metric([state.channel], state.queued)
        yield queued


def endpoint(store: Store, allow: list[str]) -> Callable[[], Response]:
    """The ``/metrics`` view: the Prometheus text format, to allowed client addresses only."""
    networks = [ipaddress.ip_network(address, strict=False) for address in allow]

    def metrics() -> Response:
        if not _allowed(request.remote_addr, networks) or any(name in request.headers for name in PROXY_HEADERS):
            return Response("Metrics are not served to this address (metrics.allow).\n", status=403, mimetype="text/plain")
        pending.flush()
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


# -- the access log -------------------------------------------------------------------------


def register_request_log(app: Flask) -> None:
    """Time every request; count it by URL rule and status, and log one key=value line."""

    @app.before_request
    def start_clock() -> None:
        request.environ["feeds.started"] = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        # Flask's request proxy costs a lookup per attribute; this runs on every poll.
        served = request._get_current_object()  # type: ignore[attr-defined]
        environ = served.environ
        seconds = time.perf_counter() - environ.get("feeds.started", time.perf_counter())
        rule = served.url_rule
        status = response.status_code
        observe_request(rule.rule if rule is not None else None, status, seconds)
        method = environ.get("REQUEST_METHOD", "GET")
        log_access(method, served.path, status, seconds, 0 if method == "HEAD" else response.calculate_content_length(),
                   environ.get("REMOTE_ADDR"))
        return response


def log_access(method: str, path: str, status: int, seconds: float, sent: int | None, client: str | None) -> None:
    """The access line of one answered request (``sent``: body bytes, None when not known)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    shown_sent, shown_client = "-" if sent is None else sent, client or "-"
    if _access_lines is not None:  # the package's own handler: the line is made when its batch is written
        _access_lines.access(time.time(), (method, path, status, shown_sent, shown_client), seconds)
        return
    # makeRecord and handle, not info(): an access line needs no caller's file and line,
    # whose lookup walks the stack on every request.
    line = access_line(method, path, status, seconds, shown_sent, shown_client)
    access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, "", 0, line, (), None))


def access_line(method: str, path: str, status: int, seconds: float, sent: int | str, client: str) -> str:
    return logfmt(method=method, path=path, status=status, duration_ms=f"{seconds * 1000:.1f}", bytes=sent, client=client)


_BARE_VALUE = re.compile(r"[!#-<>-\[\]-~]+")  # printable ASCII but space, '"', '=' and '\\'


def logfmt(**fields: object) -> str:
    """``key=value`` pairs, one line whatever the values hold: any value but plain ASCII
    is quoted and escaped (a path can hold newlines, quotes, anything)."""
    texts = [str(value) for value in fields.values()]
    all_bare = all(texts) and _BARE_VALUE.fullmatch("".join(texts))  # the usual line: one check for every value
    return " ".join(
        f"{key}={text}" if all_bare or _BARE_VALUE.fullmatch(text) else f"{key}={json.dumps(text)}"
        for key, text in zip(fields, texts)
    )


def configure_logging() -> None:
    """Send the package's INFO lines (one per request, feeds.access) to stderr, unless
    logging is configured already: by a host application, gunicorn's --log-config, pytest."""
    package = logging.getLogger("feeds")
    if package.handlers or logging.getLogger().handlers:
        return
    global _access_lines
    handler = BufferedLines()
    handler.setFormatter(LineFormatter(LINE_FORMAT))
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    _access_lines = handler


LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_access_lines: BufferedLines | None = None  # the handler configure_logging installed, which takes access lines as they are


class LineFormatter(logging.Formatter):
    """logging's Formatter, with the date and time made once a second, not once a line."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        """``%(asctime)s`` of a line made at ``created``."""
        second, stamp = self._second
        if second != int(created):
            second = int(created)
            stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, stamp)
        return self.default_msec_format % (stamp, int((created - second) * 1000))


class BufferedLines(logging.Handler):
    """Log lines to a file descriptor in batches: every ``interval`` seconds, at once for a
    warning or worse, and when logging shuts down at exit (a SIGKILL loses the last second).

    Each write holds whole lines, at most ``select.PIPE_BUF`` bytes unless one line is longer,
    so that worker processes sharing one pipe (journald, a container runtime) never
    interleave inside a line.
    """

    def __init__(self, fd: int = 2, interval: float = 1.0):
        super().__init__()
        self.fd = fd
        self.interval = interval
        self._lines: list[bytes | list[Any]] = []  # lines, and access lines yet to make: [created, answer, longest, count]
        self._answers: dict[tuple[Any, ...], list[Any]] = {}  # this batch's access lines, by answer
        self._batch = threading.Lock()  # what access lines are added under: not logging's RLock, which costs more
        self._started = False  # this process's flush thread (server workers are forked)
        self._stamps = LineFormatter()
        os.register_at_fork(after_in_child=self._forget)

    def access(self, created: float, answer: tuple[Any, ...], seconds: float) -> None:
        """The access line of an ``answer`` (method, path, status, bytes and client) that took ``seconds``, made in
        ``LINE_FORMAT`` when its batch is written: a poll costs a dict lookup, not a log record and its formatting.
        The same answer given again in the batch (a poller storm) is one line, where it was first given, with its
        ``count`` and longest ``duration_ms``: counted as it comes, so that a flush has only distinct lines to make
        (it holds Python's lock meanwhile, and polls wait for it)."""
        with self._batch:
            seen = self._answers.get(answer)
            if seen is None:
                self._answers[answer] = seen = [created, answer, seconds, 0]
                self._lines.append(seen)
            elif seconds > seen[2]:
                seen[2] = seconds
            seen[3] += 1
        if not self._started:
            self._start()

    def emit(self, record: logging.LogRecord) -> None:  # called holding self.lock
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        with self._batch:
            self._lines.append(line)
        if record.levelno >= logging.WARNING:
            self.flush()
        elif not self._started:
            self._start()

    def _start(self) -> None:
        """The flush thread, on the first line in this process (server workers are forked)."""
        with self.lock:  # type: ignore[union-attr]
            if not self._started:
                self._started = True
                threading.Thread(target=every, args=(self.interval, self.flush), name="feeds-log-flush", daemon=True).start()

    def flush(self) -> None:
        # Under the lock, so batches go out in order; polls wait for it once a batch, not once a line.
        with self.lock:  # type: ignore[union-attr]
            with self._batch:
                lines, self._lines, self._answers = self._lines, [], {}
            batch = b""
            for line in map(self._made, lines):
                if batch and len(batch) + len(line) > select.PIPE_BUF:
                    self._write(batch)
                    batch = b""
                batch += line
            if batch:
                self._write(batch)

    def _made(self, line: bytes | list[Any]) -> bytes:
        """A line of the batch as written: an access line made from its answer, count and longest duration."""
        if isinstance(line, bytes):
            return line
        created, (method, path, status, sent, client), seconds, count = line
        text = access_line(method, path, status, seconds, sent, client) + (f" count={count}" if count > 1 else "")
        return f"{self._stamps.stamp(created)} INFO {access_log.name} {text}\n".encode("utf-8", "backslashreplace")

    def _write(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass  # stderr closed: nowhere left to log to

    def _forget(self) -> None:
        """In a forked child: the parent writes the lines it had; this process starts empty."""
        self._lines, self._answers, self._batch, self._started = [], {}, threading.Lock(), False
