"""Readers and a writer at once against a real server (`feeds serve` with one thread a worker and with four), on SQLite and PostgreSQL:
no 5xx, no "database is locked", and every article acknowledged is stored and served."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from feeds.store import Store
from tests.conftest import article
from tests.test_serve import free_port, wait_until_up

READERS = 4
WRITES = 30  # requests of two articles each
READ_PATHS = ["/feeds/all.json", "/feeds/all.rss?limit=50", "/feeds/category/redian.atom", "/feeds/source/hulianwang.rss",
              "/feeds/hot/daily.json", "/", "/feeds.opml", "/healthz"]


def fetch(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("threads", [[], ["--threads", "4"]], ids=["default", "4-threads"])
def test_readers_and_a_writer_at_once(database_url: str, tmp_path: Path, threads: list[str]):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FEEDS_DATABASE_URL": database_url, "FEEDS_BASE_URL": base, "FEEDS_API_TOKEN": "s3cret",
           "FEEDS_CONFIG": os.devnull}
    log = tmp_path / "server.log"
    with log.open("wb") as errors:
        process = subprocess.Popen([sys.executable, "-m", "feeds", "serve", "--port", str(port), "--workers", "2", *threads],
                                   env=env, stdout=subprocess.DEVNULL, stderr=errors)
    try:
        wait_until_up(f"{base}/healthz", process)
        statuses: list[tuple[str, int]] = []
        acknowledged: list[str] = []
        writing = threading.Event()
        writing.set()

        def read(offset: int) -> None:
            turn = offset
            while writing.is_set() or turn < offset + len(READ_PATHS):  # one round at least after the last write
                path = READ_PATHS[turn % len(READ_PATHS)]
                statuses.append((path, fetch(base + path)[0]))
                turn += 1

        def write() -> None:
            try:
                for n in range(WRITES):
                    batch = [article(id=f"c{n}-{k}", url=f"https://news.example.cn/c/{n}/{k}.html", title=f"并发写入 {n}-{k}",
                                     published=f"2024-04-05 10:{n:02d}:{k:02d}") for k in range(2)]
                    status, body = fetch(f"{base}/api/articles", json.dumps(batch).encode())
                    statuses.append(("POST /api/articles", status))
                    if 200 <= status < 300:
                        acknowledged.extend(result["id"] for result in json.loads(body)["results"])
            finally:
                writing.clear()

        threads = [threading.Thread(target=read, args=(offset,)) for offset in range(READERS)] + [threading.Thread(target=write)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not any(thread.is_alive() for thread in threads), "a client thread hung"
        status, body = fetch(f"{base}/feeds/all.json?limit=100")
    finally:
        process.terminate()
        process.wait(timeout=30)
    server_log = log.read_text(encoding="utf-8", errors="replace")
    assert [entry for entry in statuses if entry[1] >= 500] == [], server_log[-3000:]
    assert "database is locked" not in server_log and "Traceback" not in server_log, server_log[-3000:]
    assert sum(1 for path, _ in statuses if path != "POST /api/articles") > len(READ_PATHS) * READERS
    assert len(acknowledged) == 2 * WRITES  # every write was taken...
    assert status == 200, server_log[-3000:]
    assert {item["id"].rsplit(":", 1)[1] for item in json.loads(body)["items"]} == set(acknowledged)  # ...and is served
    store = Store(database_url)
    try:
        assert store.articles.known_ids(set(acknowledged)) == set(acknowledged) and store.articles.count() == 2 * WRITES
    finally:
        store.close()
