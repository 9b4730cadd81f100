"""Operations: GET /metrics (who may read it, what it counts, several server workers),
one log line per request, and errors logged in full but never shown."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import select
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from feeds import create_app
from feeds.config import load_settings
from feeds.errors import ConfigError
from feeds.metrics import BufferedLines
from tests.conftest import article, jsonl, make_settings
from tests.test_serve import free_port, wait_until_up

TOKEN = {"Authorization": "Bearer s3cret"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape by name and labels (the format is checked by parsing it)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def test_metrics_count_requests_by_rule_renders_cache_and_imports(client, runner, write_jsonl):
    before = scrape(client)
    assert client.post("/api/articles", json=[article(), article(id="2", url="https://news.example.cn/2.html")],
                       headers=TOKEN).status_code == 201
    assert client.post("/api/articles", json=[article(title=" "), article(id="3", published="never")], headers=TOKEN).status_code == 422
    runner.invoke("import", write_jsonl([article(), article(id="4", url="https://news.example.cn/4.html"), "{bad"]))
    for _ in range(3):
        assert client.get("/feeds/all.rss").status_code == 200
    assert client.get("/feeds/source/hulianwang.atom").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/no/such/other/page").status_code == 404
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("feeds_http_requests_total", route="/feeds/<path:feed_path>", status="200") == 4
    assert grew("feeds_http_requests_total", route="unmatched", status="404") == 2  # one series, whatever the path
    assert not any("/no/such" in str(labels) for _, labels in after)
    assert grew("feeds_http_requests_total", route="/api/articles", status="422") == 1
    assert grew("feeds_http_request_duration_seconds_count", route="/feeds/<path:feed_path>") == 4
    assert grew("feeds_rendered_cache_total", result="miss") == 2
    assert grew("feeds_rendered_cache_total", result="hit") == 2
    assert grew("feeds_feed_render_seconds_count", format="rss") == 1
    assert grew("feeds_feed_render_seconds_count", format="atom") == 1
    assert grew("feeds_store_query_seconds_count") > 0
    assert grew("feeds_articles_imported_total", via="api", result="created") == 2
    assert grew("feeds_articles_imported_total", via="api", result="rejected") == 2
    assert grew("feeds_articles_imported_total", via="cli", result="created") == 1
    assert grew("feeds_articles_imported_total", via="cli", result="unchanged") == 1
    assert grew("feeds_articles_imported_total", via="cli", result="rejected") == 1
    assert value(after, "feeds_articles_stored") == 3


@pytest.mark.parametrize("address, allowed", [
    ("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.5", False), ("192.168.1.1", False), ("2001:db8::1", False), ("", False),
])
def test_metrics_only_to_allowed_addresses(client, address, allowed):
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == (200 if allowed else 403)
    if not allowed:
        assert response.mimetype == "text/plain" and b"feeds_" not in response.data


def test_a_forwarded_for_header_neither_admits_nor_is_taken_for_local(client):
    # An outsider claiming to be local is refused; so is anyone reaching us through a proxy
    # on this host, whose own loopback address the peer is.
    outsider = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}, headers={"X-Forwarded-For": "127.0.0.1"})
    through_proxy = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    forwarded = client.get("/metrics", headers={"Forwarded": "for=203.0.113.9"})
    assert (outsider.status_code, through_proxy.status_code, forwarded.status_code) == (403, 403, 403)


def test_metrics_allow_takes_networks(sqlite_url):
    app = create_app(make_settings(sqlite_url, metrics={"allow": ["10.0.0.0/8"]}))
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback is no longer in the list
    app.extensions["feeds"].store.close()


@pytest.mark.parametrize("allow", [["localhost"], ["10.0.0.0/33"], [5]])
def test_bad_metrics_allow_names_the_key(allow):
    with pytest.raises(ConfigError, match=r"metrics\.allow"):
        load_settings(overrides={"metrics": {"allow": allow}}, environ={})


def test_one_log_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="feeds.access"):
        body = client.get("/feeds/all.json").data
        client.head("/feeds/all.rss")
        client.get("/feeds/a%22b%20c%0Ad=e.rss")
    lines = [record.getMessage() for record in caplog.records if record.name == "feeds.access"]
    assert len(lines) == 3
    assert re.fullmatch(rf"method=GET path=/feeds/all\.json status=200 duration_ms=\d+\.\d bytes={len(body)} client=127\.0\.0\.1",
                        lines[0])
    assert " bytes=0 " in lines[1] and lines[1].startswith("method=HEAD ")
    # a hostile path stays on one line and cannot forge keys
    assert lines[2].startswith('method=GET path="/feeds/a\\"b c\\nd=e.rss" status=404 ')


def buffered(interval: float = 0.2):
    """A BufferedLines handler on a pipe of its own, and a reader of what reached the pipe."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    handler = BufferedLines(write_end, interval)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"feeds.test.{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def written() -> bytes:
        try:
            return os.read(read_end, 1 << 20)
        except BlockingIOError:
            return b""

    return logger, handler, written


def test_log_lines_are_written_in_batches_in_order_and_at_once_for_a_warning():
    logger, handler, written = buffered(interval=0.2)
    for n in range(3):
        logger.info("line %d 中文", n)
    assert written() == b""  # held: a poll costs no system call
    time.sleep(0.5)
    assert written() == "INFO line 0 中文\nINFO line 1 中文\nINFO line 2 中文\n".encode()
    logger.info("before")
    logger.warning("trouble")
    assert written() == b"INFO before\nWARNING trouble\n"  # a warning goes out at once, after what came first
    logger.info("at exit")
    handler.flush()  # what logging.shutdown does at exit
    assert written() == b"INFO at exit\n"


def test_log_batches_never_split_a_line_past_pipe_buf(monkeypatch):
    logger, handler, written = buffered(interval=60)
    lines = [f"{n:04d} " + "x" * 300 for n in range(100)]  # 30 KB: several writes
    for line in lines:
        logger.info(line)
    chunks = []
    real_write = os.write

    def recording_write(fd, data):
        chunks.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", recording_write)
    handler.flush()
    monkeypatch.undo()
    assert len(chunks) > 1 and all(len(chunk) <= select.PIPE_BUF and chunk.endswith(b"\n") for chunk in chunks)
    received = b""
    while part := written():
        received += part
    assert received.decode().splitlines() == [f"INFO {line}" for line in lines]


def test_access_lines_are_made_when_written_and_the_same_answer_is_one_line_a_batch():
    logger, handler, written = buffered(interval=60)
    logger.info("before")
    for seconds in (0.001, 0.004, 0.002):
        handler.access(1712220000.25, ("GET", "/feeds/all.rss", 304, 0, "127.0.0.1"), seconds)
    handler.access(1712220000.5, ("GET", "/feeds/all.rss", 200, 9295, "127.0.0.1"), 0.003)
    handler.access(1712220000.75, ("HEAD", "/feeds/a b.rss", 200, 0, "::1"), 0.001)
    logger.info("after")
    handler.flush()
    lines = written().decode().splitlines()
    stamp = handler._stamps.stamp(1712220000.25)
    assert lines == [
        "INFO before",
        f"{stamp} INFO feeds.access method=GET path=/feeds/all.rss status=304 duration_ms=4.0 bytes=0 client=127.0.0.1 count=3",
        f"{handler._stamps.stamp(1712220000.5)} INFO feeds.access method=GET path=/feeds/all.rss status=200 duration_ms=3.0 "
        "bytes=9295 client=127.0.0.1",
        f'{handler._stamps.stamp(1712220000.75)} INFO feeds.access method=HEAD path="/feeds/a b.rss" status=200 duration_ms=1.0 '
        "bytes=0 client=::1",
        "INFO after",
    ]
    assert stamp.endswith(",250")


def test_a_forked_child_does_not_write_its_parents_lines_again():
    logger, handler, written = buffered(interval=60)
    logger.info("parent's")
    pid = os.fork()
    if pid == 0:  # the child: log one line of its own and flush, as a server worker would at exit
        logger.info("child's")
        handler.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    assert written() == b"INFO child's\n"
    handler.flush()
    assert written() == b"INFO parent's\n"


def test_an_error_is_logged_with_its_trace_and_not_shown(app, caplog):
    def broken() -> str:
        raise RuntimeError("secret internals: password=hunter2")

    app.add_url_rule("/broken", "broken", broken)
    app.add_url_rule("/api/broken", "api_broken", broken)
    client = app.test_client()
    with caplog.at_level(logging.INFO):
        page, api = client.get("/broken"), client.get("/api/broken")
    assert page.status_code == api.status_code == 500
    assert page.get_data(as_text=True) == "Internal error; it has been logged.\n"
    assert api.json == {"error": "Internal error; it has been logged."}
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 2 and all(record.exc_info and record.exc_info[0] is RuntimeError for record in errors)
    assert "secret internals" in caplog.text and "Traceback" in caplog.text
    access = [record.getMessage() for record in caplog.records if record.name == "feeds.access"]
    assert [line.split()[2] for line in access] == ["status=500", "status=500"]


@pytest.mark.parametrize("multiprocess", [True, False], ids=["multiprocess-dir", "per-process"])
def test_server_workers_share_their_counts_through_the_multiprocess_dir(tmp_path, multiprocess):
    """Two workers: with PROMETHEUS_MULTIPROC_DIR every scrape counts every worker's requests
    and a `feeds import` run beside them, and `feeds serve` empties the directory first;
    without it, a scrape shows the counts of the worker that answered."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FEEDS_DATABASE_URL": f"sqlite:///{tmp_path / 'feeds.db'}", "FEEDS_BASE_URL": base,
           "FEEDS_CONFIG": os.devnull}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if multiprocess:
        (tmp_path / "metrics").mkdir()
        (tmp_path / "metrics" / "counter_999999.db").write_bytes(b"stale, from an earlier run")
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    process = subprocess.Popen([sys.executable, "-m", "feeds", "serve", "--port", str(port), "--workers", "2"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_up(f"{base}/healthz", process)
        (tmp_path / "in.jsonl").write_text(jsonl([article()]), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "feeds", "import", str(tmp_path / "in.jsonl")], env=env, check=True, capture_output=True)
        seen = []

        def polled() -> float:
            with urllib.request.urlopen(f"{base}/metrics") as response:
                found = samples(response.read().decode())
            seen.append(value(found, "feeds_http_requests_total", route="/feeds/<path:feed_path>", status="200"))
            return value(found, "feeds_articles_imported_total", via="cli", result="created")

        for polls in range(1, 61):  # new connections each time: the kernel spreads them over both workers
            with urllib.request.urlopen(f"{base}/feeds/all.rss") as response:
                assert response.status == 200
            polled()
            assert seen[-1] <= polls
        time.sleep(1.5)  # each worker adds what it counted to the shared files at least once a second
        imported = polled()
    finally:
        process.terminate()
        process.wait(timeout=30)
    if multiprocess:
        assert seen[-1] == 60 and imported == 1  # every worker's requests, and the import's
    else:  # each worker counts its own requests; the import ran in a process of its own
        assert max(seen) <= 60 and imported == 0


def test_request_durations_reach_prometheus_as_observe_would_put_them():
    """Requests are counted in memory and added to their series in bulk (metrics.Pending); the buckets, the
    sum and the count are what prometheus_client's own observe() gives for the same durations."""
    from prometheus_client import CollectorRegistry, Histogram

    from feeds.metrics import REQUEST_SECONDS, Pending, _request_series

    durations = [0.0001, 0.004, 0.005, 0.0051, 0.3, 2.5, 11.0, 99.0]
    reference = Histogram("reference_seconds", "", registry=CollectorRegistry())
    for seconds in durations:
        reference.observe(seconds)
    counter, histogram = _request_series("/test/<bulk>", 200)
    pending = Pending()
    for seconds in durations:
        pending.request("/test/<bulk>", 200, seconds)
    pending.flush()

    def shown(samples, name):
        return sorted((sample.name.replace(name, ""), sample.labels.get("le"), sample.value) for sample in samples
                      if not sample.name.endswith("_created"))

    ours = [sample for sample in REQUEST_SECONDS.collect()[0].samples if sample.labels.get("route") == "/test/<bulk>"]
    assert shown(ours, "feeds_http_request_duration_seconds") == shown(reference.collect()[0].samples, "reference_seconds")
    assert counter._value.get() == len(durations)


def test_cache_hits_alone_reach_prometheus_within_the_interval():
    """A hub delivery may find its feed rendered before the process has answered any request."""
    from feeds.metrics import CACHE_HITS, Pending

    before = CACHE_HITS._value.get()
    pending = Pending(interval=0.05)
    pending.hit()
    deadline = time.monotonic() + 10
    while CACHE_HITS._value.get() == before:
        assert time.monotonic() < deadline, "the hit was never added"
        time.sleep(0.02)
    assert CACHE_HITS._value.get() == before + 1
