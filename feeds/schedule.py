"""Publishing on time: articles join the public outputs when their ``published`` time comes, and
leave them when their ``expires`` time comes.

Each serving process runs one thread of it (beside the outbox's sender, see ``feeds.app``). It
asks the store when the next article falls due (``Articles.next_due``: the first entry of
one of two small indexes) at most once a second, sleeps until then when that is sooner, and
moves what has fallen due (``Articles.release``) in one transaction: the scopes it touched are
bumped, so every worker and instance renders anew, and the commit announces the change like
any write (hub deliveries, pings, news to other instances). Processes race for the same
articles harmlessly: each article is moved once. On start it moves at once whatever fell due
while no process was running.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

from feeds.background import PerProcess, one_round
from feeds.store import Store

log = logging.getLogger("feeds.schedule")

LOOK_EVERY = 1.0  # seconds: the longest the thread waits before it asks the store again
_SHORTEST_WAIT = 0.05  # seconds: after an article stayed overdue (another process holds it), before asking again


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Schedule:
    """Moves scheduled and expiring articles in and out of the public outputs, one thread per process."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = utc_now):
        self.store = store
        self.clock = clock
        self._thread = PerProcess("feeds-schedule", self._run)

    def start(self) -> None:
        """Run in this process from now on (``background.PerProcess``)."""
        self._thread.start()

    def release(self) -> int:
        """Move every article that has fallen due by now; how many moved."""
        moved = self.store.articles.release(self.clock())
        if moved:
            log.info("schedule: %d articles joined or left the public outputs", moved)
        return moved

    def step(self) -> float:
        """Move what has fallen due, if anything; the seconds to wait before the next step."""
        due = self.store.articles.next_due()
        if due is not None and due <= self.clock():
            self.release()
            due = self.store.articles.next_due()
        if due is None:
            return LOOK_EVERY
        remaining = (due - self.clock()).total_seconds()
        return min(LOOK_EVERY, remaining) if remaining > 0 else _SHORTEST_WAIT

    def _run(self) -> None:
        one_round(log, "schedule", self.release)  # what fell due while no process ran, and articles dated later than now
        while not self.store.closed:
            wait = one_round(log, "schedule", self.step)
            time.sleep(LOOK_EVERY if wait is None else wait)
