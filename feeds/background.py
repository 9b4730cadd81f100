"""Work beside the requests, a thread of each kind per process: the schedule (``schedule.py``) and the
outbox's sender, a thread per channel (``outbox.py``). Each starts once in every process that serves (a server may fork after the app is
made), and a round of it that fails is logged and tried again shortly, never ending the thread.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from feeds.errors import StoreUnavailable

PAUSE_AFTER_FAILURE = 1.0  # seconds
T = TypeVar("T")


class PerProcess:
    """Runs ``target`` in a daemon thread named ``name``, once in each process."""

    def __init__(self, name: str, target: Callable[[], None]):
        self.name = name
        self.target = target
        self._running_in: int | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Run in this process from now on; a no-op once running here."""
        if self._running_in == os.getpid():
            return
        with self._lock:
            if self._running_in != os.getpid():
                self._running_in = os.getpid()
                threading.Thread(target=self.target, name=self.name, daemon=True).start()


def one_round(log: logging.Logger, what: str, work: Callable[[], T]) -> T | None:
    """Do one round of background work: what it gave, or None when it failed. A database outage is a warning,
    anything else an error with its trace; either way the thread pauses a moment and goes on."""
    try:
        return work()
    except StoreUnavailable as exc:
        log.warning("%s: the database is unavailable; trying again shortly: %s", what, exc)
    except Exception:
        log.exception("%s: a round failed; trying again shortly", what)
    time.sleep(PAUSE_AFTER_FAILURE)
    return None
