"""Telling search engines of article URLs as they are published, edited and taken out: IndexNow and Baidu.

The URLs come from the push queue (``store.outbox``), which the article writes fill in their own
transactions: a scheduled article's URL is queued at its time, never before. Every serving process
runs one thread of ``Pusher`` (with the schedule and the hub's, see ``feeds.app``): woken by a write
in its process, else every second, it waits ``GATHER`` seconds so that URLs written together go in
one request, takes each engine's due URLs in batches and sends them. The retry policy is the hub's
(``outbound.backoff``): 429, 5xx and no answer are tried again after 2, 4, 8… seconds (an hour at
most, or the engine's Retry-After when longer) until ``push.retry_seconds`` have passed since the
first failure; any other 4xx is given up at once; both are logged.

The endpoints are the operator's config and trusted: they may be on private addresses.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from feeds.config import Settings
from feeds.background import PerProcess, one_round
from feeds.metrics import PUSHES
from feeds.store import Store
from feeds.store.outbox import Pushed, Queued
from feeds.websub.outbound import Answer, backoff, networks, request, retry_after

log = logging.getLogger("feeds.reach")

GATHER = 0.5  # seconds a woken sender waits for more URLs to send in the same request
USER_AGENT = "feeds-publisher/1"
_ANYWHERE = networks(["0.0.0.0/0", "::/0"])  # the endpoints are configured, not given by strangers


class Engine(Protocol):
    name: str
    batch: int  # URLs a request may carry

    def send(self, items: Sequence[Queued], now: datetime) -> tuple[list[Pushed], int | None]:
        """Push ``items``; what became of each, and the engine's remaining quota when it says."""


class Policy:
    """What a failed push becomes: tried again later, or given up once it has failed for ``push.retry_seconds``."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def failed(self, item: Queued, now: datetime, error: str, wait: float | None = None, final: bool = False) -> Pushed:
        first = item.failing_since or now
        if final or now - first >= timedelta(seconds=self.settings.push.retry_seconds):
            log.warning("push: gave up telling %s of %s (%s) after %d attempts: %s", item.engine, item.url, item.action,
                        item.attempts + 1, error)
            return Pushed(item, "given_up", error=error)
        return Pushed(item, "failed", now + timedelta(seconds=backoff(item.attempts, wait)), error=error)

    def answered(self, items: Sequence[Queued], answer: Answer | Exception, now: datetime, what: str) -> list[Pushed] | None:
        """The fate of ``items`` when a request for them failed; None when it succeeded (2xx)."""
        if isinstance(answer, Exception):
            return [self.failed(item, now, f"{what}: {answer}") for item in items]
        if 200 <= answer.status < 300:
            return None
        error = f"{what}: HTTP {answer.status} {answer.body[:300].decode('utf-8', 'replace')}".strip()
        final = 400 <= answer.status < 500 and answer.status != 429
        return [self.failed(item, now, error, retry_after(answer), final) for item in items]


class IndexNow:
    """IndexNow (indexnow.org): one JSON POST per host of up to 10,000 URLs, whatever became of them."""

    name = "indexnow"
    batch = 10_000

    def __init__(self, settings: Settings, policy: Policy):
        self.settings = settings
        self.policy = policy

    def send(self, items: Sequence[Queued], now: datetime) -> tuple[list[Pushed], int | None]:
        by_host: dict[tuple[str, str], list[Queued]] = defaultdict(list)
        for item in items:
            parts = urlsplit(item.url)
            by_host[(parts.scheme, parts.netloc)].append(item)
        results: list[Pushed] = []
        key = self.settings.indexnow.key
        for (scheme, host), mine in by_host.items():
            body = {"host": host, "key": key, "keyLocation": f"{scheme}://{host}/{key}.txt", "urlList": [item.url for item in mine]}
            answer = _post(self.settings, self.settings.indexnow.endpoint, json.dumps(body, ensure_ascii=False).encode(),
                           "application/json; charset=utf-8")
            results += self.policy.answered(mine, answer, now, f"IndexNow {host}") or [Pushed(item, "sent") for item in mine]
        return results, None


class Baidu:
    """Baidu's link submission: text/plain POSTs of up to 2,000 URLs to /urls (new), /update and /del."""

    name = "baidu"
    batch = 2_000
    PATHS = {"new": "urls", "update": "update", "delete": "del"}

    def __init__(self, settings: Settings, policy: Policy, store: Store):
        self.settings = settings
        self.policy = policy
        self.store = store

    def send(self, items: Sequence[Queued], now: datetime) -> tuple[list[Pushed], int | None]:
        results: list[Pushed] = []
        remain = None
        tomorrow = _next_midnight(now, self.settings)
        spent = self._quota_spent(now)
        for action, path in self.PATHS.items():
            mine = [item for item in items if item.action == action]
            if not mine:
                continue
            if action == "new" and spent:  # Baidu said the day's quota of new URLs is used up
                results += [Pushed(item, "deferred", tomorrow) for item in mine]
                continue
            query = urlencode({"site": self.settings.baidu.site, "token": self.settings.baidu.token})
            answer = _post(self.settings, f"{self.settings.baidu.endpoint.rstrip('/')}/{path}?{query}",
                           "\n".join(item.url for item in mine).encode(), "text/plain")
            said = _json(answer)
            if action == "new" and isinstance(answer, Answer) and "over quota" in str(said.get("message", "")):
                spent = True
                results += [Pushed(item, "deferred", tomorrow) for item in mine]
                continue
            failed = self.policy.answered(mine, answer, now, f"Baidu /{path}")
            if failed is not None:
                results += failed
                continue
            refused = {url: reason for reason in ("not_same_site", "not_valid") for url in said.get(reason) or ()}
            if refused:
                log.warning("push: Baidu /%s refused %d URLs: %s", path, len(refused),
                            "; ".join(f"{url} ({reason})" for url, reason in list(refused.items())[:20]))
            results += [Pushed(item, "given_up", error=f"Baidu: {refused[item.url]}") if item.url in refused else Pushed(item, "sent")
                        for item in mine]
            if isinstance(said.get("remain"), int):
                remain = said["remain"]
                spent = spent or remain <= 0
        return results, remain

    def _quota_spent(self, now: datetime) -> bool:
        """Whether Baidu said, today (Beijing time), that no new URL is left of its daily quota."""
        remain, last_sent = self.store.outbox.quota(self.name)
        if remain is None or remain > 0 or last_sent is None:
            return False
        tz = self.settings.tz
        return last_sent.astimezone(tz).date() == now.astimezone(tz).date()


