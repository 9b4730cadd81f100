"""Synthetic newsroom data for the benchmarks, bulk-loaded through SQLAlchemy Core.

A category tree, sources, ``articles`` published over the last ``article_days``
days (stored in publication order, as a newsroom does), and ``events`` read
events over the last ``days`` days with a long tail: article popularity follows
Zipf's law (s=1) over a random order of the articles; an article is read mostly
within a day of its publication (exponentially, half a day on average), and its
reads that would fall outside the window are spread evenly over the part of the
window it was online.

``generate`` makes the data once; ``load`` puts it into a migrated, empty store
with ``conn.execute(table.insert(), rows)`` (executemany) in chunks, the read
events pre-summed into minute, hour and day buckets exactly as
``Store.reads.record`` stores them, so a million events load in well under a
minute rather than the hours one ``Store`` call per article would take.
"""
from __future__ import annotations

import bisect
import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from feeds.store import Store
from feeds.store.sitemaps import Sitemaps
from feeds.store.schema import article_categories, articles, categories, feed_versions, metadata, sources
from feeds.text import slugify

TREE = {
    "热点": ["国内", "国际", "社会", "国内/北京", "国内/上海"],
    "财经": ["股票", "股票/港股", "股票/A股", "基金", "宏观"],
    "科技": ["互联网", "手机", "人工智能"],
    "体育": ["足球", "篮球", "综合"],
    "娱乐": ["电影", "音乐"],
    "汽车": [],
    "房产": [],
    "教育": [],
    "健康": [],
    "旅游": [],
}
CHUNK = 10_000
# The bucket tables the schema has (an older one had no day buckets), with their widths in seconds.
BUCKETS = tuple(
    (metadata.tables[name], width)
    for name, width in (("reads_minutely", 60), ("reads_hourly", 3600), ("reads_daily", 86400))
    if name in metadata.tables
)
BODY = "<p>" + "新闻正文。" * 100 + "</p>"


@dataclass
class Dataset:
    now: datetime
    articles: int
    events: int
    categories: list[dict]
    sources: list[dict]
    published: list[int]  # Unix seconds, by pk - 1
    category_of: list[tuple[str, ...]]  # by pk - 1
    category_ids: dict[tuple[str, ...], int]
    category_sizes: dict[str, int]  # slug path -> articles, descendants included
    buckets: dict[str, dict[int, int]]  # table name -> {bucket seconds << 24 | pk: count}

    def article_rows(self) -> Iterator[dict]:
        tags = json.dumps(["基准"], ensure_ascii=False)
        for pk in range(1, self.articles + 1):
            yield {
                "pk": pk, "id": f"b{pk:07d}", "url": f"https://news.example.cn/b/{pk}.html", "title": f"基准文章{pk}",
                "summary": "新闻摘要。" * 10, "content": BODY, "author": None, "source_id": 1 + pk % len(self.sources),
                "category_id": self.category_ids[self.category_of[pk - 1]], "tags": tags, "image": None,
                "published": _at(self.published[pk - 1]), "updated": None,
            }

    def closure_rows(self) -> Iterator[dict]:
        for pk in range(1, self.articles + 1):
            path = self.category_of[pk - 1]
            at = _at(self.published[pk - 1])
            for depth in range(1, len(path) + 1):
                yield {"category_id": self.category_ids[path[:depth]], "published": at, "article_pk": pk}

    def scope_rows(self) -> Iterator[dict]:
        """The feed_versions rows the store keeps through its writes: every scope, with its article count."""
        yield {"scope": "all", "version": 1, "articles": self.articles}
        for slug_path, size in self.category_sizes.items():
            yield {"scope": f"category:{slug_path}", "version": 1, "articles": size}
        per_source = Counter(1 + pk % len(self.sources) for pk in range(1, self.articles + 1))  # as article_rows
        for source in self.sources:
            yield {"scope": f"source:{source['slug']}", "version": 1, "articles": per_source[source["id"]]}

    def bucket_rows(self, table: sa.Table) -> Iterator[dict]:
        counts = self.buckets[table.name]
        for key in sorted(counts):
            yield {"bucket": _at(key >> 24), "article_pk": key & 0xFFFFFF, "count": counts[key]}


