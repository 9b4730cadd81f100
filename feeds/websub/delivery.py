"""The hub's work beside the request path, as channels of the outbox (``feeds.outbox``): confirming
subscriptions, and sending each subscriber its topic's new bytes.

Verification of intent (WebSub §5.3): a GET to the callback with ``hub.mode``, ``hub.topic``,
a random ``hub.challenge`` and, to subscribe, the ``hub.lease_seconds`` granted; a 2xx
answer echoing the challenge confirms, anything else drops the request. Content distribution
(§7): a write queues a ``topic`` of each scope it changed, which is turned into a ``delivery``
per subscriber of it; each is a POST of the topic's newest bytes, with its
Content-Type, ``Link: <hub>; rel="hub", <topic>; rel="self"`` and, with a secret,
``X-Hub-Signature: sha256=<HMAC of the body>``. A 2xx is done, a 410 ends the subscription,
any other answer or none is dealt with by the outbox's one policy (``outbound.Policy``): another
4xx but 429 is given up at once, the rest tried again until ``websub.retry_seconds`` have passed
since the first failure. Changes made while a delivery waits are merged into it: a subscriber
gets the newest bytes once, not a request per change, and never bytes it already has.

Each channel's requests go out on up to ``websub.concurrency`` threads, each bounded by
``websub.timeout``, so a slow or hostile subscriber costs a thread for a few seconds and never a
poll or a write.
"""
from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy.engine import Connection

from feeds.addresses import hub_address, parse_topic
from feeds.config import Settings
from feeds.model import Intent, Owed
from feeds.outbox import Channel
from feeds.serving import RenderedFeeds
from feeds.store import Store
from feeds.store.outbox import Pushed, Queued
from feeds.outbound import Policy, Refused, networks, request, retry_after
from feeds.writers import FORMATS

log = logging.getLogger("feeds.websub")


