"""The hub's work beside the request path: confirming subscriptions and sending each subscriber
its topic's new bytes.

Every process that serves runs one thread of it (started by ``create_app(background=True)``, as
`feeds serve` makes each worker's app), which a write wakes at once and which otherwise looks
for work every second, so that changes made through other processes and instances reach
subscribers too. It claims work in batches from the database (``store.subscriptions``) and
does it on a pool of ``websub.concurrency`` threads, each request bounded by
``websub.timeout``; so a slow or hostile subscriber costs a thread for a few seconds and
never a poll or a write.

Verification of intent (WebSub §5.3): a GET to the callback with ``hub.mode``, ``hub.topic``,
a random ``hub.challenge`` and, to subscribe, the ``hub.lease_seconds`` granted; a 2xx
answer echoing the challenge confirms. Content distribution (§7): a POST of the topic's
bytes at the version owed, with its Content-Type, ``Link: <hub>; rel="hub", <topic>;
rel="self"`` and, with a secret, ``X-Hub-Signature: sha256=<HMAC of the body>``. A 2xx is
done, a 410 ends the subscription, anything else is tried again after 2, 4, 8… seconds (an
hour at most) until ``websub.retry_seconds`` have passed since the first failure; then the
content is given up and logged (``outbound.backoff``, the policy of every push; a subscriber's
Retry-After is honoured when longer). Bytes a subscriber already has are not sent again.
"""
from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from feeds.addresses import hub_address, parse_topic
from feeds.background import PerProcess, one_round
from feeds.config import Settings
from feeds.model import Intent, Owed, Sent
from feeds.serving import RenderedFeeds, scope_of
from feeds.store import Store
from feeds.websub.outbound import Refused, backoff, networks, request, retry_after
from feeds.writers import FORMATS

log = logging.getLogger("feeds.websub")

_EXPIRE_EVERY = 60.0  # seconds between sweeps of expired subscriptions


class Distributor:
    """Confirms subscription requests and distributes content, one thread per process."""

    def __init__(self, store: Store, feeds: RenderedFeeds, settings: Settings, wake: threading.Event):
        self.store = store
        self.feeds = feeds
        self.settings = settings
        self.allowed = networks(settings.websub.allow_callbacks)
        self.batch = settings.websub.concurrency * 4
        # A claim outlives the slowest batch twice over; a process that dies holding one leaves it
        # to others when it runs out.
        self.hold = timedelta(seconds=2 * 4 * settings.websub.timeout + 5)
        self._wake = wake
        self._thread = PerProcess("websub-hub", self._run)

    def start(self) -> None:
        """Run in this process from now on (``background.PerProcess``), unless the hub is off."""
        if self.settings.websub.hub:
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        pool = ThreadPoolExecutor(max_workers=self.settings.websub.concurrency, thread_name_prefix="websub")
        swept = 0.0
        while True:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self.store.closed:  # the app was closed: this thread has nothing left to serve
                break
            if time.monotonic() - swept > _EXPIRE_EVERY:
                swept = time.monotonic()
                one_round(log, "websub", lambda: self.store.subscriptions.expire(_now()))
            one_round(log, "websub", lambda: self._work_all(pool.map))
        pool.shutdown(wait=False)

    def _work_all(self, each: Callable) -> None:  # type: ignore[type-arg]
        while self.work_once(each):
            pass

    def work_once(self, each: Callable = map) -> bool:  # type: ignore[type-arg]
        """Claim and do one batch of verifications and one of deliveries; whether there was any."""
        subscriptions = self.store.subscriptions
        intents = subscriptions.claim_requests(_now(), self.batch, self.hold)
        for intent, confirmed in zip(intents, each(self._verify, intents)):
            if confirmed:
                subscriptions.confirmed(intent, _now())
            else:
                subscriptions.dropped(intent)
        owed = subscriptions.claim_owed(_now(), self.batch, self.hold)
        if owed:
            sent = list(each(self._deliver, owed))
            now = _now()
            subscriptions.record(sent, now, now.astimezone(self.settings.tz).date())
        return bool(intents or owed)

    # -- verification of intent -----------------------------------------------------------

    def _verify(self, intent: Intent) -> bool:
        challenge = secrets.token_urlsafe(24)
        query = {"hub.mode": intent.mode, "hub.topic": intent.topic, "hub.challenge": challenge}
        if intent.mode == "subscribe":
            query["hub.lease_seconds"] = str(intent.lease_seconds)
        separator = "&" if "?" in intent.callback else "?"
        try:
            answer = request("GET", f"{intent.callback}{separator}{urlencode(query)}", self.allowed,
                             self.settings.websub.timeout, read=len(challenge) + 64)
        except (Refused, OSError) as exc:
            log.info("websub: %s to %s not confirmed by %s: %s", intent.mode, intent.topic, intent.callback, exc)
            return False
        confirmed = 200 <= answer.status < 300 and answer.body.strip() == challenge.encode()
        if not confirmed:
            log.info("websub: %s to %s not confirmed by %s: HTTP %d", intent.mode, intent.topic, intent.callback, answer.status)
        return confirmed

    # -- content distribution -----------------------------------------------------------

    def _deliver(self, owed: Owed) -> Sent:
        topic = parse_topic(owed.topic, self.settings)  # None when the feed, or the partner's key, is gone
        rendered = None
        if topic is not None:
            stamp = self.feeds.stamp(scope_of(topic.path), owed.version)
            if topic.partner is not None and topic.key is not None:
                partner = self.settings.partners[topic.partner]
                rendered = self.feeds.partner(topic.partner, partner, topic.key, topic.path, topic.extension, topic.limit,
                                              stamp=stamp, variant=topic.variant)
            else:
                rendered = self.feeds.get(topic.path, topic.extension, topic.limit, stamp=stamp, variant=topic.variant)
        if topic is None or rendered is None:  # the feed is gone: nothing to send
            return Sent(owed, "unchanged")
        if rendered.etag == owed.delivered_etag:
            return Sent(owed, "unchanged", rendered.etag)
        headers = {
            "Content-Type": FORMATS[topic.extension].content_type,
            "Link": f'<{hub_address(self.settings)}>; rel="hub", <{owed.topic}>; rel="self"',
        }
        if owed.secret:
            signature = hmac.new(owed.secret.encode(), rendered.body, "sha256").hexdigest()
            headers["X-Hub-Signature"] = f"sha256={signature}"
        wait = None
        try:
            answer = request("POST", owed.callback, self.allowed, self.settings.websub.timeout, body=rendered.body,
                             headers=headers, read=1024)
            problem, wait = f"HTTP {answer.status}", retry_after(answer)
            if 200 <= answer.status < 300:
                return Sent(owed, "delivered", rendered.etag)
            if answer.status == 410:
                log.info("websub: %s ended its subscription to %s (410)", owed.callback, owed.topic)
                return Sent(owed, "gone")
        except (Refused, OSError) as exc:
            problem = str(exc) or type(exc).__name__
        now = _now()
        if owed.failing_since is not None and now - owed.failing_since >= timedelta(seconds=self.settings.websub.retry_seconds):
            log.warning("websub: gave up sending %s to %s after %d attempts since %s: %s", owed.topic, owed.callback,
                        owed.attempts + 1, owed.failing_since.isoformat(), problem)
            return Sent(owed, "given_up")
        return Sent(owed, "failed", retry_at=now + timedelta(seconds=backoff(owed.attempts, wait)))


def _now() -> datetime:
    return datetime.now(timezone.utc)
