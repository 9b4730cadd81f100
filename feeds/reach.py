"""Telling search engines of article URLs as they are published, edited and taken out: IndexNow and Baidu,
two channels of the outbox (``feeds.outbox``).

The URLs are queued by the article writes in their own transactions: a scheduled article's URL is
queued at its time, never before. A woken channel waits ``GATHER`` seconds so that URLs written
together go in one request. The endpoints are the operator's config and trusted: they may be on
private addresses.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode, urlsplit

from feeds.config import Settings
from feeds.outbox import Channel
from feeds.store import Store
from feeds.store.outbox import Pushed, Queued
from feeds.outbound import Answer, Policy, post

log = logging.getLogger("feeds.reach")

GATHER = 0.5  # seconds a woken channel waits for more URLs to send in the same request
USER_AGENT = "feeds-publisher/1"


class _Engine(Channel):
    """What the two engines share as channels: their pace, and no state of their own."""

    gather = GATHER

    def __init__(self, settings: Settings):
        self.settings = settings
        self.policy = Policy(settings.push.retry_seconds)
        self.hold = timedelta(seconds=4 * settings.push.timeout + 5)


class IndexNow(_Engine):
    """IndexNow (indexnow.org): one JSON POST per host of up to 10,000 URLs, whatever became of them."""

    name = "indexnow"
    batch = 10_000

    def send(self, items: Sequence[Queued], now: datetime) -> tuple[list[Pushed], int | None]:
        by_host: dict[tuple[str, str], list[Queued]] = defaultdict(list)
        for item in items:
            parts = urlsplit(item.subject)
            by_host[(parts.scheme, parts.netloc)].append(item)
        results: list[Pushed] = []
        key = self.settings.indexnow.key
        for (scheme, host), mine in by_host.items():
            body = {"host": host, "key": key, "keyLocation": f"{scheme}://{host}/{key}.txt", "urlList": [item.subject for item in mine]}
            answer = _post(self.settings, self.settings.indexnow.endpoint, json.dumps(body, ensure_ascii=False).encode(),
                           "application/json; charset=utf-8")
            results += self.policy.answered(mine, answer, now, f"IndexNow {host}") or [Pushed(item, "sent") for item in mine]
        return results, None


class Baidu(_Engine):
    """Baidu's link submission: text/plain POSTs of up to 2,000 URLs to /urls (new), /update and /del."""

    name = "baidu"
    batch = 2_000
    PATHS = {"new": "urls", "update": "update", "delete": "del"}

    def __init__(self, settings: Settings, store: Store):
        super().__init__(settings)
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
                           "\n".join(item.subject for item in mine).encode(), "text/plain")
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
            results += [Pushed(item, "given_up", error=f"Baidu: {refused[item.subject]}") if item.subject in refused else Pushed(item, "sent")
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


def engines(settings: Settings, store: Store) -> list[IndexNow | Baidu]:
    """The channels of the search engines configured: those with a key or token."""
    return [IndexNow(settings)] * bool(settings.indexnow.key) + [Baidu(settings, store)] * bool(settings.baidu.token)


def _post(settings: Settings, url: str, body: bytes, content_type: str) -> Answer | Exception:
    return post(url, body, content_type, settings.push.timeout, read=64 * 1024, user_agent=USER_AGENT)


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