class Pusher:
    """Sends the push queue to each configured engine, one thread per process."""

    def __init__(self, store: Store, settings: Settings, wake: threading.Event):
        self.store = store
        self.settings = settings
        policy = Policy(settings)
        self.engines: list[Engine] = [IndexNow(settings, policy)] * bool(settings.indexnow.key)
        self.engines += [Baidu(settings, policy, store)] * bool(settings.baidu.token)
        self.hold = timedelta(seconds=4 * settings.push.timeout + 5)
        self._wake = wake
        self._thread = PerProcess("feeds-push", self._run)

    def start(self) -> None:
        """Run in this process from now on (``background.PerProcess``), when an engine is configured."""
        if self.engines:
            self._thread.start()

    def work_once(self, now: datetime | None = None) -> bool:
        """Send one batch to each engine that has URLs due; whether any had."""
        busy = False
        for engine in self.engines:
            now = now or datetime.now(timezone.utc)
            items = self.store.outbox.claim(engine.name, now, engine.batch, self.hold)
            if not items:
                continue
            busy = True
            pushed, remain = engine.send(items, now)
            self.store.outbox.record(engine.name, pushed, datetime.now(timezone.utc), remain)
            for done in pushed:
                PUSHES.labels(engine.name, done.result).inc()
        return busy

    def _run(self) -> None:
        while not self.store.closed:
            if self._wake.wait(timeout=1.0):
                time.sleep(GATHER)
            self._wake.clear()
            one_round(log, "push", self._work_all)

    def _work_all(self) -> None:
        while self.work_once():
            pass


def _post(settings: Settings, url: str, body: bytes, content_type: str) -> Answer | Exception:
    try:
        return request("POST", url, _ANYWHERE, settings.push.timeout, body=body, read=64 * 1024,
                       headers={"Content-Type": content_type, "User-Agent": USER_AGENT})
    except OSError as exc:
        return exc


def _json(answer: Answer | Exception) -> dict:
    if isinstance(answer, Exception):
        return {}
    try:
        said = json.loads(answer.body)
    except ValueError:
        return {}
    return said if isinstance(said, dict) else {}


def _next_midnight(now: datetime, settings: Settings) -> datetime:
    """The start of the next day in the site's timezone (Beijing time by default), when Baidu's quota renews."""
    local = now.astimezone(settings.tz)
    return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), settings.tz).astimezone(timezone.utc)
