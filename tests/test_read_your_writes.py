"""Once a write is acknowledged, every later request to any worker is answered from the new content.

Workers trust the feed versions they read for ``cache.recheck_seconds``; here it is ten minutes,
so only the change counter in shared memory can make the other worker see a write at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import Message

import pytest

from feeds.store import Store
from tests.conftest import article, free_port, make_settings
from tests.test_serve import SERVERS, wait_until_up

TOKEN = "s3cret"
TRIES = 60


@pytest.fixture(scope="module", params=list(SERVERS))
def two_workers(request, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """``feeds serve`` with two workers, with one thread a worker and with four."""
    folder = tmp_path_factory.mktemp(f"ryw-{request.param}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = folder / "config.toml"
    config.write_text(f'[cache]\nrecheck_seconds = 600\n[api]\ntoken = "{TOKEN}"\n', encoding="utf-8")
    env = {**os.environ, "FEEDS_DATABASE_URL": f"sqlite:///{folder / 'feeds.db'}", "FEEDS_BASE_URL": base,
           "FEEDS_CONFIG": str(config)}
    # The access log goes to a file: a pipe that nobody reads fills up after a few hundred requests, and
    # then the workers block on their log lines and never exit.
    log = folder / "server.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "feeds", "serve", "--port", str(port), "--workers", "2", *SERVERS[request.param]],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        try:
            wait_until_up(f"{base}/healthz", process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text(errors='replace')[-2000:]}") from None
        yield base, request.param
    finally:
        process.terminate()
        process.wait(timeout=30)


def call(url: str, body: object | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, Message]:
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    sent = {**(headers or {}), **({"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(url, data=data, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers  # header names in any case
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def polls(url: str, headers: dict[str, str] | None = None) -> list[tuple[int, bytes, Message]]:
    """As many requests as it takes to reach both workers many times: a new connection each."""
    return [call(url, headers=headers) for _ in range(TRIES)]


def test_a_new_article_is_in_every_workers_next_answer(two_workers):
    base, server = two_workers
    assert call(f"{base}/api/articles", article(id="a1", title="第一篇"))[0] == 201
    polls(f"{base}/feeds/all.rss")  # both workers now trust this version for ten minutes
    assert call(f"{base}/api/articles", article(id="a2", url="https://news.example.cn/a2.html", title="第二篇"))[0] == 201
    answers = polls(f"{base}/feeds/all.rss")
    assert [status for status, _, _ in answers] == [200] * TRIES
    assert sum("第二篇" in body.decode() for _, body, _ in answers) == TRIES
    assert {headers["Server"] for _, _, headers in answers} == {"granian"}


def test_an_edit_is_never_answered_304_for_the_old_bytes(two_workers):
    base, _ = two_workers
    assert call(f"{base}/api/articles", article(id="e1", url="https://news.example.cn/e1.html", title="原来的标题"))[0] in (200, 201)
    _, _, headers = call(f"{base}/feeds/all.atom")
    old = headers["ETag"]
    assert {status for status, _, _ in polls(f"{base}/feeds/all.atom", {"If-None-Match": old})} == {304}
    assert call(f"{base}/api/articles", article(id="e1", url="https://news.example.cn/e1.html", title="改过的标题"))[0] == 200
    answers = polls(f"{base}/feeds/all.atom", {"If-None-Match": old})
    assert [status for status, _, _ in answers] == [200] * TRIES
    assert all("改过的标题" in body.decode() for _, body, _ in answers)


def test_reads_that_reorder_a_hot_list_show_at_once(two_workers):
    base, _ = two_workers
    now = datetime.now(timezone.utc)
    for n in (1, 2):
        call(f"{base}/api/articles", article(id=f"h{n}", url=f"https://news.example.cn/h{n}.html", title=f"热文{n}"))
    assert call(f"{base}/api/views", [{"id": "h1", "count": 5, "at": now.isoformat()}])[0] == 200
    assert {json.loads(body)["items"][0]["title"] for _, body, _ in polls(f"{base}/feeds/hot/daily.json")} == {"1. 热文1"}
    assert call(f"{base}/api/views", [{"id": "h2", "count": 50, "at": (now - timedelta(minutes=1)).isoformat()}])[0] == 200
    assert {json.loads(body)["items"][0]["title"] for _, body, _ in polls(f"{base}/feeds/hot/daily.json")} == {"1. 热文2"}


def test_another_process_write_costs_one_lookup_and_none_before_it(sqlite_url, monkeypatch):
    poller = Store(sqlite_url, recheck_seconds=600)  # a worker that trusts what it read for ten minutes
    poller.migrate()
    writer = Store(sqlite_url)  # another worker, or `feeds import`
    settings = make_settings(sqlite_url)
    from feeds.validate import article_from_dict

    lookups: list[str] = []
    original = poller.versions._read
    monkeypatch.setattr(poller.versions, "_read", lambda scope: lookups.append(scope) or original(scope))
    writer.articles.upsert([article_from_dict(article(), settings)])
    assert poller.versions.current("all") == 1
    assert [poller.versions.current("all") for _ in range(100)] == [1] * 100 and lookups == ["all"]
    writer.articles.upsert([article_from_dict(article(id="2", url="https://news.example.cn/2.html"), settings)])
    assert poller.versions.current("all") == 2 and lookups == ["all", "all"]  # at once, no waiting out the ten minutes
    poller.close(), writer.close()


def test_the_embeddable_boxes_show_a_write_at_once_on_every_worker(two_workers):
    base, _ = two_workers
    now = datetime.now(timezone.utc)
    for n in (1, 2):
        call(f"{base}/api/articles", article(id=f"b{n}", url=f"https://news.example.cn/b{n}.html", title=f"框里的文章{n}",
                                             published=(now - timedelta(minutes=n)).isoformat()))
    assert call(f"{base}/api/views", [{"id": "b1", "count": 500, "at": now.isoformat()}])[0] == 200
    hot, latest = f"{base}/embed/hot", f"{base}/embed/latest?feed=category/redian/guonei"
    assert all('title="框里的文章1"' in body.decode() for _, body, _ in polls(hot))
    _, _, headers = call(latest)  # both workers now trust these versions for ten minutes
    assert call(f"{base}/api/articles", article(id="b3", url="https://news.example.cn/b3.html", title="框里的新文章",
                                                published=now.isoformat()))[0] == 201
    assert call(f"{base}/api/views", [{"id": "b2", "count": 5000, "at": now.isoformat()}])[0] == 200
    answers = polls(latest, {"If-None-Match": headers["ETag"]})
    assert [status for status, _, _ in answers] == [200] * TRIES
    assert all(body.decode().index("框里的新文章") < body.decode().index("框里的文章1") for _, body, _ in answers)
    assert all(body.decode().index('title="框里的文章2"') < body.decode().index('title="框里的文章1"') for _, body, _ in polls(hot))
