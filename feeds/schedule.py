"""Publishing on time: articles join the public outputs when their ``published`` time comes, and
leave them when their ``expires`` time comes.

Each serving process runs one thread of it (beside the WebSub hub's, see ``feeds.app``). It
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
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from feeds.errors import StoreUnavailable
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
        self._running_in: int | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Run in this process from now on; a no-op once running (a server may fork after the app is made)."""
        if self._running_in == os.getpid():
            return
        with self._lock:
            if self._running_in != os.getpid():
                self._running_in = os.getpid()
                threading.Thread(target=self._run, name="feeds-schedule", daemon=True).start()

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
        try:
            self.release()  # what fell due while no process ran, and articles stored dated later than now
        except Exception:
            log.exception("schedule: the first release failed; trying again shortly")
        while not self.store.closed:
            try:
                wait = self.step()
            except StoreUnavailable as exc:
                log.warning("schedule: the database is unavailable; trying again shortly: %s", exc)
                wait = LOOK_EVERY
            except Exception:
                log.exception("schedule: a release failed; trying again shortly")
                wait = LOOK_EVERY
            time.sleep(wait)
