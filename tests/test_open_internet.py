"""`feeds serve` with nothing in front, against the clients the open internet sends: heads that never end,
connections that idle, bodies too large to read, heads too large to keep, requests pipelined in one write,
thousands of idle connections at once; and its processes killed as supervisors kill them. Each limit is set
short in config.toml so that the suite stays fast."""
from __future__ import annotations

import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest

from tests.conftest import debian_tool, free_port
from tests.test_serve import Served, wait_gone

HEADER_TIMEOUT = 1  # seconds: server.header_timeout of these servers
MAX_BODY = 100_000  # api.max_body_bytes
CONFIG = f"[server]\nheader_timeout = {HEADER_TIMEOUT}\nmax_head_bytes = 16384\n[api]\nmax_body_bytes = {MAX_BODY}\n"
AUTHORIZED = b"Authorization: Bearer s3cret\r\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("open"), [], workers=2, config=CONFIG)
    try:
        yield server
    finally:
        server.stop()


def connect(server: Served) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=HEADER_TIMEOUT + 10)


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def answers(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The HTTP/1.1 answers in ``raw``, in order: status, headers (lower-cased names) and body."""
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
        length = int(headers.get("content-length", 0))
        found.append((int(status_line.split()[1]), headers, raw[:length]))
        raw = raw[length:]
    return found


def workers_memory(server: Served) -> int:
    """The resident memory of the server's workers, in bytes."""
    total = 0
    for pid in server.workers():
        status = Path(f"/proc/{pid}/status").read_text()
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
    return total


def test_heads_that_never_end_are_closed_after_the_header_timeout(served: Served) -> None:
    started = time.monotonic()
    connections = [connect(served) for _ in range(50)]
    for connection in connections:
        connection.sendall(b"GET /feeds/all.rss HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    for connection in connections:
        assert read_until_closed(connection) == b""  # closed, no answer
        connection.close()
    assert time.monotonic() - started < HEADER_TIMEOUT + 8


def test_an_idle_kept_alive_connection_is_closed(served: Served) -> None:
    with connect(served) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        ((status, _, body),) = answers(read_until_closed(connection))
    assert (status, body) == (200, b"ok\n")
    assert HEADER_TIMEOUT - 0.5 < time.monotonic() - started < HEADER_TIMEOUT + 8


def test_a_poll_is_answered_while_thousands_of_connections_idle(served: Served) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    idle = []
    try:
        for n in range(5000):  # past granian's defaults (1,024 a server) and its listen backlog
            connection = connect(served)
            if n % 2:
                connection.sendall(b"GET /feeds/all.rss HTTP/1.1\r\nHost: x\r\n")  # half a head
            idle.append(connection)
        with urllib.request.urlopen(f"{served.base}/feeds/all.rss", timeout=5) as response:
            assert response.status == 200 and feedparser.parse(response.read()).entries
    finally:
        for connection in idle:
            connection.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_head_over_the_limit_is_431(served: Served) -> None:
    with connect(served) as connection:
        connection.sendall(b"GET /feeds/all.rss HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        ((status, _, _),) = answers(read_until_closed(connection))
    assert status == 431


def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    paths = ["/healthz", "/feeds/all.json?limit=1", "/feeds/all.rss", "/nothing-here", "/feeds/all.json?limit=2"] * 2
    with connect(served) as connection:
        connection.sendall(b"".join(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for path in paths))
        found = answers(read_until_closed(connection))
    assert [status for status, _, _ in found] == [200, 200, 200, 404, 200] * 2
    assert [len(json.loads(body)["items"]) for status, headers, body in found if headers["content-type"].startswith("application/feed+json")] == [1, 2] * 2


@pytest.mark.parametrize(("authorization", "status"), [(AUTHORIZED, 413), (b"", 401), (b"Authorization: Bearer wrong\r\n", 403)])
def test_a_large_body_is_answered_from_its_head_without_being_read(served: Served, authorization: bytes, status: int) -> None:
    """400 MB announced, none sent: the answer comes at once, and the server closes the connection rather than read it."""
    with connect(served) as connection:
        connection.sendall(b"POST /api/articles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + authorization
                           + b"Content-Length: 400000000\r\n\r\n")
        found = answers(read_until_closed(connection))
    assert [answered for answered, _, _ in found] == [status]


def test_a_chunked_body_is_cut_at_the_limit_and_memory_stays_flat(served: Served) -> None:
    before = workers_memory(served)
    chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
    sent = 0
    with connect(served) as connection:
        connection.sendall(b"POST /api/articles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + AUTHORIZED
                           + b"Transfer-Encoding: chunked\r\n\r\n")
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(read_until_closed(connection)))
        reader.start()
        try:
            while sent < 200 * 1024 * 1024:  # 200 MB, unless the server stops taking it
                connection.sendall(chunk)
                sent += len(chunk)
        except OSError:  # closed or reset by the server: it read no further
            pass
        reader.join(30)
    ((status, _, body),) = answers(received[0])
    assert status == 413 and b"api.max_body_bytes" in body, body
    assert sent < 100 * 1024 * 1024
    assert workers_memory(served) - before < 30 * 1024 * 1024


def test_http2_in_the_clear_is_not_spoken(served: Served) -> None:
    """HTTP/2 with prior knowledge (h2c) would pass the HTTP/1 timeouts: it gets no HTTP/2 answer."""
    curl = debian_tool("curl")
    done = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--max-time", "10",
                           "--http2-prior-knowledge", f"{served.base}/healthz"], capture_output=True, text=True)
    assert not done.stdout.startswith("200"), done.stdout


