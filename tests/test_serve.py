"""`feeds serve` on granian, read by a real feed reader (newsboat)."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import article, free_port, jsonl


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {seconds} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("served")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FEEDS_DATABASE_URL": f"sqlite:///{folder / 'feeds.db'}", "FEEDS_BASE_URL": base,
           "FEEDS_CONFIG": os.devnull}
    rows = [article(), article(id="2", url="https://news.example.cn/2.html", title="第二条 & “引号”", published="2024-04-05 09:30:00")]
    (folder / "in.jsonl").write_text(jsonl(rows), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "feeds", "import", str(folder / "in.jsonl")], env=env, check=True, capture_output=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "feeds", "serve", "--port", str(port), "--workers", "1", "--threads", "4"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_until_up(f"{base}/healthz", process)
        yield base, folder
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_served_by_granian_with_validators(served):
    base, _ = served
    with urllib.request.urlopen(f"{base}/feeds/all.rss") as response:
        assert response.status == 200
        assert response.headers["Server"] == "granian"
        assert response.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
        etag = response.headers["ETag"]
        length = len(response.read())
    with urllib.request.urlopen(urllib.request.Request(f"{base}/feeds/all.rss", method="HEAD")) as response:
        assert response.read() == b"" and int(response.headers["Content-Length"]) == length
        assert response.headers["ETag"] == etag
    request = urllib.request.Request(f"{base}/feeds/all.rss", headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(request)
    assert not_modified.value.code == 304


def newsboat() -> str:
    found = shutil.which("newsboat")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run(["apt-get", "update"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "newsboat"], **quiet,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("newsboat")
    if not found:
        pytest.skip("newsboat is not installed and could not be installed with apt-get (needs root and Debian's packages)")
    return found


@pytest.mark.parametrize("extension", ["rss", "atom"])
def test_newsboat_reads_titles_times_and_guids(served, extension, tmp_path):
    base, _ = served
    binary = newsboat()
    urls = tmp_path / "urls"
    urls.write_text(f"{base}/feeds/all.{extension}\n", encoding="utf-8")
    cache = tmp_path / "cache.db"
    config = tmp_path / "config"
    config.write_text("", encoding="utf-8")
    env = {**os.environ, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    for _ in range(2):  # twice: the second reload must not duplicate anything
        subprocess.run([binary, "-u", str(urls), "-c", str(cache), "-C", str(config), "-x", "reload"], env=env, check=True,
                       capture_output=True, timeout=60)
    connection = sqlite3.connect(cache)
    rows = connection.execute("SELECT guid, title, pubDate FROM rss_item ORDER BY pubDate DESC").fetchall()
    connection.close()
    assert [(guid, title) for guid, title, _ in rows] == [
        ("tag:news.example.cn,2024:article:2", "第二条 & “引号”"),
        ("tag:news.example.cn,2024:article:20240404-0001", article()["title"]),
    ]
    assert datetime.fromtimestamp(rows[1][2], timezone.utc) == datetime(2024, 4, 4, 8, 49, 39, tzinfo=timezone.utc)
