"""What does counting polls cost? Times the feed route with and without ``PollCounter.record``.

Serves the bundled sample from a temporary SQLite database through Flask's test client
(no network), a 200 and a 304 (If-None-Match) of /feeds/all.rss, from many distinct
pollers, an aggregator among them. Runs with and without counting alternate, in the
same process, so both see the same machine; prints a Markdown table of the median and
p95 microseconds per request.

    python bench/stats_overhead.py                  # 20 rounds of 500 requests each way
    python bench/stats_overhead.py --rounds 5 --requests 200
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from feeds import create_app
from feeds.ingest import load_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds (default 20)")
    parser.add_argument("--requests", type=int, default=500, help="requests per round and case (default 500)")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the access log line would cost more than what is measured

    with tempfile.TemporaryDirectory() as folder:
        app = create_app({"database": {"url": f"sqlite:///{Path(folder) / 'bench.db'}"}, "stats": {"flush_seconds": 3600}})
        services = app.extensions["feeds"]
        load_sample(services.store, services.settings, datetime.now(timezone.utc))
        client = app.test_client()
        etag = client.get("/feeds/all.rss").headers["ETag"]
        counting = services.stats.record

        def skip(*_: object, **__: object) -> None:
            pass

        def run(case: str, count: bool) -> float:
            """Microseconds per request of one round."""
            services.stats.record = counting if count else skip  # type: ignore[method-assign]
            headers = {"If-None-Match": etag} if case == "304" else {}
            started = time.perf_counter()
            for n in range(args.requests):
                user_agent = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 123 subscribers)" if n % 10 == 0 else "newsboat/2.30"
                client.get("/feeds/all.rss", headers={**headers, "User-Agent": user_agent},
                           environ_base={"REMOTE_ADDR": f"10.0.{n // 256 % 256}.{n % 256}"})
            return (time.perf_counter() - started) / args.requests * 1e6

        results: dict[tuple[str, bool], list[float]] = {}
        for case in ("200", "304"):
            run(case, True), run(case, False)  # warm-up
            for _ in range(args.rounds):
                for count in (False, True):
                    results.setdefault((case, count), []).append(run(case, count))
        services.stats.record = counting  # type: ignore[method-assign]
        started = time.perf_counter()
        for n in range(args.rounds * args.requests):
            counting("all", f"10.1.{n // 256 % 256}.{n % 256}", "newsboat/2.30", 200)
        record_us = (time.perf_counter() - started) / (args.rounds * args.requests) * 1e6
        counted = 2 * (args.rounds + 1) * args.requests + args.rounds * args.requests
        flush_started = time.perf_counter()
        services.stats.flush()
        flush_ms = (time.perf_counter() - flush_started) * 1e3
        services.store.close()

    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; {args.rounds} rounds x {args.requests} requests", file=sys.stderr)
    print("| response | counting | median µs/request | p95 µs/request |")
    print("| --- | --- | ---: | ---: |")
    for (case, count), times in results.items():
        p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
        print(f"| {case} | {'on' if count else 'off'} | {statistics.median(times):.1f} | {p95:.1f} |")
    for case in ("200", "304"):
        cost = statistics.median(results[case, True]) - statistics.median(results[case, False])
        print(f"| {case} | cost of counting | {cost:+.1f} | |")
    print(f"| — | PollCounter.record alone | {record_us:.1f} | |")
    print(f"\nflush of everything counted ({counted} polls, one transaction): {flush_ms:.1f} ms")


if __name__ == "__main__":
    main()
