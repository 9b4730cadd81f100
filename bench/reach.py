"""Reach: how long the sitemaps take to build as the store grows, and from an article's publication to
its IndexNow push.

Sitemaps: for stores of 1,000 and 1,000,000 articles (bulk-loaded by ``_data.py``), each built cold
(query and XML, no cache) ``--runs`` times, median and slowest: the index (``/sitemap.xml``: one
pass over every public article, grouped into pages), the last article page (5,000 articles) and the
news sitemap (the last 48 hours).

Push: `feeds serve` (2 workers) on the same store with `indexnow.endpoint` at a local receiver (from
``push.py``). An article written for now: from the API's 201 to the push's arrival; an article
scheduled 2 s ahead: from its time. The sender waits half a second after a write for more URLs to
send in the same request (``reach.GATHER``), which is most of the delay.

    python bench/reach.py                  # SQLite; about 4 minutes
    python bench/reach.py --postgres       # the store on PostgreSQL (a database of its own)
    python bench/reach.py --sizes 1000     # a quick run
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
from push import TOKEN, arrivals, receiver_process, serve, stop  # noqa: E402

from feeds import create_app, sitemaps  # noqa: E402
from feeds.store import Store  # noqa: E402
from feeds.store.sitemaps import PAGE  # noqa: E402

KEY = "bench-indexnow-key"
AHEAD = 2.0


def build_times(database_url: str, runs: int) -> list[tuple[str, float, float, int]]:
    """(sitemap, median ms, slowest ms, bytes) of each sitemap built cold."""
    app = create_app({"database": {"url": database_url}, "site": {"base_url": "https://feeds.example.cn"}})
    found = []
    try:
        with app.test_request_context():
            last = app.extensions["feeds"].store.sitemaps.pages()[-1][0]
            for name, make in (("index (/sitemap.xml)", sitemaps._index), (f"last article page ({PAGE:,})", lambda: sitemaps._page(last)),
                               ("news (48 h)", sitemaps._news)):
                body = make()[0]
                times = c.timed(make, runs)
                found.append((name, c.median(times), max(times), len(body)))
    finally:
        app.extensions["feeds"].store.close()
    return found


def pushed_after(port: int, receiver: int, name: str, scheduled: bool) -> float:
    """Seconds from an article's 201 (or, scheduled, its time) to its push's arrival."""
    urllib.request.urlopen(f"http://127.0.0.1:{receiver}/__reset").close()
    due = datetime.now(timezone.utc) + timedelta(seconds=AHEAD if scheduled else -1)
    body = json.dumps({"id": name, "url": f"https://news.example.cn/r/{name}.html", "title": f"推送 {name}", "category": "热点/国内",
                       "published": due.isoformat()}, ensure_ascii=False).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/articles", data=body,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, response.status
    start = due.timestamp() if scheduled else time.time()
    while not (found := arrivals(receiver)):
        if time.time() > start + 30:
            raise RuntimeError("no push within 30 s")
        time.sleep(0.005)
    return min(found.values()) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,1000000", help="articles stored, comma-separated (default 1000,1000000)")
    parser.add_argument("--runs", type=int, default=5, help="cold builds of each sitemap (default 5)")
    parser.add_argument("--rounds", type=int, default=6, help="articles pushed per case (default 6)")
    parser.add_argument("--postgres", action="store_true", help="the store on PostgreSQL (--postgres-server)")
    parser.add_argument("--postgres-server", default=c.DEFAULT_POSTGRES)
    args = parser.parse_args()
    c.exit_cleanly_on_sigterm()
    built, pushes = [], []
    for size in (int(text) for text in args.sizes.split(",")):
        own = c.OwnPostgres(args.postgres_server, "feeds_bench_reach") if args.postgres else None
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            database_url = own.create() if own else f"sqlite:///{folder / 'feeds.db'}"
            store = Store(database_url)
            store.migrate()
            _data.load(store, _data.generate(size, 0, article_days=10))
            _data.analyze(store)
            store.close()
            built += [(f"{size:,}", *row) for row in build_times(database_url, args.runs)]
            c.log(f"{size:,}: {built[-3:]}")
            port, receiver = free_port(), free_port()
            listener = receiver_process(receiver)
            server = serve(folder, database_url, port, f'[indexnow]\nkey = "{KEY}"\nendpoint = "http://127.0.0.1:{receiver}/indexnow"\n')
            try:
                time.sleep(1.5)
                for scheduled in (False, True):
                    delays = [pushed_after(port, receiver, f"{'s' if scheduled else 'w'}{size}-{n}", scheduled) for n in range(args.rounds)]
                    case = "scheduled, from its time" if scheduled else "written now, from the 201"
                    pushes.append((f"{size:,}", case, *(f"{pick(delays) * 1000:.0f}" for pick in (min, c.median, max))))
                    c.log(f"{size:,} {case}: {[round(d * 1000) for d in delays]} ms")
            finally:
                stop(server, listener, own)

    print(c.header())
    print()
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"Sitemaps built cold (query and XML), {store}, {args.runs} runs each:")
    print()
    print(c.table(("articles stored", "sitemap", "median ms", "slowest ms", "bytes"),
                  [(size, name, f"{median:.1f}", f"{slowest:.1f}", f"{length:,}") for size, name, median, slowest, length in built], "llrrr"))
    print()
    print(f"From publication to the IndexNow push's arrival, `feeds serve` with 2 workers, {store}, {args.rounds} articles a row, ms:")
    print()
    print(c.table(("articles stored", "article", "fastest", "median", "slowest"), pushes, "llrrr"))


if __name__ == "__main__":
    main()
