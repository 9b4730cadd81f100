"""Several instances as one site: two real `feeds serve` processes on one PostgreSQL and one Redis.

Each module using these helpers gets a PostgreSQL database and a Redis database
number of its own (others run tests on the shared `test` database and Redis db 0
at the same time), and reaches them through a ``Proxy`` it can cut to play an outage.
"""
from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import POSTGRES_URL, REDIS_URL, article, redis_database
from tests.test_serve import free_port, wait_until_up

# The tests share the two instances the module's fixture starts: they run in one worker, which starts them once.
pytestmark = pytest.mark.xdist_group("cluster")

TOKEN = "s3cret"
PUBLIC_URL = "http://feeds.test"  # the one URL the load balancer is reached at: every instance puts it in the feeds
RECHECK = 1  # cache.recheck_seconds of an instance unless told otherwise (the default)
TRUSTED = 600  # recheck_seconds of the site's instances: only the change news can show them each other's writes in time
NEWS = 2  # seconds within which an instance shows a write made through another, by the change news through Redis



def needs_services() -> None:
    if not (POSTGRES_URL and REDIS_URL):
        pytest.skip("FEEDS_TEST_DATABASE_URL and FEEDS_TEST_REDIS_URL are not both set; the multi-instance tests need both")


class Proxy:
    """Forwards 127.0.0.1:<port> to a real server. ``cut()`` drops every open connection and
    closes new ones at once, as a restarting server does; ``stall()`` accepts new connections
    and never answers, as an unreachable host does; ``restore()`` forwards again."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.mode = "forward"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.mode = "cut"
        self._drop_all()

    def stall(self) -> None:
        self.mode = "stall"
        self._drop_all()

    def restore(self) -> None:
        self.mode = "forward"

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            if self.mode == "stall":
                self._track(client)  # held open, never read: dropped by the next cut or restore's clients
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._track(client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.update(sockets)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop_all(self) -> None:
        with self._lock:
            sockets = list(self._open)
        self._drop(*sockets)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with self._lock:
                self._open.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv; close alone would not
            except OSError:
                pass
            sock.close()


@contextmanager
def own_database(kind: str) -> Iterator[sa.URL]:
    """A PostgreSQL database of this process's own, on the server of FEEDS_TEST_DATABASE_URL; dropped after."""
    import psycopg

    server = sa.make_url(POSTGRES_URL)
    name = f"feeds_{kind}_{os.getpid()}"
    params = {"host": server.host or "127.0.0.1", "port": server.port or 5432, "user": server.username,
              "password": server.password, "dbname": server.database, "autocommit": True}
    with psycopg.connect(**params) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name)
    finally:
        with psycopg.connect(**params) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def own_redis(offset: int) -> Iterator[Any]:
    """A Redis database of this worker's own (``offset`` 1 or 2: one for each module using one) on the server
    of FEEDS_TEST_REDIS_URL, empty, as (client, url); emptied after."""
    import redis

    url = redis_database(REDIS_URL, offset)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield client, url
    finally:
        client.flushdb()
        client.close()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Instance:
    """One `feeds serve` (granian, 1 worker x 4 threads) in a process group of its own."""

    def __init__(self, folder: Path, database_url: str, cache_url: str, retry_after: int = 5, recheck_seconds: int = RECHECK):
        self.folder = folder
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = folder / f"config-{self.port}.toml"
        config.write_text(
            f'[site]\nbase_url = "{PUBLIC_URL}"\n[api]\ntoken = "{TOKEN}"\n'
            f'[cache]\nretry_after = {retry_after}\nrecheck_seconds = {recheck_seconds}\n',
            encoding="utf-8",
        )
        self.env = {**os.environ, "FEEDS_CONFIG": str(config), "FEEDS_DATABASE_URL": database_url, "FEEDS_CACHE_URL": cache_url}
        for name in ("FEEDS_BASE_URL", "FEEDS_API_TOKEN"):
            self.env.pop(name, None)
        self.log = folder / f"serve-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Instance:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "feeds", "serve", "--port", str(self.port), "--workers", "1", "--threads", "4"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"), start_new_session=True,
        )
        return self

    def wait_until_up(self) -> Instance:
        assert self.process is not None
        try:
            wait_until_up(f"{self.base}/healthz", self.process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text(errors='replace')[-3000:]}") from None
        return self

    def kill(self) -> None:
        """SIGKILL to the master and its workers at once, as a machine or container dies."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> Answer:
        """One request on a fresh connection; no decompression, no redirects, every status returned."""
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        if path.startswith("/api/"):
            headers["Authorization"] = f"Bearer {TOKEN}"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def get(self, path: str, **headers: str) -> Answer:
        return self.request("GET", path, headers={name.replace("_", "-"): value for name, value in headers.items()})


def news(article_id: str, category: str = "热点/国内", source: str = "新华社", **changes: Any) -> dict[str, Any]:
    return article(id=article_id, url=f"https://news.example.cn/{article_id}.html", title=f"标题{article_id}",
                   category=category, source=source, **changes)


def just_now(seconds_ago: float = 0) -> str:
    """A publication time a moment ago, later than the seed's: the article is the newest, and public at once."""
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat()


def guids(answer: Answer) -> list[str]:
    """The item ids of a JSON Feed answer, in order."""
    assert answer.status == 200, (answer.status, answer.body[:300])
    return [item["id"] for item in answer.json()["items"]]


def guid(article_id: str) -> str:
    return f"tag:news.example.cn,2024:article:{article_id}"


