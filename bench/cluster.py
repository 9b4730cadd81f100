"""Several instances on one PostgreSQL and one Redis: polling throughput and write-to-visible latency.

    FEEDS_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
    FEEDS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 python bench/cluster.py [--seconds 10] [--writes 20]

For 1, 2 and 4 instances (`feeds serve`, gunicorn, 1 worker x 4 threads each) it loads the
bundled sample into a database of its own (`<database>_bench_cluster`, wiped each run) and a
Redis database of its own (15, flushed), then measures, and prints as a Markdown table:

- cache hits: GET /feeds/all.rss, rendered once and then served from Redis (one version query each);
- 304s: the same with If-None-Match of the current ETag;
- both with one wrk per instance in parallel (1 thread, 8 connections each), requests per second summed;
- write to visible: POST one article through the first instance, poll the last one until its
  feed shows it; median and p95 over --writes writes.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feeds.config import load_settings  # noqa: E402
from feeds.ingest import load_sample  # noqa: E402
from feeds.store import Store  # noqa: E402
from tests.test_cluster import Instance, guid, guids, news, own_database, own_redis  # noqa: E402

REDIS_NUMBER = 15
CONNECTIONS = 8  # per instance


def wrk() -> str:
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], **quiet, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "wrk"], **quiet, env=env)
        found = shutil.which("wrk")
    if found is None:
        sys.exit("wrk is not installed and could not be installed with apt-get (needs root and Debian's packages)")
    return found


def throughput(binary: str, instances: list[Instance], path: str, seconds: int, headers: dict[str, str]) -> tuple[float, int]:
    """Requests per second summed over one wrk per instance run at once, and the non-2xx/3xx answers."""
    flags = [arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")]
    runs = [
        subprocess.Popen([binary, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", *flags, instance.base + path],
                         stdout=subprocess.PIPE, text=True)
        for instance in instances
    ]
    rate, errors = 0.0, 0
    for run in runs:
        out, _ = run.communicate()
        rate += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(bad.group(1)) if bad else 0
    return rate, errors


def write_to_visible(instances: list[Instance], writes: int, run: int) -> list[float]:
    """Seconds from sending a POST to the first instance until the last instance's feed shows it."""
    writer, reader = instances[0], instances[-1]
    seconds = []
    for n in range(writes):
        article_id = f"bench-{run}-{n}"
        started = time.perf_counter()
        answer = writer.request("POST", "/api/articles", news(article_id, published=f"2040-01-01 {run:02}:{n // 60:02}:{n % 60:02}"))
        assert answer.status == 201, answer.body
        for _ in range(10_000):
            if guids(reader.get("/feeds/all.json?limit=1")) == [guid(article_id)]:
                break
        else:
            raise AssertionError(f"{article_id} never showed on {reader.base}")
        seconds.append(time.perf_counter() - started)
    return seconds


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--writes", type=int, default=20, help="writes timed for write-to-visible")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    if not (os.environ.get("FEEDS_TEST_DATABASE_URL") and os.environ.get("FEEDS_TEST_REDIS_URL")):
        sys.exit("set FEEDS_TEST_DATABASE_URL (PostgreSQL) and FEEDS_TEST_REDIS_URL (Redis)")
    binary = wrk()
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="feeds-bench-"))
    with own_database("bench_cluster") as database, own_redis(REDIS_NUMBER) as (redis_client, redis_url):
        url = database.render_as_string(hide_password=False)
        store = Store(url)
        store.migrate()
        load_sample(store, load_settings(overrides={"database": {"url": url}}, environ={}), datetime.now(timezone.utc))
        store.close()
        for run, count in enumerate(args.instances):
            redis_client.flushdb()
            instances = [Instance(folder, url, redis_url).start() for _ in range(count)]
            try:
                for instance in instances:
                    instance.wait_until_up()
                warm = instances[0].get("/feeds/all.rss")
                assert warm.status == 200
                hits, hit_errors = throughput(binary, instances, "/feeds/all.rss", args.seconds, {})
                not_modified, nm_errors = throughput(binary, instances, "/feeds/all.rss", args.seconds,
                                                     {"If-None-Match": warm.headers["ETag"]})
                latency = write_to_visible(instances, args.writes, run)
            finally:
                for instance in instances:
                    instance.stop()
            rows.append((count, hits, not_modified, hit_errors + nm_errors, statistics.median(latency), percentile(latency, 0.95)))
            print(f"{count} instance(s) done", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{os.cpu_count()} CPUs; each instance gunicorn 1 worker x 4 threads; wrk 1 thread x {CONNECTIONS} connections per "
          f"instance for {args.seconds} s; /feeds/all.rss of the bundled sample; write to visible over {args.writes} writes.\n")
    print("| instances | cache hits (req/s) | 304 (req/s) | errors | write to visible median (ms) | p95 (ms) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for count, hits, not_modified, errors, median, p95 in rows:
        print(f"| {count} | {hits:,.0f} | {not_modified:,.0f} | {errors} | {median * 1000:.1f} | {p95 * 1000:.1f} |")


if __name__ == "__main__":
    main()
