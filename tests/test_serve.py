"""`feeds serve` (granian, with one thread a worker and with more): HTTP as clients speak it, stopping and
restarting workers, and a real feed reader (newsboat). What it does against hostile clients is in
test_open_internet.py."""
from __future__ import annotations

import functools
import json
import os
import resource
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedparser
import pytest

from feeds import create_app
from tests.conftest import article, debian_tool, free_port, jsonl


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 30, context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {seconds} s")


def wait_gone(pids: list[int], seconds: float, message: str) -> None:
    """Wait until none of ``pids`` runs any more (an exited one not yet reaped counts as gone)."""
    deadline = time.monotonic() + seconds
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text() for pid in pids):
        assert time.monotonic() < deadline, message
        time.sleep(0.01)


SERVERS = {"default": [], "4-threads": ["--threads", "4"]}


class Served:
    """``feeds serve`` with one worker, in a process group of its own, on a SQLite database of two articles;
    ``config`` is config.toml's text (by default none), ``base_url`` False leaves site.base_url unset, ``context``
    the TLS context of a client when the config sets a certificate, ``load`` False starts on the folder's database
    as it is."""

    def __init__(self, folder: Path, threads: list[str], workers: int = 1, open_files: int | None = None, config: str = "",
                 host: str = "127.0.0.1", port: int | None = None, base_url: bool = True, context: ssl.SSLContext | None = None,
                 load: bool = True):
        self.port = port or free_port()
        self.base = f"{'https' if context else 'http'}://{f'[{host}]' if ':' in host else host}:{self.port}"
        self.folder = folder
        (folder / "config.toml").write_text(config, encoding="utf-8")
        self.env = {**{name: value for name, value in os.environ.items() if name != "FEEDS_BASE_URL"},
                    "FEEDS_DATABASE_URL": f"sqlite:///{folder / 'feeds.db'}", "FEEDS_API_TOKEN": "s3cret",
                    "FEEDS_CONFIG": str(folder / "config.toml"), **({"FEEDS_BASE_URL": self.base} if base_url else {})}
        rows = [article(), article(id="2", url="https://news.example.cn/2.html", title="第二条 & “引号”", published="2024-04-05 09:30:00")]
        (folder / "in.jsonl").write_text(jsonl(rows), encoding="utf-8")
        if load:
            subprocess.run([sys.executable, "-m", "feeds", "import", str(folder / "in.jsonl")], env=self.env, check=True,
                           capture_output=True)
        self.log = folder / "server.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "feeds", "serve", "--host", host, "--port", str(self.port), "--workers", str(workers), *threads],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=None if open_files is None else functools.partial(limit_open_files, open_files),
            )
        wait_until_up(f"{self.base}/healthz", self.process, context=context)

    def stop(self, signum: int = signal.SIGTERM) -> float:
        """SIGTERM to the server, as a process manager sends it, or SIGINT to its process group, as a terminal's
        Ctrl-C does; the seconds until the server exited."""
        started = time.monotonic()
        if signum == signal.SIGINT:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        self.process.wait(timeout=60)
        return time.monotonic() - started

    def workers(self) -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        return [int(pid) for pid in found]

    def stats(self) -> dict:
        """The poll counts stored in the database, read by an app of this test's own."""
        app = create_app({"database": {"url": self.env["FEEDS_DATABASE_URL"]}, "api": {"token": "s3cret"}})
        try:
            return app.test_client().get("/admin/stats.json", headers={"Authorization": "Bearer s3cret"}).get_json()
        finally:
            app.extensions["feeds"].store.close()


def limit_open_files(soft: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def open_files_limit(pid: int) -> tuple[str, str]:
    """A process's soft and hard limits of open files, from /proc."""
    line = next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if line.startswith("Max open files"))
    return line.split()[3], line.split()[4]


