"""Cold render of a 50-item category feed as the store grows: is it the same few ms at every size?

For each store size (default 1,000, 100,000 and 1,000,000 articles, made by
``bench/_data.py`` and bulk-loaded with executemany), times apart, as median and
p95 of ``--runs`` runs after one warm-up run:

- the query: ``Catalog.build`` of the category feed with ``limit=50`` (the closure-table
  range scan, 50 articles with their category and source, made into a ``Feed``);
- the rendering: ``feeds.writers.render`` of that ``Feed`` as RSS, Atom and JSON Feed.

"Cold" means no rendered-feed cache: the catalog and writers are called directly, not
``RenderedFeeds``. The newest ``--big`` articles get ~3.6 KB of HTML content (an item of
~4 KB), so the 50 items rendered are the same size at every store size; the rest keep
``_data.BODY`` (1.5 KB). A baseline row times feedgen alone rendering 50 such items as RSS.

    python bench/render.py                                    # SQLite, 1k / 100k / 1M (about 3 minutes)
    python bench/render.py --postgres                         # and PostgreSQL (database feeds_bench_render)
    python bench/render.py --postgres --pg-sizes 1000,100000  # PostgreSQL without its slow 1M load
    python bench/render.py --sizes 1000,20000 --runs 20       # a quick run
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402
import _data  # noqa: E402

from feeds.catalog import Catalog  # noqa: E402
from feeds.config import DatabaseSettings, Settings  # noqa: E402
from feeds.store import Store  # noqa: E402
from feeds.store.schema import articles  # noqa: E402
from feeds.writers import render  # noqa: E402

LIMIT = 50
BIG_CONTENT = ("<p>" + "新闻正文内容。" * 17 + "</p>\n") * 10  # ~3.6 KB of UTF-8
FORMATS = ("rss", "atom", "json")


def feedgen_baseline() -> list:
    """feedgen alone: 50 entries of ~4 KB (title, link, guid, date, summary, content) to RSS bytes."""
    from feedgen.feed import FeedGenerator

    now = datetime(2024, 4, 4, 16, 49, 39, tzinfo=timezone(timedelta(hours=8)))

    def work() -> bytes:
        fg = FeedGenerator()
        fg.title("融易新闻 · 财经")
        fg.link(href="https://news.example.cn/", rel="alternate")
        fg.description("融易新闻「财经」栏目的最新文章")
        fg.lastBuildDate(now)
        for n in range(LIMIT):
            entry = fg.add_entry(order="append")
            entry.guid(f"tag:news.example.cn,2024:article:b{n:07d}", permalink=False)
            entry.title(f"基准文章{n}")
            entry.link(href=f"https://news.example.cn/b/{n}.html")
            entry.pubDate(now - timedelta(minutes=n))
            entry.description("新闻摘要。" * 10)
            entry.content(BIG_CONTENT, type="CDATA")
        return fg.rss_str()

    body = work()
    c.log(f"feedgen baseline: {len(body):,} bytes, {len(body) / LIMIT:,.0f} bytes an item")
    return [work]  # the work, then its times


def load(name: str, url: str, data: _data.Dataset, args: argparse.Namespace) -> dict:
    """A store of ``data`` at ``url``, ready to time: the target of one table row."""
    store = Store(url)
    store.migrate()
    began = time.perf_counter()
    _data.load(store, data)
    with store.db.engine.begin() as conn:
        conn.execute(articles.update().where(articles.c.pk > data.articles - args.big).values(content=BIG_CONTENT))
    _data.analyze(store)
    loaded = time.perf_counter() - began
    c.log(f"{name} {data.articles:,}: loaded in {loaded:.1f} s")
    settings = Settings(database=DatabaseSettings(url=url))  # the defaults, whatever ./config.toml says
    catalog = Catalog(store, settings)
    spec = catalog.resolve(f"category/{args.category}")
    assert spec is not None, f"no category {args.category!r}"
    feed = catalog.build(spec, LIMIT)
    expected = min(LIMIT, data.category_sizes.get(args.category, 0))
    assert len(feed.items) == expected, (len(feed.items), expected)
    row = {"database": name, "articles": data.articles, "loaded": loaded, "store": store,
           "category": data.category_sizes.get(args.category, 0), "build": [], **{ext: [] for ext in FORMATS}}
    row["steps"] = [("build", lambda: catalog.build(spec, LIMIT))] + [
        (ext, lambda ext=ext: render(feed, ext)) for ext in FORMATS]
    for ext in FORMATS:
        row[ext + "_bytes"] = len(render(feed, ext))
    return row


def run_interleaved(rows: list[dict], baseline: list, runs: int) -> None:
    """Every step of every row once per round, ``runs`` rounds after a warm-up round, so that
    the machine's noise falls on all rows alike and the ratios between them hold."""
    for round_ in range(runs + 1):
        for row in rows:
            for key, work in row["steps"]:
                began = time.perf_counter()
                work()
                if round_:
                    row[key].append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        baseline[0]()
        if round_:
            baseline.append((time.perf_counter() - began) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,100000,1000000", help="store sizes in articles (default 1000,100000,1000000)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs of each step (default 50)")
    parser.add_argument("--category", default="caijing", help="slug path of the feed's category (default caijing, 财经 and its sub-categories)")
    parser.add_argument("--big", type=int, default=5000, help="newest articles given ~4 KB items (default 5000)")
    parser.add_argument("--postgres", nargs="?", const=c.DEFAULT_POSTGRES, default=None, metavar="SERVER_URL",
                        help=f"also PostgreSQL, in a database feeds_bench_render created on this server and dropped after (default server {c.DEFAULT_POSTGRES})")
    parser.add_argument("--pg-sizes", help="store sizes for PostgreSQL, when other than --sizes (its 1M load takes ~8 minutes)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    c.exit_cleanly_on_sigterm()
    sizes = [int(s) for s in args.sizes.split(",")]
    pg_sizes = [int(s) for s in args.pg_sizes.split(",")] if args.pg_sizes else sizes
    sizes = sorted(set(sizes) | set(pg_sizes if args.postgres else []))
    began = time.perf_counter()
    baseline = feedgen_baseline()
    rows = []
    owns: list[c.OwnPostgres] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for size in sizes:
                t = time.perf_counter()
                data = _data.generate(size, 0)
                c.log(f"{size:,} articles generated in {time.perf_counter() - t:.1f} s")
                if not args.no_sqlite:
                    path = Path(folder) / f"render-{size}.db"
                    rows.append(load("SQLite", f"sqlite:///{path}", data, args))
                    rows[-1]["size"] = f"{path.stat().st_size / 2**20:,.0f} MB"
                if args.postgres and size in pg_sizes:
                    owns.append(c.OwnPostgres(args.postgres, f"feeds_bench_render_{size}"))
                    rows.append(load("PostgreSQL", owns[-1].create(), data, args))
                    rows[-1]["size"] = owns[-1].size()
                del data
            c.log(f"timing {len(rows)} stores interleaved, {args.runs} rounds")
            run_interleaved(rows, baseline, args.runs)
            for row in rows:
                row["store"].close()
    finally:
        for own in owns:
            own.drop()
    baseline = baseline[1:]
    rows.sort(key=lambda row: (row["database"] != "SQLite", row["articles"]))

    def ms(times: list[float]) -> str:
        return f"{c.median(times):.2f} / {c.percentile(times, 0.95):.2f}"

    print(c.header())
    print()
    print(f"Cold render of `/feeds/category/{args.category}` with {LIMIT} items (~4 KB each), no rendered-feed cache; "
          f"ms as median / p95 of {args.runs} runs after one warm-up. Total = build + render, medians. "
          f"\"vs smallest\" = total / the same database's total at the smallest size.")
    print()
    base_total: dict[str, float] = {}
    table_rows = []
    for row in rows:
        totals = {ext: c.median(row["build"]) + c.median(row[ext]) for ext in FORMATS}
        base_total.setdefault(row["database"], totals["rss"])
        table_rows.append((
            row["database"], f"{row['articles']:,}", f"{row['category']:,}", row["size"], ms(row["build"]),
            ms(row["rss"]), ms(row["atom"]), ms(row["json"]),
            " / ".join(f"{totals[ext]:.2f}" for ext in FORMATS),
            f"{totals['rss'] / base_total[row['database']]:.2f}×",
        ))
    print(c.table(("database", "articles", "in category", "db size", "query: Catalog.build", "render RSS", "render Atom",
                   "render JSON", "total RSS / Atom / JSON", "vs smallest (RSS)"), table_rows))
    print()
    feedgen = c.median(baseline)
    print(c.table(("baseline", "median ms", "p95 ms", "our RSS render / baseline (medians, each size)"), [(
        f"feedgen alone, {LIMIT} items of ~4 KB to RSS", f"{feedgen:.2f}", f"{c.percentile(baseline, 0.95):.2f}",
        ", ".join(f"{row['database'][:2]} {row['articles']:,}: {c.median(row['rss']) / feedgen:.2f}×" for row in rows),
    )]))
    print()
    print("bytes: " + ", ".join(f"{ext} {rows[0][ext + '_bytes']:,}" for ext in FORMATS) if rows else "")
    print("load times: " + ", ".join(f"{r['database']} {r['articles']:,} {r['loaded']:.0f} s" for r in rows))
    print(f"total run time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
