"""Keyword search: a two-term query over N articles through the index, beside a LIKE scan of the same
rows, and what the index costs in import speed and disk, on SQLite and PostgreSQL.

    python bench/search.py --articles 1000000 [--stores sqlite,postgresql] [--postgres URL]

Articles are generated Chinese text (a vocabulary of two- and three-character words over the
commonest characters, words drawn by Zipf's law), ``--per-day`` of them a day (720: a million
is four years), stored through ``Store.articles.upsert``, the path import and the API take.
Queries are two words of middling frequency (ranks 30 to 300 of the vocabulary), as a reader's
would be, and two rare words (ranks 1,000 to 4,000: a few of each million articles have both,
so the search reaches back through the whole archive); each asks for the newest 20.

``--keep DIR`` keeps both stores (SQLite in DIR, PostgreSQL's database not dropped), and a
later run with the same ``--keep`` measures queries on them without loading them again.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from bench._common import OwnPostgres, exit_cleanly_on_sigterm, header, log, median, table, timed  # noqa: E402
from feeds.model import Article  # noqa: E402
from feeds.store import Store  # noqa: E402
from feeds.store.search import Search  # noqa: E402

BATCH = 1000
LIMIT = 20


def vocabulary(rng: random.Random) -> list[str]:
    characters = [chr(code) for code in rng.sample(range(0x4E00, 0x7000), 2500)]
    return list(dict.fromkeys("".join(rng.choices(characters, k=rng.choice((2, 2, 3)))) for _ in range(4000)))


def articles(count: int, words: list[str], group: int, offset: int, per_day: int = 720) -> list[Article]:
    rng = random.Random(group * 1_000_000_000 + offset)
    weights = [1 / rank for rank in range(1, len(words) + 1)]
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def text(n: int) -> str:
        return "".join(rng.choices(words, weights, k=n))

    return [Article(id=f"s{group}-{i}", url=f"https://news.example.cn/s/{group}/{i}.html", title=text(8), category=("新闻",),
                    summary=text(25), content=f"<p>{text(40)}</p><p>{text(40)}</p>", published=start + timedelta(days=i / per_day))
            for i in range(offset, offset + count)]


def load(store: Store, count: int, words: list[str], group: int, per_day: int) -> float:
    """Articles a second through the store's upsert, generation excluded."""
    spent = 0.0
    for start in range(0, count, BATCH):
        batch = articles(min(BATCH, count - start), words, group, start, per_day)
        began = time.perf_counter()
        store.articles.upsert(batch)
        spent += time.perf_counter() - began
    return count / spent


def like_scan(store: Store, terms: tuple[str, ...]) -> list[int]:
    conditions = " AND ".join(f"(lower(title) LIKE :t{i} OR lower(summary) LIKE :t{i} OR lower(content) LIKE :t{i})"
                              for i in range(len(terms)))
    query = sa.text(f"SELECT pk FROM articles WHERE {conditions} ORDER BY published DESC, pk DESC LIMIT {LIMIT}")
    with store.db.read() as conn:
        return list(conn.execute(query, {f"t{i}": f"%{term}%" for i, term in enumerate(terms)}).scalars())


def index_bytes(store: Store) -> int | None:
    with store.db.read() as conn:
        if store.db.dialect == "postgresql":
            return int(conn.scalar(sa.text("SELECT pg_total_relation_size('article_search')")))
        try:
            return int(conn.scalar(sa.text("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'article_search%'")))
        except sa.exc.OperationalError:  # SQLite built without dbstat
            return None


def measure(kind: str, url: str, args: argparse.Namespace, words: list[str], rng: random.Random) -> list[object]:
    count, baseline = args.articles, args.baseline
    store = Store(url)
    store.migrate()
    if store.articles.count() >= count:
        log(f"{kind}: {count:,} articles kept by an earlier run: queries only")
        with_index = without_index = None
    else:
        log(f"{kind}: import of {baseline:,} with and without the index")
        with_index = load(store, baseline, words, group=1, per_day=args.per_day)
        index = Search.__dict__["index"]  # the staticmethod itself
        Search.index = staticmethod(lambda conn, added, removed: None)  # type: ignore[method-assign]
        try:
            without_index = load(store, baseline, words, group=2, per_day=args.per_day)
        finally:
            Search.index = index  # type: ignore[method-assign]
        with store.db.engine.begin() as conn:  # the unindexed ones go: every article below is indexed
            conn.execute(sa.text("DELETE FROM articles WHERE id LIKE 's2-%'"))
        log(f"{kind}: loading {count:,} articles")
        load(store, count - baseline, words, group=3, per_day=args.per_day)
        if store.db.dialect == "postgresql":
            with store.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
    common = [tuple(rng.sample(words[30:300], 2)) for _ in range(args.queries)]
    rare = [tuple(rng.sample(words[1000:4000], 2)) for _ in range(args.queries)]
    timings = {name: [timed(lambda: store.search.newest([(word,) for word in pair], LIMIT), runs=1, warmup=1)[0] for pair in pairs]
               for name, pairs in (("common", common), ("rare", rare))}
    scanned = [timed(lambda: like_scan(store, pair), runs=1, warmup=0)[0] for pair in common[:5]]
    found = {name: [len(store.search.newest([(word,) for word in pair], LIMIT)) for pair in pairs] for name, pairs in (("common", common), ("rare", rare))}
    size = index_bytes(store)
    store.close()
    imported = (f"{with_index:,.0f} / {without_index:,.0f} ({with_index / without_index:.2f})" if with_index and without_index
                else "(kept from an earlier run)")
    return [kind, f"{count:,}", f"{median(timings['common']):.1f}", f"{max(timings['common']):.1f}", f"{median(scanned):.0f}",
            f"{median(found['common']):.0f}", f"{median(timings['rare']):.1f}", f"{max(timings['rare']):.1f}",
            f"{median(found['rare']):.0f}", imported, f"{size / count:,.0f} B ({size / 2**20:,.0f} MiB)" if size else "n/a"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=20_000, help="articles imported with and without the index")
    parser.add_argument("--per-day", type=int, default=720, help="articles published a day")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--keep", type=Path, help="keep the stores here (and reuse them when they hold --articles)")
    parser.add_argument("--postgres", default=os.environ.get("FEEDS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    rng = random.Random(42)
    words = vocabulary(rng)
    rows = []
    for kind in args.stores.split(","):
        if kind == "sqlite":
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                rows.append(measure(kind, f"sqlite:///{args.keep.resolve()}/search.db", args, words, random.Random(43)))
            else:
                with tempfile.TemporaryDirectory() as folder:
                    rows.append(measure(kind, f"sqlite:///{folder}/search.db", args, words, random.Random(43)))
        else:
            own = OwnPostgres(args.postgres, "feeds_bench_search")
            try:
                rows.append(measure(kind, own.url if args.keep and own.exists() else own.create(), args, words, random.Random(43)))
            finally:
                if not args.keep:
                    own.drop()
    print(header())
    print()
    print(table(["store", "articles", "2-term query, median ms", "slowest ms", "LIKE scan, median ms (5 queries)",
                 "results (of 20)", "2 rare terms, median ms", "slowest ms", "results (of 20)",
                 "import/s with / without index", "index on disk per article (total)"], rows))


if __name__ == "__main__":
    main()