def within(seconds: float, check: Any, what: str) -> Any:
    """``check()``'s first truthy answer, which must come within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)
    return found


def within_recheck(check: Any, what: str) -> Any:
    """``check()``, true within ``RECHECK`` seconds (and one more for the requests themselves):
    how long an instance may trust a version it read when no change news reaches it."""
    return within(RECHECK + 1, check, what)


def soon(check: Any, what: str) -> Any:
    """``check()``, true within ``NEWS`` seconds: by the change news, not by the recheck."""
    return within(NEWS, check, what)


# -- the tests ----------------------------------------------------------------------------

FEEDS = ("/feeds/all.rss", "/feeds/all.atom", "/feeds/all.json", "/feeds/category/redian.rss",
         "/feeds/category/redian/guonei.atom", "/feeds/source/xinhuashe.json", "/feeds/hot/daily.rss",
         "/feeds/hot/weekly.json", "/feeds/all.rss?limit=5")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[Instance, Instance, Any]]:
    """Instances A and B, started at the same moment on one fresh database and one Redis database."""
    needs_services()
    folder = tmp_path_factory.mktemp("cluster")
    with own_database("cluster") as database, own_redis(1) as (redis_client, redis_url):
        url = database.render_as_string(hide_password=False)
        a, b = Instance(folder, url, redis_url, recheck_seconds=TRUSTED), Instance(folder, url, redis_url, recheck_seconds=TRUSTED)
        try:
            # Both at once on an empty database: the schema must be created once, not raced.
            a.start(), b.start()
            a.wait_until_up(), b.wait_until_up()
            yield a, b, redis_client
        finally:
            a.stop(), b.stop()


def test_both_instances_came_up_on_one_empty_database(site):
    a, b, _ = site
    assert a.get("/healthz").status == 200 and b.get("/healthz").status == 200


def test_a_write_through_a_is_in_b_feeds_at_its_next_polls_warm_cache_and_gzip_too(site):
    a, b, redis_client = site
    assert a.request("POST", "/api/articles", [news("c1"), news("c2", "财经/股票", "经济日报")]).status == 201
    warm = {path: b.get(path, Accept_Encoding="gzip") for path in FEEDS} | {path + "#plain": b.get(path) for path in FEEDS}
    assert all(answer.status == 200 for answer in warm.values())
    assert redis_client.dbsize() > 0  # B's renders are in the shared cache
    assert a.request("POST", "/api/articles", news("c3", published=just_now())).status == 201
    for path in ("/feeds/all.json", "/feeds/category/redian.json", "/feeds/source/xinhuashe.json"):
        soon(lambda: guids(b.get(path))[0] == guid("c3"), path)
    zipped = b.get("/feeds/all.rss", Accept_Encoding="gzip")
    assert zipped.headers["Content-Encoding"] == "gzip" and "标题c3" in gzip.decompress(zipped.body).decode()
    assert zipped.body != warm["/feeds/all.rss"].body
    stale = b.get("/feeds/all.rss", Accept_Encoding="gzip", If_None_Match=warm["/feeds/all.rss"].headers["ETag"])
    assert stale.status == 200  # the old ETag no longer matches: B does not answer 304 for the old bytes


def test_a_delete_through_a_leaves_b_feeds_at_its_next_polls(site):
    a, b, _ = site
    assert a.request("POST", "/api/articles", news("d1", published=just_now())).status == 201

    def guonei_with_d1() -> Answer | None:
        answer = b.get("/feeds/category/redian/guonei.rss", Accept_Encoding="gzip")
        return answer if "标题d1" in gzip.decompress(answer.body).decode() else None

    before = soon(guonei_with_d1, "d1 in guonei")
    soon(lambda: guid("d1") in guids(b.get("/feeds/all.json")), "d1 in all")
    assert a.request("DELETE", "/api/articles/d1").status == 200
    soon(lambda: guid("d1") not in guids(b.get("/feeds/all.json")), "d1 gone from all")
    after = b.get("/feeds/category/redian/guonei.rss", Accept_Encoding="gzip")
    assert "标题d1" not in gzip.decompress(after.body).decode()
    assert b.get("/feeds/category/redian/guonei.rss", If_None_Match=before.headers["ETag"]).status == 200


def test_reads_through_a_change_the_hot_list_on_b(site):
    a, b, _ = site
    assert a.request("POST", "/api/articles", [news("h1"), news("h2"), news("h3")]).status == 201
    for first in ("h1", "h3"):
        assert a.request("POST", "/api/views", [{"id": first, "count": 1000}]).status == 200
        soon(lambda: guids(b.get("/feeds/hot/daily.json"))[0] == guid(first), f"{first} first")
        assert "1. 标题" + first in gzip.decompress(b.get("/feeds/hot/weekly.rss", Accept_Encoding="gzip").body).decode()


@pytest.mark.parametrize("encoding", ["identity", "gzip", "br"])
def test_both_give_the_same_bytes_and_etags(site, encoding):
    a, b, redis_client = site
    # The feeds it compares hold articles whichever of the module's tests ran before (an unchanged upsert changes nothing).
    assert a.request("POST", "/api/articles", [news("c1"), news("c2", "财经/股票", "经济日报")]).status in (200, 201)
    for path in FEEDS:
        redis_client.flushdb()  # each renders for itself: the same bytes from the database, not one copy from the cache
        first = a.get(path, Accept_Encoding=encoding)
        redis_client.flushdb()
        second = b.get(path, Accept_Encoding=encoding)
        assert first.status == second.status == 200, path
        assert first.body == second.body, path
        for header in ("ETag", "Last-Modified", "Content-Type", "Content-Encoding", "Cache-Control", "Vary"):
            assert first.headers[header] == second.headers[header], (path, header)
        assert b.get(path, Accept_Encoding=encoding, If_None_Match=first.headers["ETag"]).status == 304
