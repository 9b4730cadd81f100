"""Import speed: articles per second through ``feeds.ingest.import_articles``, and peak memory.

Writes ``--articles`` generated articles (the data of ``bench/_data.py``: its category
tree, 40 sources, publication times over 30 days) as JSON Lines, each with ~1.5 KB of
HTML content holding a relative link, no summary (so one is made from the content), a
Beijing-time ``published`` without offset, a category path and a tag: the real
validation, sanitising and store path, in transactions of 500 lines.

Each import runs in a child process of its own, reading the file as ``feeds import``
does, so ``ru_maxrss`` (the peak resident set) is that import's alone:

- validation only (``parse_json`` + ``article_from_dict``, no store): the CPU floor;
- into a new SQLite database (temporary file, WAL);
- into PostgreSQL, in a database of its own (``feeds_bench_import``, created and
  dropped on the server of ``--postgres``);
- and, unless ``--no-reimport``, the same file again into each (every line unchanged).

    python bench/import_speed.py                         # 100k articles, SQLite and PostgreSQL
    python bench/import_speed.py --articles 10000        # a quick run
    python bench/import_speed.py --no-postgres
    python bench/import_speed.py --against ../old-checkout --rounds 2   # this code beside another, in one run

With ``--against`` every import runs once with each code base per round, alternating, the
other's ``feeds`` package put first on the child's ``PYTHONPATH``; the table shows both
and the ratio of their medians.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

BEIJING = timezone(timedelta(hours=8))
CONTENT = '<p>' + "新闻正文。" * 100 + '</p><p><a href="/redian/related.html">相关阅读</a></p>'


def write_lines(path: Path, n: int) -> None:
    import _data  # here, not at the top: a child importing another checkout's feeds package needs none of it

    data = _data.generate(n, 0)
    sources = data.sources
    with path.open("w", encoding="utf-8") as out:
        for pk in range(1, n + 1):
            published = datetime.fromtimestamp(data.published[pk - 1], BEIJING).strftime("%Y-%m-%d %H:%M:%S")
            source = sources[pk % len(sources)]
            article = {
                "id": f"b{pk:07d}", "url": f"https://news.example.cn/b/{pk}.html", "title": f"基准文章{pk}",
                "content": CONTENT, "author": "朱欣", "source": source["name"],
                "category": "/".join(data.category_of[pk - 1]), "tags": ["基准"], "published": published,
            }
            out.write(json.dumps(article, ensure_ascii=False) + "\n")


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child(url: str, lines: Path, reimport: bool) -> None:
    """One import in this process; prints its numbers as JSON."""
    from feeds.config import DatabaseSettings, Settings
    from feeds.errors import InvalidInput
    from feeds.ingest import import_articles, parse_lines, Report
    from feeds.validate import article_from_dict

    settings = Settings(database=DatabaseSettings(url=url or "sqlite://"))
    result: dict = {"rss_before": maxrss_mb()}
    if not url:  # validation only
        began = time.perf_counter()
        report = Report()
        good = 0
        with lines.open(encoding="utf-8") as stream:
            for _, raw in parse_lines(stream, report):
                try:
                    article_from_dict(raw, settings)
                    good += 1
                except InvalidInput as exc:
                    report.rejected.append((0, str(exc)))
        result.update(seconds=time.perf_counter() - began, summary=f"{good} valid, {len(report.rejected)} rejected",
                      peak=maxrss_mb())
        print(json.dumps(result))
        return
    from feeds.store import Store

    store = Store(url)
    store.migrate()
    result["rss_before"] = maxrss_mb()
    began = time.perf_counter()
    with lines.open(encoding="utf-8") as stream:
        report = import_articles(store, settings, stream)
    result.update(seconds=time.perf_counter() - began, summary=report.summary(), peak=maxrss_mb())
    if reimport:
        began = time.perf_counter()
        with lines.open(encoding="utf-8") as stream:
            again = import_articles(store, settings, stream)
        result.update(again_seconds=time.perf_counter() - began, again_summary=again.summary(), again_peak=maxrss_mb())
    store.close()
    print(json.dumps(result))


def run_child(url: str, lines: Path, reimport: bool, code: Path = c.ROOT) -> dict:
    command = [sys.executable, __file__, "--child", url, "--lines", str(lines)] + (["--no-reimport"] if not reimport else [])
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(code)})
    if done.returncode != 0:
        raise RuntimeError(f"import child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100_000, help="articles to import (default 100000)")
    parser.add_argument("--postgres", default=c.DEFAULT_POSTGRES, metavar="SERVER_URL",
                        help=f"PostgreSQL server; the database feeds_bench_import is created there and dropped (default {c.DEFAULT_POSTGRES})")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-reimport", action="store_true", help="skip importing the same file a second time")
    parser.add_argument("--against", type=Path, metavar="CHECKOUT", help="also import with the feeds package of another checkout")
    parser.add_argument("--rounds", type=int, default=1, help="imports per target and code base, alternating (default 1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--lines", help=argparse.SUPPRESS)
    args = parser.parse_args()
    c.exit_cleanly_on_sigterm()
    if args.child is not None:
        child(args.child, Path(args.lines), not args.no_reimport)
        return
    began = time.perf_counter()
    reimport = not args.no_reimport
    results = []
    own = None if args.no_postgres else c.OwnPostgres(args.postgres, "feeds_bench_import")
    with tempfile.TemporaryDirectory() as folder:
        lines = Path(folder) / "articles.jsonl"
        write_lines(lines, args.articles)
        c.log(f"{args.articles:,} articles written as JSON Lines ({lines.stat().st_size / 2**20:.0f} MB) "
              f"in {time.perf_counter() - began:.1f} s")
        codes = [("", c.ROOT)] + ([(f" [{args.against}]", args.against.resolve())] if args.against else [])
        targets = ["validation only (no store)", "SQLite (new file, WAL)"] + ([] if own is None else ["PostgreSQL (own database)"])
        runs: dict[str, list[dict]] = {}
        try:
            for name in targets:
                for _ in range(args.rounds):
                    for label, code in codes:
                        if name.startswith("SQLite"):
                            database = Path(folder) / "import.db"
                            for leftover in Path(folder).glob("import.db*"):
                                leftover.unlink()
                            url = f"sqlite:///{database}"
                        elif name.startswith("PostgreSQL"):
                            own.drop()
                            url = own.create()
                        else:
                            url = ""
                        result = run_child(url, lines, reimport, code)
                        c.log(f"{name}{label}: {result}")
                        runs.setdefault(name + label, []).append(result)
        finally:
            if own is not None:
                own.drop()
        results = [(name, _median(found)) for name, found in runs.items()]
        size = lines.stat().st_size

    print(c.header())
    print()
    print(f"{args.articles:,} articles ({size / 2**20:.0f} MB of JSON Lines, ~1.5 KB HTML each, summaries made from "
          f"content) through `feeds.ingest.import_articles`, batches of 500, one child process per row; peak RSS is "
          f"`ru_maxrss` of that process (\"before\": after imports and migration, before the first line). "
          f"\"vs validation\" = articles/s ÷ the validation-only articles/s.")
    print()
    floor = results[0][1]["seconds"]
    rows = []
    for name, r in results:
        rows.append((name, "first import" if "again_seconds" in r or name.startswith(("SQLite", "PostgreSQL")) else "parse + validate", f"{r['seconds']:.1f}", f"{args.articles / r['seconds']:,.0f}",
                     f"{floor / r['seconds']:.2f}", f"{r['rss_before']:.0f}", f"{r['peak']:.0f}", r["summary"]))
        if "again_seconds" in r:
            rows.append((name, "same file again", f"{r['again_seconds']:.1f}", f"{args.articles / r['again_seconds']:,.0f}",
                         f"{floor / r['again_seconds']:.2f}", "", f"{r['again_peak']:.0f}", r["again_summary"]))
    print(c.table(("target", "pass", "seconds", "articles/s", "vs validation", "RSS before MB", "peak RSS MB", "result"),
                  rows, "llrrrrrl"))
    if args.against:
        speeds = (_median(runs[name + codes[1][0]])["seconds"] / _median(runs[name])["seconds"] for name in targets)
        print(f"\nthis code's speed ÷ {args.against}'s, medians of {args.rounds} round(s), first import: "
              + ", ".join(f"{name} {speed:.2f}" for name, speed in zip(targets, speeds)))
    print(f"\ntotal run time {time.perf_counter() - began:.0f} s")


def _median(found: list[dict]) -> dict:
    """The run of median first-import time, with the medians of its times."""
    middle = sorted(found, key=lambda r: r["seconds"])[len(found) // 2]
    return {**middle, **{key: statistics.median(r[key] for r in found) for key in ("seconds", "again_seconds") if key in middle}}


if __name__ == "__main__":
    main()