def generate(n_articles: int, n_events: int, days: float = 8, article_days: float = 30,
             seed: int = 20240404, now: datetime | None = None, n_sources: int = 40) -> Dataset:
    rng = random.Random(seed)
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    end = int(now.timestamp())

    paths: set[tuple[str, ...]] = set()
    for top, children in TREE.items():
        paths.add((top,))
        for child in children:
            parts = (top, *child.split("/"))
            paths.update(parts[:depth] for depth in range(1, len(parts) + 1))
    ids: dict[tuple[str, ...], int] = {}
    slug_paths: dict[tuple[str, ...], str] = {}
    category_rows = []
    for number, path in enumerate(sorted(paths, key=lambda path: (len(path), path)), start=1):
        ids[path] = number
        slug_paths[path] = "/".join(slugify(name) for name in path)
        category_rows.append({"id": number, "parent_id": ids.get(path[:-1]), "path": "/".join(path),
                              "slug_path": slug_paths[path]})
    leaves = [path for path in ids if not any(other[:-1] == path for other in ids)]
    rng.shuffle(leaves)
    leaf_weights = list(itertools.accumulate(1 / (rank + 1) ** 0.7 for rank in range(len(leaves))))
    source_rows = [{"id": n, "name": f"来源{n}", "slug": f"laiyuan{n}", "url": f"https://s{n}.example.cn/"} for n in range(1, n_sources + 1)]

    published = sorted(rng.randrange(end - int(article_days * 86400), end) for _ in range(n_articles))
    category_of = [leaves[bisect.bisect(leaf_weights, rng.random() * leaf_weights[-1])] for _ in range(n_articles)]
    sizes: dict[str, int] = {}
    for path in category_of:
        for depth in range(1, len(path) + 1):
            sizes[slug_paths[path[:depth]]] = sizes.get(slug_paths[path[:depth]], 0) + 1

    order = list(range(1, n_articles + 1))
    rng.shuffle(order)
    popularity = list(itertools.accumulate(1 / rank for rank in range(1, n_articles + 1)))
    window_start = end - int(days * 86400)
    buckets: dict[str, dict[int, int]] = {table.name: {} for table, _ in BUCKETS}
    for pk in rng.choices(order, cum_weights=popularity, k=n_events):
        born = published[pk - 1]
        at = born + int(rng.expovariate(1 / 43200))
        if at >= end or at < window_start:
            at = rng.randrange(max(born, window_start), end)
        count = 1 if rng.random() < 0.9 else rng.randint(2, 20)
        for table, width in BUCKETS:
            counts = buckets[table.name]
            key = (at - at % width) << 24 | pk
            counts[key] = counts.get(key, 0) + count
    return Dataset(now, n_articles, n_events, category_rows, source_rows, published, category_of, ids, sizes, buckets)


def load(store: Store, data: Dataset) -> None:
    """Put ``data`` into an empty, migrated ``store`` in one transaction, parents first."""
    engine = store.db.engine
    with engine.begin() as conn:
        _insert(conn, categories, iter(data.categories))
        _insert(conn, sources, iter(data.sources))
        _insert(conn, articles, data.article_rows())
        _insert(conn, article_categories, data.closure_rows())
        _insert(conn, feed_versions, data.scope_rows())
        for table, _ in BUCKETS:
            _insert(conn, table, data.bucket_rows(table))
        Sitemaps.count_all(conn)  # as the article writes keep it
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            for table, key in (("categories", "id"), ("sources", "id"), ("articles", "pk")):  # explicit ids bypassed the sequences
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'), (SELECT max({key}) FROM {table}))")
            conn.commit()


def analyze(store: Store) -> None:
    """What a production PostgreSQL does by itself: autovacuum analyzes the tables and sets
    the visibility map (which lets index-only scans skip the heap). SQLite is left alone:
    the application never runs ANALYZE there, so the plans measured are the ones it gets."""
    if store.db.engine.dialect.name == "postgresql":
        with store.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


def events_batch(rng: random.Random, n_articles: int, size: int, now: datetime) -> list[tuple[str, datetime, int]]:
    """``size`` fresh read events (id, at, count) from the last ten minutes, the long tail included."""
    popularity = list(itertools.accumulate(1 / rank for rank in range(1, n_articles + 1)))
    picks = rng.choices(range(1, n_articles + 1), cum_weights=popularity, k=size)
    return [(f"b{pk:07d}", now - timedelta(seconds=rng.randrange(600)), 1) for pk in picks]


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _insert(conn: sa.Connection, table: sa.Table, rows: Iterator[dict]) -> None:
    while chunk := list(itertools.islice(rows, CHUNK)):
        conn.execute(table.insert(), chunk)
