"""How fast are the hot lists? Times ``Store.rankings.top`` on a realistic volume of reads.

Builds a database with 100,000 articles and 1,000,000 read events over the last
8 days (see ``bench/_data.py`` for the data), then times, over repeated runs:
the daily and weekly rankings, the same for one category (descendants
included), ``Catalog.build`` of a hot feed (ranking + change tracking), and
recording a batch of 1,000 fresh events. Prints a Markdown table.

    python bench/ranking.py                                  # full size, SQLite
    FEEDS_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python bench/ranking.py
    python bench/ranking.py --articles 10000 --events 100000 --runs 10   # a quick run

PostgreSQL runs when ``FEEDS_TEST_DATABASE_URL`` is set (or ``--postgres URL``),
in a separate database named after it with ``_bench`` appended (created when
missing, wiped on each run), so it never disturbs a test run on the same server.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _data  # noqa: E402
from _common import cpu_model  # noqa: E402

from feeds.catalog import Catalog  # noqa: E402
from feeds.config import DatabaseSettings, Settings  # noqa: E402
from feeds.model import ReadEvent  # noqa: E402
from feeds.store import Store  # noqa: E402
from feeds.store.rankings import Rankings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100_000, help="articles to create (default 100000)")
    parser.add_argument("--events", type=int, default=1_000_000, help="read events to create (default 1000000)")
    parser.add_argument("--days", type=float, default=8, help="the events span this many days (default 8)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each query (default 30)")
    parser.add_argument("--batch", type=int, default=1_000, help="read events recorded per timed batch (default 1000)")
    parser.add_argument("--category", default="caijing", help="slug path of the category ranked (default caijing)")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "all"), default="all",
                        help="which databases (default: SQLite, and PostgreSQL when a URL is known)")
    parser.add_argument("--postgres", default=os.environ.get("FEEDS_TEST_DATABASE_URL", ""),
                        help="PostgreSQL server URL (default $FEEDS_TEST_DATABASE_URL)")
    parser.add_argument("--sqlite-path", help="build the SQLite database here and keep it (default: a temporary file)")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; Python {sys.version.split()[0]}, "
          f"SQLAlchemy {sa.__version__}", file=sys.stderr)
    results: list[tuple[str, str, float, float]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        targets = []
        if args.database in ("sqlite", "all"):
            targets.append(("SQLite", f"sqlite:///{args.sqlite_path or Path(folder) / 'bench.db'}"))
        if args.database in ("postgresql", "all") and args.postgres:
            targets.append(("PostgreSQL", _bench_database(args.postgres)))
        elif args.database == "postgresql":
            parser.error("--postgres URL or FEEDS_TEST_DATABASE_URL is needed for PostgreSQL")
        began = time.perf_counter()
        data = _data.generate(args.articles, args.events, days=args.days)
        notes.append(f"data made in {time.perf_counter() - began:.1f} s: " + ", ".join(
            f"{len(counts):,} {name} rows" for name, counts in data.buckets.items()
        ) + f"; category `{args.category}` holds {data.category_sizes.get(args.category, 0):,} articles")
        print(notes[-1], file=sys.stderr)
        for name, url in targets:
            if url.startswith("sqlite") and args.sqlite_path:
                for suffix in ("", "-wal", "-shm"):
                    Path(args.sqlite_path + suffix).unlink(missing_ok=True)
            results.extend(run(name, url, data, args, notes))
    print()
    print(f"{args.articles:,} articles, {args.events:,} read events over {args.days:g} days; "
          f"median and p95 of {args.runs} runs (after one warm-up run)")
    print()
    print("| database | operation | median ms | p95 ms |")
    print("| --- | --- | ---: | ---: |")
    for database, operation, median, p95 in results:
        print(f"| {database} | {operation} | {median:.1f} | {p95:.1f} |")
    print()
    for note in notes:
        print(f"- {note}")


def run(name: str, url: str, data: _data.Dataset, args: argparse.Namespace, notes: list[str]) -> list[tuple[str, str, float, float]]:
    if url.startswith("postgresql"):
        _wipe(url)
    store = Store(url)
    store.migrate()
    began = time.perf_counter()
    _data.load(store, data)
    loaded = time.perf_counter() - began
    _data.analyze(store)
    notes.append(f"{name}: loaded in {loaded:.1f} s, {_size(store)}")
    print(notes[-1], file=sys.stderr)
    settings = Settings(database=DatabaseSettings(url=url))  # the defaults, whatever ./config.toml says
    catalog = Catalog(store, settings)
    category = store.articles.category(args.category)
    assert category is not None, f"no category {args.category!r}"
    day, week = timedelta(hours=24), timedelta(hours=168)
    size = settings.hot.size

    def now() -> datetime:
        return datetime.now(timezone.utc)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("ranking, daily", lambda: store.rankings.top(now(), day, size)),
        ("ranking, weekly", lambda: store.rankings.top(now(), week, size)),
        (f"ranking, daily, category {args.category}", lambda: store.rankings.top(now(), day, size, category)),
        (f"ranking, weekly, category {args.category}", lambda: store.rankings.top(now(), week, size, category)),
        ("Catalog.build hot/daily (ranking + change tracking)", lambda: catalog.build(catalog.hot("daily"), size)),
    ]
    if hasattr(Store, "_top_by_threshold"):  # not in the store before the bound
        cases.append(("ranking, weekly, every article summed (the fallback)", lambda: _summing_all(store, now(), week, size)))
    rows = []
    for label, work in cases:
        median, p95 = _time(work, args.runs)
        rows.append((name, label, median, p95))
        print(f"{name}: {label}: median {median:.1f} ms, p95 {p95:.1f} ms", file=sys.stderr)
    rng = random.Random(1)
    batches = [
        [ReadEvent(article_id, at, count) for article_id, at, count in _data.events_batch(rng, args.articles, args.batch, now())]
        for _ in range(args.runs + 1)
    ]
    median, p95 = _time(lambda: store.reads.record(batches.pop()), args.runs)
    rows.append((name, f"reads.record, batch of {args.batch:,} events", median, p95))
    print(f"{name}: reads.record: median {median:.1f} ms, p95 {p95:.1f} ms", file=sys.stderr)
    store.close()
    return rows


def _summing_all(store: Store, now: datetime, window: timedelta, limit: int) -> object:
    """The ranking as it is when no bound spares the long tail (a flat spread of reads)."""
    bound = Rankings._top_by_threshold
    Rankings._top_by_threshold = lambda *args: None  # type: ignore[method-assign]
    try:
        return store.rankings.top(now, window, limit)
    finally:
        Rankings._top_by_threshold = bound  # type: ignore[method-assign]


def _time(work: Callable[[], object], runs: int) -> tuple[float, float]:
    work()  # warm-up: pages into the cache, statements into SQLAlchemy's cache
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, math.ceil(0.95 * len(times)) - 1)]


def _bench_database(server_url: str) -> str:
    """The URL of ``<database>_bench`` on the same server, created when missing."""
    url = make_url(server_url)
    bench = url.set(database=f"{url.database or 'postgres'}_bench")
    engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": bench.database}):
            conn.exec_driver_sql(f'CREATE DATABASE "{bench.database}"')
    engine.dispose()
    return bench.render_as_string(hide_password=False)


def _wipe(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


def _size(store: Store) -> str:
    if store.db.engine.dialect.name == "postgresql":
        with store.db.engine.connect() as conn:
            return "database " + conn.scalar(sa.text("SELECT pg_size_pretty(pg_database_size(current_database()))"))
    path = store.db.engine.url.database
    return f"database {os.path.getsize(path) / 2**20:.0f} MB" if path and os.path.exists(path) else "database size unknown"


if __name__ == "__main__":
    main()