@pytest.fixture(scope="module", params=list(SERVERS))
def served(request, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    server = Served(tmp_path_factory.mktemp(request.param), SERVERS[request.param])
    try:
        yield server.base, server.folder
    finally:
        server.stop()


def test_served_with_validators_date_and_head(served):
    base, _ = served
    with urllib.request.urlopen(f"{base}/feeds/all.rss") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
        assert abs(parsedate_to_datetime(response.headers["Date"]) - datetime.now(timezone.utc)) < timedelta(seconds=5)
        assert len(response.headers.get_all("Date")) == 1
        etag = response.headers["ETag"]
        length = len(response.read())
    with urllib.request.urlopen(urllib.request.Request(f"{base}/feeds/all.rss", method="HEAD")) as response:
        assert response.read() == b"" and int(response.headers["Content-Length"]) == length
        assert response.headers["ETag"] == etag
    request = urllib.request.Request(f"{base}/feeds/all.rss", headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(request)
    assert not_modified.value.code == 304 and not_modified.value.headers["Date"]
    for _ in range(3):  # answers kept for the URL do not gather a Date header per poll
        with urllib.request.urlopen(f"{base}/feeds/all.rss") as response:
            assert len(response.headers.get_all("Date")) == 1


def exchange(port: int, *requests: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Send each request on one kept-alive connection once the answer to the one before has come, as clients
    do, and read the answers."""
    found = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        buffer = b""
        for raw in requests:
            connection.sendall(raw)
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.recv(65536)
                    assert chunk, f"the server closed the connection after {len(found)} answers: {buffer[:200]!r}"
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                status_line, *lines = head.decode("latin-1").split("\r\n")
                if int(status_line.split()[1]) != 100:  # not an interim 100 Continue
                    break
            headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
            length = int(headers.get("content-length", 0))
            while len(buffer) < length:
                buffer += connection.recv(65536)
            found.append((int(status_line.split()[1]), headers, buffer[:length]))
            buffer = buffer[length:]
    return found


@pytest.mark.parametrize("name", list(SERVERS))
def test_requests_as_clients_send_them(tmp_path, name):
    """Polls on one kept-alive connection, an API write with ``Expect: 100-continue`` (curl sends it for large bodies) and one in
    chunks, and a request that is not HTTP at all: each gets its answer, and the server stays up."""
    server = Served(tmp_path, SERVERS[name])
    try:
        base, port = server.base, server.port
        check_requests(base, port)
    finally:
        server.stop()


def check_requests(base: str, port: int) -> None:
    poll = b"GET /feeds/all.json HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = exchange(port, poll, poll, poll)
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert len({body for _, _, body in answers}) == 1 and json.loads(answers[0][2])["version"] == "https://jsonfeed.org/version/1.1"

    body = json.dumps([article(id="3", url="https://news.example.cn/3.html", title="第三条", published="2024-04-06 10:00:00")]).encode()
    head = (f"POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode()
    ((status, _, answer),) = exchange(port, head + body)
    assert status == 201 and [result["id"] for result in json.loads(answer)["results"]] == ["3"]

    body = json.dumps([article(id="4", url="https://news.example.cn/4.html", title="第四条", published="2024-04-06 11:00:00")]).encode()
    chunked = (b"POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:50], body[50:]))
               + b"0\r\n\r\n")
    ((status, _, answer),) = exchange(port, chunked)
    assert status == 201 and [result["id"] for result in json.loads(answer)["results"]] == ["4"]

    ((status, _, _),) = exchange(port, b"\x16\x03\x01 this is no request\r\n\r\n")
    assert status == 400
    with urllib.request.urlopen(f"{base}/feeds/all.json") as response:
        titles = [item["title"] for item in json.loads(response.read())["items"]]
    assert titles[:2] == ["第四条", "第三条"]


@pytest.mark.parametrize(("name", "ctrl_c"), [("default", False), ("default", True), ("4-threads", False)],
                         ids=["sigterm", "ctrl-c", "4-threads-sigterm"])
def test_stopping_writes_the_last_poll_counts(tmp_path, name, ctrl_c):
    """Polls counted in memory and not yet written reach the database when the server is stopped, by SIGTERM
    from a process manager or by Ctrl-C in a terminal (SIGINT to the whole process group), with a connection
    kept open."""
    server = Served(tmp_path, SERVERS[name], workers=2)
    try:
        for _ in range(5):
            with urllib.request.urlopen(urllib.request.Request(f"{server.base}/feeds/all.rss", headers={"User-Agent": "Reader/1.0"})):
                pass
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as kept:
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert kept.recv(65536).startswith(b"HTTP/1.1 200")
            seconds = server.stop(signal.SIGINT if ctrl_c else signal.SIGTERM)
    finally:
        if server.process.poll() is None:
            server.stop()
    assert server.process.returncode == 0, server.log.read_text()
    assert seconds < 30 and "Killing" not in server.log.read_text(), server.log.read_text()  # every worker stopped by itself
    (feed,) = server.stats()["feeds"]
    assert (feed["feed"], feed["requests"]) == ("all", 5)


def test_a_worker_that_dies_is_replaced(tmp_path):
    """granian starts another worker when one dies. Each may keep as many connections open as the system allows:
    the soft limit of open files is raised to the hard one."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    server = Served(tmp_path, SERVERS["default"], workers=2, open_files=min(256, hard))
    try:
        first = server.workers()
        assert len(first) == 2
        assert open_files_limit(server.process.pid)[0] != "256"
        assert {open_files_limit(pid) for pid in first} == {open_files_limit(server.process.pid)}
        soft, hard_seen = open_files_limit(first[0])
        assert soft == hard_seen
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (now := server.workers()) == first or len(now) < 2:
            assert time.monotonic() < deadline, f"workers {now}"
            time.sleep(0.2)
        assert first[0] not in now and first[1] in now
        for _ in range(10):  # new connections: either worker may take each
            with urllib.request.urlopen(f"{server.base}/feeds/all.rss") as response:
                assert response.status == 200
    finally:
        server.stop()


@pytest.mark.parametrize("extension", ["rss", "atom"])
def test_newsboat_reads_titles_times_and_guids(served, extension, tmp_path):
    base, _ = served
    binary = debian_tool("newsboat")
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


def test_workers_of_a_killed_parent_stop_within_two_seconds_and_free_the_port(tmp_path):
    """SIGKILL to ``feeds serve`` alone (out of memory, say) leaves no worker holding the port: each writes its
    counts and exits within 2 s, and a new server can start on the same port."""
    server = Served(tmp_path, SERVERS["default"], workers=2)
    workers = server.workers()
    with urllib.request.urlopen(urllib.request.Request(f"{server.base}/feeds/all.rss", headers={"User-Agent": "Reader/1.0"})):
        pass
    server.process.kill()
    server.process.wait(timeout=10)
    wait_gone(workers, 2, "a worker outlived its parent by 2 s")
    (feed,) = server.stats()["feeds"]
    assert feed["requests"] == 1
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        again.bind(("127.0.0.1", server.port))


@pytest.mark.parametrize(("host", "message"), [
    ("127.0.0.1", "cannot listen on 127.0.0.1:{port}: Address already in use"),
])
def test_an_address_it_cannot_listen_on_is_a_clear_error(tmp_path, host, message):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "FEEDS_DATABASE_URL": f"sqlite:///{tmp_path / 'feeds.db'}", "FEEDS_CONFIG": os.devnull}
        finished = subprocess.run([sys.executable, "-m", "feeds", "serve", "--host", host, "--port", str(port)],
                                  env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1
    assert f"Error: {message.format(port=port)}" in finished.stderr and "Traceback" not in finished.stderr


def test_without_a_base_url_the_links_follow_the_port_it_serves_on(tmp_path):
    """With no site.base_url, ``feeds serve --port P`` writes http://127.0.0.1:P into the self and hub links, not
    the default port: a subscriber is sent where the feed is."""
    port = free_port()
    env = {**{name: value for name, value in os.environ.items() if name != "FEEDS_BASE_URL"},
           "FEEDS_DATABASE_URL": f"sqlite:///{tmp_path / 'feeds.db'}", "FEEDS_CONFIG": os.devnull}
    process = subprocess.Popen([sys.executable, "-m", "feeds", "serve", "--port", str(port), "--workers", "1"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz", process)
        with urllib.request.urlopen(f"{base}/feeds/all.atom") as response:
            link, body = response.headers["Link"], response.read()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert link == f'<{base}/hub>; rel="hub", <{base}/feeds/all.atom>; rel="self"'
    parsed = feedparser.parse(body)
    assert {entry["href"] for entry in parsed.feed.links if entry["rel"] in ("self", "hub")} == {f"{base}/feeds/all.atom", f"{base}/hub"}


def test_a_worker_stopped_while_its_app_is_made_leaves_at_once(tmp_path):
    """A SIGTERM that reaches a worker before granian has set its own handling (the worker is still making its app)
    ends it at once, instead of being lost until the worker is killed 30 s later. The worker is held in the making:
    a replaced worker waits for the database's write lock, which this test holds."""
    import sqlite3

    server = Served(tmp_path, SERVERS["default"], workers=2)
    try:
        first = server.workers()
        lock = sqlite3.connect(tmp_path / "feeds.db", timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the replacement's first write (store.outbox.prune) waits for it
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(server.workers()) < 2 or server.workers() == first:  # replaced: its app is being made
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.05)
        time.sleep(0.5)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1)
        lock.execute("ROLLBACK")  # the replacement goes on: without the handling it would make its app and serve on
        lock.close()
        server.process.wait(timeout=60)
        seconds = time.monotonic() - started
    finally:
        if server.process.poll() is None:
            server.stop()
    assert seconds < 10 and "Killing" not in server.log.read_text(), server.log.read_text()
