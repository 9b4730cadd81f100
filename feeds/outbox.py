"""The one sender of the outbox (``store.outbox``): every push the service makes goes through it.

Each channel says how to send a batch of its pushes and what to make of the answers:

- the hub's (``websub/delivery.py``): ``verification`` asks a callback to confirm a request,
  ``topic`` turns a changed scope into one ``delivery`` per subscriber, ``delivery`` sends a
  subscriber its topic's new bytes;
- ``ping`` tells the other hubs of changed feeds (``websub/publisher.py``);
- ``indexnow`` and ``baidu`` tell search engines of article URLs (``reach.py``).

The sender does the rest alike for all: in every serving process it runs a thread per channel,
woken by a write in its process and otherwise looking for due pushes every second; it claims a
batch, has the channel send it, and records in one transaction what became of each push (with
the channel's own ``settle``). Failures follow one policy (``outbound.Policy``).
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import Connection

from feeds.background import PerProcess, one_round
from feeds.metrics import PUSHES
from feeds.store import Store
from feeds.store.outbox import Pushed, Queued
from feeds.outbound import backoff

log = logging.getLogger("feeds.outbox")

LOOK_EVERY = 1.0  # seconds: the longest a channel's thread waits before it looks for due pushes
TIDY_EVERY = 60.0  # seconds between a channel's ``tidy`` rounds


class Channel:
    """One kind of push: how a batch of it is sent, and what its answers change. By default a channel sends what is due
    at once and keeps no state of its own."""

    name: str
    batch: int  # pushes claimed, and sent, together
    gather = 0.0  # seconds a woken thread waits for more pushes to send together
    hold: timedelta  # how long a claimed batch is the claimer's: longer than sending it may take

    def send(self, items: Sequence[Queued], now: datetime) -> tuple[list[Pushed], int | None]:
        """Push ``items``; what became of each, and what the far end said is left of its quota, if it says."""
        raise NotImplementedError

    def settle(self, conn: Connection, pushed: Sequence[Pushed], now: datetime) -> None:
        """Apply what became of ``pushed`` to the channel's own state, in the transaction that records it."""

    def tidy(self, now: datetime) -> None:
        """Housekeeping, about once a minute."""


class Sender:
    """Sends what the outbox holds, a thread per channel in each process that serves."""

    def __init__(self, store: Store, channels: Sequence[Channel]):
        self.store = store
        self.channels = list(channels)
        self._wakes = [threading.Event() for _ in self.channels]
        self._threads = [PerProcess(f"feeds-{channel.name}", functools.partial(self._run, channel, wake))
                         for channel, wake in zip(self.channels, self._wakes)]

    def start(self) -> None:
        """Run in this process from now on (``background.PerProcess``)."""
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """Something was queued: look now."""
        for wake in self._wakes:
            wake.set()

    def work_once(self, now: datetime | None = None) -> bool:
        """Send one batch of each channel that has pushes due at ``now``; whether any had."""
        busy = False
        for channel in self.channels:
            busy = self._batch(channel, now) or busy
        return busy

    def drain(self, seconds: float) -> bool:
        """Send what is due until nothing is or ``seconds`` have passed (a command about to exit); whether all went."""
        deadline = time.monotonic() + seconds
        while self.work_once():
            if time.monotonic() > deadline:
                return False
        return True

    def _batch(self, channel: Channel, now: datetime | None = None) -> bool:
        now = now or datetime.now(timezone.utc)
        items = self.store.outbox.claim(channel.name, now, channel.batch, channel.hold)
        if not items:
            return False
        try:
            pushed, remain = channel.send(items, now)
        except Exception as exc:  # a bug, not an answer: the batch waits out a pause, and does not block the others
            log.exception("%s: sending a batch of %d failed", channel.name, len(items))
            pushed = [Pushed(item, "failed", now + timedelta(seconds=backoff(item.attempts)), error=repr(exc)[:300])
                      for item in items]
            remain = None
        self.store.outbox.record(channel.name, pushed, datetime.now(timezone.utc), remain, channel.settle)
        for done in pushed:
            PUSHES.labels(channel.name, done.result).inc()
        return True

    def _run(self, channel: Channel, wake: threading.Event) -> None:
        tidied = 0.0
        while not self.store.closed:
            if wake.wait(timeout=LOOK_EVERY) and channel.gather:
                time.sleep(channel.gather)
            wake.clear()
            if time.monotonic() - tidied > TIDY_EVERY:
                tidied = time.monotonic()
                one_round(log, channel.name, lambda: channel.tidy(datetime.now(timezone.utc)))
            if one_round(log, channel.name, lambda: self._drain(channel)):
                self.wake()  # a batch may queue work for another channel (a topic, deliveries)

    def _drain(self, channel: Channel) -> bool:
        busy = False
        while self._batch(channel):
            busy = True
        return busy
