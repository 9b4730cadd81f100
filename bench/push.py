"""WebSub push: from the 201 of a new article to its delivery at every subscriber, and what the hub
costs the polling path.

`feeds serve` (2 workers, SQLite by default, `--postgres` for PostgreSQL) with 1, 100,
1,000 and 10,000 subscribers of one feed (`/feeds/all.rss`), each a distinct callback URL on a
receiver in a process of its own (asyncio, answering 204 and noting when each delivery arrived).
Subscriptions are written straight into the store, as confirmed ones, so that the run measures
distribution, not 10,000 confirmations. For each size: POST one article through the API, then
wait until every subscriber has it; latency = arrival - the moment the 201 came back. Also the
deliveries per second (subscribers / time to the last arrival) and the workers' resident memory
after the run.

In the same run, polling throughput (`wrk -t2 -c32`, cache-hit 200s of `/feeds/all.rss`) with no
subscribers and with 10,000 registered (and idle), alternating, `--rounds` times each.

    python bench/push.py                      # about 2 minutes
    python bench/push.py --postgres           # the store on PostgreSQL (a database of its own)
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
from _serve import ensure_tools, free_port, wrk  # noqa: E402

SIZES = (1, 100, 1_000, 10_000)
TOKEN = "bench"


# -- the receiver: a process of its own ------------------------------------------------------

def receive(port: int) -> None:
    """Answer every POST with 204 and note when it arrived; GET /__arrivals gives them as JSON, GET /__reset forgets."""
    arrivals: dict[str, float] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                length = next((int(f.split(":", 1)[1]) for f in fields if f.lower().startswith("content-length:")), 0)
                if length:
                    await reader.readexactly(length)
                body = b""
                if method == "POST":
                    arrivals.setdefault(target, time.time())
                elif target == "/__arrivals":
                    body = json.dumps(arrivals).encode()
                elif target == "/__reset":
                    arrivals.clear()
                writer.write(b"HTTP/1.1 %d OK\r\nContent-Length: %d\r\n\r\n" % (200 if body else 204, len(body)) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def arrivals(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__arrivals", timeout=10) as response:
        return json.loads(response.read())


# -- the service -------------------------------------------------------------------------------

def serve(folder: Path, database_url: str, port: int, config: str) -> subprocess.Popen:
    """`feeds serve` with 2 workers on ``database_url`` at ``port``, the API token set and ``config`` (TOML) added;
    once it answers."""
    path = folder / "config.toml"
    path.write_text(f'[api]\ntoken = "{TOKEN}"\n{config}', encoding="utf-8")
    env = {**os.environ, "FEEDS_DATABASE_URL": database_url, "FEEDS_BASE_URL": f"http://127.0.0.1:{port}", "FEEDS_CONFIG": str(path)}
    process = subprocess.Popen([sys.executable, "-m", "feeds", "serve", "--port", str(port), "--workers", "2"],
                               env=env, stdout=subprocess.DEVNULL, stderr=open(folder / "serve.log", "w"), start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"feeds serve did not start: {(folder / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.2)


def receiver_process(port: int) -> subprocess.Popen:
    """The receiver (``receive``) in a process of its own, at ``port``."""
    return subprocess.Popen([sys.executable, str(Path(__file__)), "--receive", str(port)])


def stop(server: subprocess.Popen, receiver: subprocess.Popen, own: c.OwnPostgres | None) -> None:
    """SIGTERM to the server's process group, the receiver ended, the benchmark's own database dropped."""
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)
    receiver.terminate()
    if own:
        own.drop()


def post_article(port: int, n: int) -> None:
    body = json.dumps({"id": f"push-{n}", "url": f"https://news.example.cn/push/{n}.html", "title": f"推送测试 {n}",
                       "content": "<p>" + "新闻正文。" * 50 + "</p>", "category": "热点/国内",
                       "published": datetime.now(timezone.utc).isoformat()}, ensure_ascii=False).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/articles", data=body,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, response.status


def subscribe_directly(database_url: str, port: int, receiver: int, count: int) -> None:
    """``count`` confirmed subscriptions of /feeds/all.rss, owed nothing yet; all others removed."""

    from feeds.store import Store
    from feeds.store.schema import websub_subscriptions

    store = Store(database_url)
    topic = f"http://127.0.0.1:{port}/feeds/all.rss"
    now = datetime.now(timezone.utc)
    with store.db.engine.begin() as conn:
        conn.execute(websub_subscriptions.delete())
        rows = [{"key": hashlib.sha256(f"{topic}\n{n}".encode()).hexdigest(), "topic": topic,
                 "callback": f"http://127.0.0.1:{receiver}/s{n}", "host": "127.0.0.1", "feed": "all", "scope": "all",
                 "secret": None, "expires": now + timedelta(days=10)}
                for n in range(count)]
        for start in range(0, len(rows), 1000):
            conn.execute(websub_subscriptions.insert(), rows[start:start + 1000])
    store.close()


def resident_mb(root: int) -> float:
    """Resident memory of the gunicorn master and its workers."""
    total = 0
    for pid in [root, *map(int, subprocess.run(["pgrep", "-P", str(root)], capture_output=True, text=True).stdout.split())]:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="the store on PostgreSQL (--postgres-server)")
    parser.add_argument("--postgres-server", default=c.DEFAULT_POSTGRES)
    parser.add_argument("--concurrency", type=int, default=16, help="websub.concurrency (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds per case (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk round (default 5)")
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        receive(args.receive)
        return
    c.exit_cleanly_on_sigterm()
    has_wrk, _ = ensure_tools(skip_install=False)
    own = c.OwnPostgres(args.postgres_server, "feeds_bench_push") if args.postgres else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        database_url = own.create() if own else f"sqlite:///{folder / 'feeds.db'}"
        port, receiver_port = free_port(), free_port()
        receiver = receiver_process(receiver_port)
        server = serve(folder, database_url, port, f'[websub]\nallow_callbacks = ["127.0.0.1/32"]\nmax_per_host = 100000\n'
                                                   f"max_subscriptions = 100000\nconcurrency = {args.concurrency}\n")
        rows, polls = [], []
        try:
            time.sleep(0.5)
            for n in range(20):  # a feed with some history
                post_article(port, -1 - n)
            for size in SIZES:
                subscribe_directly(database_url, port, receiver_port, size)
                urllib.request.urlopen(f"http://127.0.0.1:{receiver_port}/__reset").close()
                time.sleep(1.5)  # the hub's threads have looked and found nothing owed
                began = time.time()
                post_article(port, size)
                acknowledged = time.time()
                deadline = time.monotonic() + 120
                while len(found := arrivals(receiver_port)) < size and time.monotonic() < deadline:
                    time.sleep(0.05)
                latencies = sorted(moment - acknowledged for moment in found.values())
                last = latencies[-1] if latencies else float("nan")
                rows.append((f"{size:,}", f"{len(found):,}", f"{(acknowledged - began) * 1000:.0f}",
                             f"{statistics.median(latencies) * 1000:.0f}", f"{c.percentile(latencies, 0.99) * 1000:.0f}",
                             f"{last * 1000:.0f}", f"{len(found) / last:,.0f}" if latencies else "", f"{resident_mb(server.pid):.0f}"))
                c.log(f"{size} subscribers: {rows[-1]}")
            if has_wrk:
                url = f"http://127.0.0.1:{port}/feeds/all.rss"
                wrk_args = argparse.Namespace(wrk_threads=2, connections=32)
                wrk(url, {}, wrk_args, 1)  # warm-up
                for _ in range(args.rounds):
                    for label, count in (("none", 0), ("10,000 idle", 10_000)):
                        subscribe_directly(database_url, port, receiver_port, count)
                        time.sleep(1.5)
                        result = wrk(url, {}, wrk_args, args.duration)
                        polls.append((label, result["rps"], result["p50"], result["p99"]))
                        c.log(f"polling with {label} subscribers: {result['rps']:,.0f} req/s {result['bad']}")
        finally:
            stop(server, receiver, own)

    print(c.header())
    print()
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"`feeds serve`, 2 workers, {store}, websub.concurrency {args.concurrency}; subscribers of /feeds/all.rss on one "
          f"local receiver; times from the 201 of the new article, ms:")
    print()
    print(c.table(("subscribers", "delivered", "POST to 201", "p50", "p99", "last", "deliveries/s", "server RSS MB"), rows,
                  "rrrrrrrr"))
    if polls:
        print()
        print(f"Polling `/feeds/all.rss` (cache-hit 200s, wrk -t2 -c32 -d{args.duration:g}s), {args.rounds} rounds alternating:")
        print()
        summary = []
        for label in ("none", "10,000 idle"):
            mine = [p for p in polls if p[0] == label]
            summary.append((label, f"{statistics.median(p[1] for p in mine):,.0f}", f"{max(p[1] for p in mine):,.0f}", ", ".join(f"{p[1]:,.0f}" for p in mine),
                            f"{statistics.median(p[2] for p in mine):.2f}", f"{statistics.median(p[3] for p in mine):.2f}"))
        print(c.table(("subscribers", "median req/s", "best round", "rounds", "p50 ms", "p99 ms"), summary, "lrrlrr"))
        for name, pick in (("medians", statistics.median), ("best rounds", max)):
            ratio = pick(p[1] for p in polls if p[0] != "none") / pick(p[1] for p in polls if p[0] == "none")
            print(f"\nwith 10,000 subscribers ÷ none, {name}: {ratio:.2f}")
        print("\n(a round in which all of wrk's connections land on one worker runs at about half the rate: compare best rounds)")
    else:
        print("\nwrk is not installed: polling throughput not measured")


if __name__ == "__main__":
    main()