def test_ipv6_listens(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    server = Served(tmp_path, [], host="::1", base_url=False)
    try:
        with urllib.request.urlopen(f"http://[::1]:{server.port}/feeds/all.atom") as response:
            parsed = feedparser.parse(response.read())
    finally:
        server.stop()
    assert {link["href"] for link in parsed.feed.links if link["rel"] == "self"} == {f"http://[::1]:{server.port}/feeds/all.atom"}


def test_after_a_sigkill_of_the_whole_group_a_restart_answers_at_once_and_keeps_answering(tmp_path: Path) -> None:
    """What a supervisor does on stop, then start: the old workers are gone at once, and from the moment the new
    server answers every poll succeeds, none refused or reset."""
    first = Served(tmp_path, [], workers=2)
    old_workers = first.workers()
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    wait_gone(old_workers, 2, "a worker outlived its killed group by 2 s")
    second = Served(tmp_path, [], workers=2, port=first.port, load=False)  # at once, as a supervisor restarts
    try:
        failures = []
        deadline = time.monotonic() + 3
        polls = 0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{second.base}/feeds/all.rss", timeout=5) as response:
                    assert response.status == 200
            except OSError as exc:
                failures.append(repr(exc))
            polls += 1
        assert polls > 50 and failures == []
    finally:
        second.stop()


def test_a_key_under_a_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    openssl = debian_tool("openssl")
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-passout", "pass:secret", "-keyout", str(key),
                    "-out", str(certificate), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    (tmp_path / "config.toml").write_text(f'[server]\ntls_certificate = "{certificate}"\ntls_key = "{key}"\n', encoding="utf-8")
    env = {**os.environ, "FEEDS_CONFIG": str(tmp_path / "config.toml"), "FEEDS_DATABASE_URL": f"sqlite:///{tmp_path / 'feeds.db'}"}
    done = subprocess.run([sys.executable, "-m", "feeds", "serve", "--port", str(free_port())], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and "a key must not need a passphrase" in done.stderr and "Traceback" not in done.stderr


def test_tls_with_http2_and_links_that_say_https(tmp_path: Path) -> None:
    openssl = debian_tool("openssl")
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(certificate),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    context = ssl.create_default_context(cafile=str(certificate))
    server = Served(tmp_path, [], config=f'[server]\ntls_certificate = "{certificate}"\ntls_key = "{key}"\nmax_head_bytes = 16384\n',
                    base_url=False, context=context)
    curl = debian_tool("curl")
    try:
        over_http2 = [curl, "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", "--max-time", "10", "--http2",
                      "--cacert", str(certificate), f"https://127.0.0.1:{server.port}/healthz"]
        assert subprocess.run(over_http2, capture_output=True, text=True).stdout == "200 2"
        large_head = subprocess.run([*over_http2, "-H", "X-Big: " + "a" * 40_000], capture_output=True, text=True).stdout
        assert not large_head.startswith("200"), large_head  # the head-size limit holds over HTTP/2 too
        with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/feeds/all.atom", context=context) as response:
            parsed = feedparser.parse(response.read())
        offered = ssl.create_default_context(cafile=str(certificate))
        offered.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
                offered.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            negotiated = tls.selected_alpn_protocol()
    finally:
        server.stop()
    assert {link["href"] for link in parsed.feed.links if link["rel"] == "self"} == {f"https://127.0.0.1:{server.port}/feeds/all.atom"}
    assert negotiated == "h2"