class _HubChannel(Channel):
    """What the hub's channels share: a batch a few requests per thread of the pool."""

    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings
        self.allowed = networks(settings.websub.allow_callbacks)
        self.batch = settings.websub.concurrency * 4
        # A claim outlives the slowest batch twice over; a process that dies holding one leaves it
        # to others when it runs out.
        self.hold = timedelta(seconds=2 * 4 * settings.websub.timeout + 5)

    def each(self, work: Callable[[Queued], Pushed], items: Sequence[Queued]) -> list[Pushed]:
        if len(items) < 2:
            return [work(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(len(items), self.settings.websub.concurrency), thread_name_prefix="websub") as pool:
            return list(pool.map(work, items))


class Verifications(_HubChannel):
    """Asks each callback to confirm the request made for it."""

    name = "verification"

    def send(self, items: Sequence[Queued], now: datetime) -> tuple[list[Pushed], int | None]:
        intents = self.store.subscriptions.intents(item.target for item in items)
        return self.each(lambda item: self._verify(item, intents.get(item.target)), items), None

    def settle(self, conn: Connection, pushed: Sequence[Pushed], now: datetime) -> None:
        self.store.subscriptions.verified(conn, pushed, now)

    def _verify(self, item: Queued, intent: Intent | None) -> Pushed:
        if intent is None:  # answered already
            return Pushed(item, "dropped")
        challenge = secrets.token_urlsafe(24)
        query = {"hub.mode": intent.mode, "hub.topic": intent.topic, "hub.challenge": challenge}
        if intent.mode == "subscribe":
            query["hub.lease_seconds"] = str(intent.lease_seconds)
        separator = "&" if "?" in intent.callback else "?"
        try:
            answer = request("GET", f"{intent.callback}{separator}{urlencode(query)}", self.allowed,
                             self.settings.websub.timeout, read=len(challenge) + 64)
        except (Refused, OSError, ValueError) as exc:  # ValueError: a host name no resolver takes
            problem = str(exc) or type(exc).__name__
        else:
            if 200 <= answer.status < 300 and answer.body.strip() == challenge.encode():
                return Pushed(item, "sent", note=intent)
            problem = f"HTTP {answer.status}" if not 200 <= answer.status < 300 else "the challenge was not echoed"
        log.info("websub: %s to %s not confirmed by %s: %s", intent.mode, intent.topic, intent.callback, problem)
        return Pushed(item, "given_up", error=f"{intent.callback}: {problem}", note=intent)


class Topics(_HubChannel):
    """Turns each changed scope into a delivery to every subscriber of it: off the write, which queued one row."""

    name = "topic"

    def send(self, items: Sequence[Queued], now: datetime) -> tuple[list[Pushed], int | None]:
        return [Pushed(item, "sent") for item in items], None

    def settle(self, conn: Connection, pushed: Sequence[Pushed], now: datetime) -> None:
        self.store.subscriptions.expand(conn, [done.item.subject for done in pushed], now)


class Deliveries(_HubChannel):
    """Sends each subscriber owed its topic's newest bytes; ends subscriptions that answer 410 or expire."""

    name = "delivery"

    def __init__(self, store: Store, feeds: RenderedFeeds, settings: Settings):
        super().__init__(store, settings)
        self.feeds = feeds
        self.policy = Policy(settings.websub.retry_seconds)

    def send(self, items: Sequence[Queued], now: datetime) -> tuple[list[Pushed], int | None]:
        owed = self.store.subscriptions.owed((item.target for item in items), now)
        return self.each(lambda item: self._deliver(item, owed.get(item.target), now), items), None

    def settle(self, conn: Connection, pushed: Sequence[Pushed], now: datetime) -> None:
        self.store.subscriptions.delivered(conn, pushed, now, now.astimezone(self.settings.tz).date())

    def tidy(self, now: datetime) -> None:
        self.store.subscriptions.expire(now)

    def _deliver(self, item: Queued, owed: Owed | None, now: datetime) -> Pushed:
        topic = parse_topic(owed.topic, self.settings) if owed else None  # None when the feed, or the partner's key, is gone
        rendered = None
        if owed is not None and topic is not None:
            stamp = self.feeds.stamp(owed.scope, owed.version)
            if topic.partner is not None and topic.key is not None:
                partner = self.settings.partners[topic.partner]
                rendered = self.feeds.partner(topic.partner, partner, topic.key, topic.path, topic.extension, topic.limit,
                                              stamp=stamp, variant=topic.variant)
            else:
                rendered = self.feeds.get(topic.path, topic.extension, topic.limit, stamp=stamp, variant=topic.variant)
        if owed is None or topic is None or rendered is None:  # the subscription or its feed is gone: nothing to send
            return Pushed(item, "dropped")
        if rendered.etag == owed.delivered_etag:
            return Pushed(item, "dropped", note=rendered.etag)
        headers = {
            "Content-Type": FORMATS[topic.extension].content_type,
            "Link": f'<{hub_address(self.settings)}>; rel="hub", <{owed.topic}>; rel="self"',
        }
        if owed.secret:
            signature = hmac.new(owed.secret.encode(), rendered.body, "sha256").hexdigest()
            headers["X-Hub-Signature"] = f"sha256={signature}"
        wait, final = None, False
        try:
            answer = request("POST", owed.callback, self.allowed, self.settings.websub.timeout, body=rendered.body,
                             headers=headers, read=1024)
            if 200 <= answer.status < 300:
                return Pushed(item, "sent", note=rendered.etag)
            if answer.status == 410:
                log.info("websub: %s ended its subscription to %s (410)", owed.callback, owed.topic)
                return Pushed(item, "given_up", error=f"{owed.callback}: HTTP 410", note="gone")
            problem, wait = f"HTTP {answer.status}", retry_after(answer)
            final = self.policy.final(answer.status)
        except (Refused, OSError, ValueError) as exc:  # ValueError: a host name no resolver takes
            problem = str(exc) or type(exc).__name__
        return self.policy.failed(item, now, f"sending {owed.topic} to {owed.callback}", f"{owed.callback}: {problem}", wait, final)


def hub_channels(store: Store, feeds: RenderedFeeds, settings: Settings) -> list[Verifications | Topics | Deliveries]:
    """The hub's channels, unless it is off."""
    if not settings.websub.hub:
        return []
    return [Verifications(store, settings), Topics(store, settings), Deliveries(store, feeds, settings)]
