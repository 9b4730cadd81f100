"""WebSub publishing to other hubs, a channel of the outbox (``feeds.outbox``): after a change, each hub in
``websub.hubs`` is told which feed URLs changed (``hub.mode=publish``, one ``hub.url`` a request).

A write queues a ping of each scope it changed for every hub, in its transaction; the hot lists,
which every read moves, at most once per ``cache.hot_ttl``. A slow or down hub never slows or
breaks a write: a ping that fails is tried again by the outbox's one policy until
``websub.retry_seconds`` have passed, then given up and logged.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urlencode

from feeds.addresses import feed_address
from feeds.config import Settings
from feeds.outbox import Channel
from feeds.serving import feed_paths
from feeds.store.outbox import Pushed, Queued
from feeds.outbound import Policy, post
from feeds.writers import FORMATS


class Pings(Channel):
    """Tells another hub (a push's target) of every feed URL of a changed scope (its subject)."""

    name = "ping"
    batch = 4

    def __init__(self, settings: Settings):
        self.settings = settings
        self.policy = Policy(settings.websub.retry_seconds)
        most = len(FORMATS) * max(1, len(settings.hot.windows))  # requests a scope may take: the hot lists'
        self.hold = timedelta(seconds=self.batch * most * settings.websub.timeout + 5)

    def send(self, items: Sequence[Queued], now: datetime) -> tuple[list[Pushed], int | None]:
        return [self._ping(item, now) for item in items], None

    def _ping(self, item: Queued, now: datetime) -> Pushed:
        if item.target not in self.settings.websub.hubs:  # a hub since removed from the config
            return Pushed(item, "dropped")
        for path in feed_paths([item.subject], self.settings.hot.windows):
            for extension in FORMATS:
                url = f"{feed_address(self.settings, path)}.{extension}"
                body = urlencode({"hub.mode": "publish", "hub.url": url}).encode()
                answer = post(item.target, body, "application/x-www-form-urlencoded", self.settings.websub.timeout)
                failed = self.policy.answered([item], answer, now, f"hub {item.target}")
                if failed:
                    return failed[0]
        return Pushed(item, "sent")
