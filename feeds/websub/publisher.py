"""WebSub publishing to other hubs: after a change, tell each hub in ``websub.hubs`` which feed URLs changed.

The pings go out from a background thread with retries, so a slow or down hub
never slows or breaks a write; a ping that fails for good is logged.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable

log = logging.getLogger("feeds.websub")


class Publisher:
    """Sends ``hub.mode=publish`` for changed feed URLs to every hub."""

    def __init__(self, hubs: Iterable[str], retries: int = 3, backoff: float = 1.0, timeout: float = 5.0):
        self.hubs = tuple(hubs)
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def publish(self, urls: Iterable[str]) -> None:
        """Queue a ping of each URL to each hub; returns at once."""
        if not self.hubs:
            return
        for url in dict.fromkeys(urls):
            for hub in self.hubs:
                self._queue.put((hub, url))
        self._start()

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until every queued ping is sent or given up (for a CLI about to exit); False on time-out."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="websub", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            hub, url = self._queue.get()
            try:
                self._ping(hub, url)
            finally:
                self._queue.task_done()

    def _ping(self, hub: str, url: str) -> None:
        body = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": url}).encode()
        for attempt in range(1, self.retries + 1):
            request = urllib.request.Request(hub, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        return
                    problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
            except OSError as exc:
                problem = str(exc)
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        log.warning("websub: hub %s did not take the ping for %s after %d tries: %s", hub, url, self.retries, problem)
