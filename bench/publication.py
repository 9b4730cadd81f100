"""Publication delay: from an article's due time to its first public answer and to its WebSub delivery.

`feeds serve` (2 workers, SQLite by default, `--postgres` for PostgreSQL) on a store of 1,000
articles and on one of 1,000,000 (bulk-loaded by ``_data.py``), with one confirmed subscriber of
`/feeds/all.rss` (a receiver in a process of its own, from ``push.py``). Each round sends one
article through the API:

- scheduled: its `published` time 2 s ahead. Delay = the first poll of `/feeds/all.rss` that holds
  it (polled every 5 ms from the 201 on) minus the due time, and its arrival at the subscriber minus
  the due time.
- written now (the baseline, same run and server): `published` now. Delay = the same, from the 201.

Also the cost of what each serving process asks once a second: ``Articles.next_due`` (two partial
indexes), timed in process against the same store, beside the poll's version lookup.

    python bench/publication.py                 # SQLite; about 3 minutes
    python bench/publication.py --postgres      # the store on PostgreSQL (a database of its own)
    python bench/publication.py --sizes 1000    # a quick run
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
import _data  # noqa: E402
from _serve import free_port  # noqa: E402
from push import TOKEN, arrivals, receiver_process, serve, stop, subscribe_directly  # noqa: E402

from feeds.store import Store  # noqa: E402

AHEAD = 2.0  # seconds between sending a scheduled article and its time
POLL_EVERY = 0.005


def post(port: int, article_id: str, published: datetime) -> float:
    """Send one article; the moment its 201 came back."""
    body = json.dumps({"id": article_id, "url": f"https://news.example.cn/p/{article_id}.html", "title": f"定时发布 {article_id}",
                       "content": "<p>" + "新闻正文。" * 50 + "</p>", "category": "热点/国内",
                       "published": published.isoformat()}, ensure_ascii=False).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/articles", data=body,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, response.status
    return time.time()


def first_public(port: int, title: str, deadline: float) -> float:
    """The moment a poll of /feeds/all.rss first holds ``title``."""
    while time.time() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/feeds/all.rss", timeout=10) as response:
            if title.encode() in response.read():
                return time.time()
        time.sleep(POLL_EVERY)
    raise RuntimeError(f"{title} was not public by the deadline")


def delivered(receiver: int, since: float, deadline: float) -> float:
    """The moment the subscriber received a delivery after ``since``."""
    while time.time() < deadline:
        late = [moment for moment in arrivals(receiver).values() if moment >= since]
        if late:
            return min(late)
        time.sleep(POLL_EVERY)
    raise RuntimeError("no delivery by the deadline")


def round_trip(port: int, receiver: int, name: str, scheduled: bool) -> tuple[float, float]:
    """(first public answer, delivery) after the due time, in seconds, of one article."""
    urllib.request.urlopen(f"http://127.0.0.1:{receiver}/__reset").close()
    due = datetime.now(timezone.utc) + timedelta(seconds=AHEAD if scheduled else -1)
    acknowledged = post(port, name, due)
    start = due.timestamp() if scheduled else acknowledged
    seen = first_public(port, f"定时发布 {name}", start + 30)
    arrived = delivered(receiver, start - (0 if scheduled else 5), start + 30)
    return seen - start, arrived - start


def in_process_costs(database_url: str, runs: int) -> tuple[float, float]:
    """Median µs of ``next_due`` and of the poll's version lookup (``FeedVersions.current`` without trust)."""
    store = Store(database_url)
    try:
        due = c.median(c.timed(store.articles.next_due, runs))
        version = c.median(c.timed(lambda: store.versions._read("all"), runs))
    finally:
        store.close()
    return due * 1000, version * 1000  # timed() gives milliseconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,1000000", help="articles stored, comma-separated (default 1000,1000000)")
    parser.add_argument("--rounds", type=int, default=8, help="articles sent per case and size (default 8)")
    parser.add_argument("--postgres", action="store_true", help="the store on PostgreSQL (--postgres-server)")
    parser.add_argument("--postgres-server", default=c.DEFAULT_POSTGRES)
    args = parser.parse_args()
    c.exit_cleanly_on_sigterm()
    rows, costs = [], []
    for size in (int(text) for text in args.sizes.split(",")):
        own = c.OwnPostgres(args.postgres_server, "feeds_bench_publication") if args.postgres else None
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            database_url = own.create() if own else f"sqlite:///{folder / 'feeds.db'}"
            store = Store(database_url)
            store.migrate()
            began = time.perf_counter()
            _data.load(store, _data.generate(size, 0))
            _data.analyze(store)
            store.close()
            c.log(f"{size:,} articles loaded in {time.perf_counter() - began:.0f} s")
            costs.append((f"{size:,}", *in_process_costs(database_url, 2000)))
            port, receiver_port = free_port(), free_port()
            receiver = receiver_process(receiver_port)
            server = serve(folder, database_url, port, '[websub]\nallow_callbacks = ["127.0.0.1/32"]\nconcurrency = 4\n')
            try:
                subscribe_directly(database_url, port, receiver_port, 1)
                time.sleep(1.5)
                for scheduled in (False, True):
                    public, pushed = [], []
                    for n in range(args.rounds):
                        seen, arrived = round_trip(port, receiver_port, f"{'s' if scheduled else 'w'}{size}-{n}", scheduled)
                        public.append(seen)
                        pushed.append(arrived)
                    case = "scheduled, from its time" if scheduled else "written now, from the 201 (baseline)"
                    rows.append((f"{size:,}", case, *(f"{pick(values) * 1000:.0f}" for values in (public, pushed)
                                                      for pick in (c.median, lambda v: c.percentile(v, 0.95), max))))
                    c.log(f"{size:,} {case}: public {[round(v * 1000) for v in public]} ms, delivered {[round(v * 1000) for v in pushed]} ms")
            finally:
                stop(server, receiver, own)

    print(c.header())
    print()
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"`feeds serve`, 2 workers, {store}; one subscriber of /feeds/all.rss; {args.rounds} articles per row, "
          f"/feeds/all.rss polled every {POLL_EVERY * 1000:g} ms; ms:")
    print()
    print(c.table(("articles stored", "article", "public p50", "p95", "max", "delivered p50", "p95", "max"), rows, "llrrrrrr"))
    print()
    print("What a serving process asks once a second, in process, median of 2,000 (µs):")
    print()
    print(c.table(("articles stored", "next due (Articles.next_due)", "a poll's version lookup"),
                  [(size, f"{due:.0f}", f"{version:.0f}") for size, due, version in costs], "lrr"))


if __name__ == "__main__":
    main()
