"""The store: the schema and every query, in SQLAlchemy Core. The only module that speaks SQL.

One schema serves SQLite (the embedded default, in WAL mode) and PostgreSQL
unchanged. Reads come back as domain objects from ``feeds.model``.

Layout choices that keep "newest N" flat as the store grows: a closure table
``article_categories`` holds one row per article and per ancestor of its
category, so a category feed (descendants included) is one index range scan;
sources and the "all" feed have their own ``(…, published, pk)`` indexes.
Reads are summed into hourly buckets, with minute buckets for the ragged edge
of a ranking window.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from feeds.errors import StoreUnavailable
from feeds.model import Article, Category, ReadEvent, Source
from feeds.text import slugify

metadata = sa.MetaData()


class UTCDateTime(sa.types.TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every database (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


categories = sa.Table(
    "categories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("categories.id"), nullable=True),
    sa.Column("path", sa.String(1000), nullable=False, unique=True),
    sa.Column("slug_path", sa.String(1000), nullable=False, unique=True),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(500), nullable=False, unique=True),
    sa.Column("slug", sa.String(200), nullable=False, unique=True),
    sa.Column("url", sa.String(2048), nullable=True),
)

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("id", sa.String(200), nullable=False, unique=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("author", sa.String(500), nullable=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=True),
    sa.Column("category_id", sa.Integer, sa.ForeignKey("categories.id"), nullable=True),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("image", sa.String(2048), nullable=True),
    sa.Column("published", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=True),
    sa.Index("ix_articles_published", "published", "pk"),
    sa.Index("ix_articles_source_published", "source_id", "published", "pk"),
)

article_categories = sa.Table(
    "article_categories",
    metadata,
    sa.Column("category_id", sa.Integer, sa.ForeignKey("categories.id"), primary_key=True),
    sa.Column("published", UTCDateTime, primary_key=True),
    sa.Column("article_pk", sa.Integer, sa.ForeignKey("articles.pk", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_article_categories_article", "article_pk"),
)

reads_hourly = sa.Table(
    "reads_hourly",
    metadata,
    sa.Column("bucket", UTCDateTime, primary_key=True),
    sa.Column("article_pk", sa.Integer, sa.ForeignKey("articles.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Index("ix_reads_hourly_article", "article_pk"),
)

reads_minutely = sa.Table(
    "reads_minutely",
    metadata,
    sa.Column("bucket", UTCDateTime, primary_key=True),
    sa.Column("article_pk", sa.Integer, sa.ForeignKey("articles.pk", ondelete="CASCADE"), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Index("ix_reads_minutely_article", "article_pk"),
)

ranking_states = sa.Table(
    "ranking_states",
    metadata,
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("signature", sa.String(64), nullable=False),
    sa.Column("changed", UTCDateTime, nullable=False),
)

Outcome = Literal["created", "updated", "unchanged"]
_CHUNK = 500
_COMPARED = ("url", "title", "summary", "content", "author", "source_id", "category_id", "tags", "image", "published")


@dataclass(frozen=True)
class Ranked:
    """An article and its reads inside a ranking window."""

    article: Article
    reads: int


class Store:
    """Articles, categories, sources and reads in one SQL database."""

    def __init__(self, url: str, category_slugs: dict[str, str] | None = None, source_slugs: dict[str, str] | None = None):
        self.url = url
        self.engine = _engine(url)
        self._category_slugs = category_slugs or {}
        self._source_slugs = source_slugs or {}

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest revision: a fresh database is created and stamped,
        an older one is upgraded through the Alembic migrations."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._guard(), self.engine.begin() as conn:
            config.attributes["connection"] = conn
            if not sa.inspect(conn).has_table("articles"):
                metadata.create_all(conn)
                command.stamp(config, "head")
            else:
                command.upgrade(config, "head")

    # -- writes ---------------------------------------------------------------------

    def upsert_articles(self, batch: Sequence[Article], now: datetime | None = None) -> list[Outcome]:
        """Store ``batch`` in one transaction, matching on ``id``; say what happened to each.

        An article whose stored form already equals the new one is left alone, so
        importing the same data twice changes nothing. An edit that brings no
        ``updated`` time of its own is stamped with ``now``.
        """
        now = now or datetime.now(timezone.utc)
        return self._write(lambda conn: self._upsert(conn, batch, now))

    def delete_article(self, article_id: str) -> bool:
        """Remove an article from the store and every feed; False when there was none."""

        def delete(conn: Connection) -> bool:
            pk = conn.scalar(sa.select(articles.c.pk).where(articles.c.id == article_id))
            if pk is None:
                return False
            for table in (article_categories, reads_hourly, reads_minutely):
                conn.execute(table.delete().where(table.c.article_pk == pk))
            conn.execute(articles.delete().where(articles.c.pk == pk))
            return True

        return self._write(delete)

    def record_reads(self, events: Sequence[ReadEvent]) -> None:
        """Add read events to their hourly and minute buckets, in one transaction.

        Raises ``KeyError`` naming the first unknown article id; nothing is written then.
        """

        def record(conn: Connection) -> None:
            pks = self._pks(conn, {event.article_id for event in events})
            for event in events:
                if event.article_id not in pks:
                    raise KeyError(event.article_id)
            for table, width in ((reads_hourly, timedelta(hours=1)), (reads_minutely, timedelta(minutes=1))):
                totals: dict[tuple[datetime, int], int] = {}
                for event in events:
                    key = (_floor(event.at, width), pks[event.article_id])
                    totals[key] = totals.get(key, 0) + event.count
                self._add_counts(conn, table, totals)

        self._write(record)

    def prune_reads(self, before: datetime) -> int:
        """Drop read buckets older than ``before``; return how many rows went."""

        def prune(conn: Connection) -> int:
            removed = 0
            for table in (reads_hourly, reads_minutely):
                removed += conn.execute(table.delete().where(table.c.bucket < before)).rowcount
            return removed

        return self._write(prune)

    # -- reads ----------------------------------------------------------------------

    def newest(self, limit: int, category: Category | None = None, source: Source | None = None) -> list[Article]:
        """The newest ``limit`` articles overall, of a category and its descendants, or of a source."""
        if category is not None:
            ranked = (
                sa.select(article_categories.c.article_pk.label("pk"), article_categories.c.published)
                .join(categories, categories.c.id == article_categories.c.category_id)
                .where(categories.c.slug_path == category.slug_path)
                .order_by(article_categories.c.published.desc(), article_categories.c.article_pk.desc())
                .limit(limit)
                .subquery()
            )
            query = self._article_select().join(ranked, ranked.c.pk == articles.c.pk)
        else:
            query = self._article_select()
            if source is not None:
                query = query.where(articles.c.source_id == sa.select(sources.c.id).where(sources.c.slug == source.slug).scalar_subquery())
            query = query.limit(limit)
        query = query.order_by(articles.c.published.desc(), articles.c.pk.desc())
        with self._read() as conn:
            return [self._article(row) for row in conn.execute(query)]

    def ranking(self, now: datetime, window: timedelta, limit: int, category: Category | None = None) -> list[Ranked]:
        """The most-read articles in ``(now - window, now]``, most reads first, then newest.

        Whole hours come from the hourly buckets; the hour the window starts in is
        counted from its minute buckets, so the window edge is exact to the minute.
        """
        start = now - window
        edge_hour = _floor(start, timedelta(hours=1))
        counted = sa.union_all(
            sa.select(reads_hourly.c.article_pk, reads_hourly.c.count).where(reads_hourly.c.bucket > edge_hour),
            sa.select(reads_minutely.c.article_pk, reads_minutely.c.count).where(
                reads_minutely.c.bucket >= _floor(start, timedelta(minutes=1)),
                reads_minutely.c.bucket < edge_hour + timedelta(hours=1),
            ),
        ).subquery()
        totals = sa.select(counted.c.article_pk, sa.func.sum(counted.c.count).label("reads")).group_by(counted.c.article_pk)
        if category is not None:
            totals = totals.where(
                counted.c.article_pk.in_(
                    sa.select(article_categories.c.article_pk)
                    .join(categories, categories.c.id == article_categories.c.category_id)
                    .where(categories.c.slug_path == category.slug_path)
                )
            )
        totals_q = totals.subquery()
        query = (
            self._article_select(totals_q.c.reads)
            .join(totals_q, totals_q.c.article_pk == articles.c.pk)
            .order_by(totals_q.c.reads.desc(), articles.c.published.desc(), articles.c.pk.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [Ranked(self._article(row), int(row.reads)) for row in conn.execute(query)]

    def ranking_changed(self, feed: str, signature: str, now: datetime | None = None) -> datetime:
        """When the ranking shown by ``feed`` last changed: ``now`` if ``signature`` differs
        from the one last seen, else the time recorded then."""
        with self._read() as conn:
            row = conn.execute(sa.select(ranking_states).where(ranking_states.c.feed == feed)).first()
        if row is not None and row.signature == signature:
            return row.changed
        now = now or datetime.now(timezone.utc)

        def remember(conn: Connection) -> datetime:
            current = conn.execute(sa.select(ranking_states).where(ranking_states.c.feed == feed)).first()
            if current is None:
                conn.execute(ranking_states.insert().values(feed=feed, signature=signature, changed=now))
            elif current.signature != signature:
                conn.execute(ranking_states.update().where(ranking_states.c.feed == feed).values(signature=signature, changed=now))
            else:
                return current.changed
            return now

        return self._write(remember)

    def article(self, article_id: str) -> Article | None:
        with self._read() as conn:
            row = conn.execute(self._article_select().where(articles.c.id == article_id)).first()
        return self._article(row) if row else None

    def known_ids(self, ids: set[str]) -> set[str]:
        """Those of ``ids`` that name a stored article."""
        with self._read() as conn:
            return set(self._pks(conn, ids))

    def has_reads_since(self, moment: datetime) -> bool:
        with self._read() as conn:
            return conn.scalar(sa.select(reads_hourly.c.bucket).where(reads_hourly.c.bucket >= moment).limit(1)) is not None

    def categories(self) -> list[Category]:
        """Every category, parents before children, siblings in pinyin order (as Chinese indexes sort)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(categories.c.path, categories.c.slug_path)).all()
        found = [Category(tuple(row.path.split("/")), tuple(row.slug_path.split("/"))) for row in rows]
        return sorted(found, key=lambda category: [slugify(name) for name in category.names])

    def category(self, slug_path: str) -> Category | None:
        with self._read() as conn:
            row = conn.execute(sa.select(categories.c.path, categories.c.slug_path).where(categories.c.slug_path == slug_path)).first()
        return Category(tuple(row.path.split("/")), tuple(row.slug_path.split("/"))) if row else None

    def sources(self) -> list[Source]:
        with self._read() as conn:
            rows = conn.execute(sa.select(sources.c.name, sources.c.slug, sources.c.url).order_by(sources.c.slug)).all()
        return [Source(row.name, row.slug, row.url) for row in rows]

    def source(self, slug: str) -> Source | None:
        with self._read() as conn:
            row = conn.execute(sa.select(sources.c.name, sources.c.slug, sources.c.url).where(sources.c.slug == slug)).first()
        return Source(row.name, row.slug, row.url) if row else None

    def count_articles(self) -> int:
        with self._read() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(articles)) or 0)

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- internals ------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if getattr(exc, "connection_invalidated", False) or _is_connection_error(exc):
                raise StoreUnavailable(str(exc.orig)) from exc
            raise

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._guard(), self.engine.connect() as conn:
            yield conn

    def _write(self, work: Any) -> Any:
        """Run ``work(conn)`` in one write transaction; retry when a concurrent writer won a race."""
        for attempt in range(5):
            try:
                with self._guard(), self.engine.connect() as conn:
                    conn = conn.execution_options(immediate=True)
                    with conn.begin():
                        return work(conn)
            except sa.exc.IntegrityError:
                if attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _article_select(self, *extra: Any) -> sa.Select:
        return (
            sa.select(
                articles,
                categories.c.path.label("category_path"),
                sources.c.name.label("source_name"),
                sources.c.slug.label("source_slug"),
                sources.c.url.label("source_url"),
                *extra,
            )
            .select_from(articles)
            .outerjoin(categories, categories.c.id == articles.c.category_id)
            .outerjoin(sources, sources.c.id == articles.c.source_id)
        )

    @staticmethod
    def _article(row: Any) -> Article:
        return Article(
            id=row.id,
            url=row.url,
            title=row.title,
            summary=row.summary,
            content=row.content,
            author=row.author,
            source=Source(row.source_name, row.source_slug, row.source_url) if row.source_name else None,
            category=tuple(row.category_path.split("/")) if row.category_path else (),
            tags=tuple(json.loads(row.tags)),
            image=row.image,
            published=row.published,
            updated=row.updated,
        )

    def _upsert(self, conn: Connection, batch: Sequence[Article], now: datetime) -> list[Outcome]:
        category_ids = self._ensure_categories(conn, {a.category for a in batch if a.category})
        source_ids = self._ensure_sources(conn, [a.source for a in batch if a.source])
        existing = {row.id: row._asdict() for row in self._rows_by_id(conn, {a.id for a in batch})}
        outcomes: list[Outcome] = []
        for article in batch:
            values = {
                "id": article.id,
                "url": article.url,
                "title": article.title,
                "summary": article.summary,
                "content": article.content,
                "author": article.author,
                "source_id": source_ids[article.source.name] if article.source else None,
                "category_id": category_ids[article.category] if article.category else None,
                "tags": json.dumps(list(article.tags), ensure_ascii=False),
                "image": article.image,
                "published": article.published,
                "updated": article.updated,
            }
            old = existing.get(article.id)
            if old is None:
                pk = conn.execute(articles.insert().values(values)).inserted_primary_key[0]
                outcomes.append("created")
            else:
                pk = old["pk"]
                changed = any(old[key] != values[key] for key in _COMPARED)
                if values["updated"] is None:
                    values["updated"] = now if changed else old["updated"]
                if not changed and values["updated"] == old["updated"]:
                    outcomes.append("unchanged")
                    continue
                conn.execute(articles.update().where(articles.c.pk == pk).values(values))
                outcomes.append("updated")
                if old["category_id"] == values["category_id"] and old["published"] == values["published"]:
                    existing[article.id] = {**values, "pk": pk}
                    continue
                conn.execute(article_categories.delete().where(article_categories.c.article_pk == pk))
            existing[article.id] = {**values, "pk": pk}
            if article.category:
                conn.execute(
                    article_categories.insert(),
                    [
                        {"category_id": category_ids[article.category[:depth]], "article_pk": pk, "published": article.published}
                        for depth in range(1, len(article.category) + 1)
                    ],
                )
        return outcomes

    def _ensure_categories(self, conn: Connection, paths: Iterable[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
        wanted = {path[:depth] for path in paths for depth in range(1, len(path) + 1)}
        known: dict[tuple[str, ...], tuple[int, str]] = {}
        for chunk in _chunks(["/".join(path) for path in wanted]):
            for row in conn.execute(sa.select(categories).where(categories.c.path.in_(chunk))):
                known[tuple(row.path.split("/"))] = (row.id, row.slug_path)
        for path in sorted(wanted, key=len):
            if path in known:
                continue
            parent = known[path[:-1]] if len(path) > 1 else None
            slug = self._category_slugs.get("/".join(path)) or self._category_slugs.get(path[-1]) or slugify(path[-1])
            slug_path = self._free(conn, categories.c.slug_path, f"{parent[1]}/{slug}" if parent else slug)
            category_id = conn.execute(
                categories.insert().values(parent_id=parent[0] if parent else None, path="/".join(path), slug_path=slug_path)
            ).inserted_primary_key[0]
            known[path] = (category_id, slug_path)
        return {path: ids[0] for path, ids in known.items()}

    def _ensure_sources(self, conn: Connection, given: Iterable[Source]) -> dict[str, int]:
        latest: dict[str, Source] = {}
        for source in given:  # the last URL given for a name wins; no URL keeps the one known
            if source.url or source.name not in latest:
                latest[source.name] = source
        known: dict[str, int] = {}
        for chunk in _chunks(list(latest)):
            for row in conn.execute(sa.select(sources).where(sources.c.name.in_(chunk))):
                known[row.name] = row.id
                url = latest[row.name].url
                if url and url != row.url:
                    conn.execute(sources.update().where(sources.c.id == row.id).values(url=url))
        for name, source in latest.items():
            if name not in known:
                slug = self._free(conn, sources.c.slug, self._source_slugs.get(name) or slugify(name))
                known[name] = conn.execute(sources.insert().values(name=name, slug=slug, url=source.url)).inserted_primary_key[0]
        return known

    @staticmethod
    def _free(conn: Connection, column: sa.Column, wanted: str) -> str:
        """``wanted``, or ``wanted-2``, ``wanted-3``… when two names spell the same slug."""
        candidate, number = wanted, 1
        while conn.scalar(sa.select(sa.func.count()).where(column == candidate)):
            number += 1
            candidate = f"{wanted}-{number}"
        return candidate

    @staticmethod
    def _rows_by_id(conn: Connection, ids: set[str]) -> Iterator[Any]:
        for chunk in _chunks(sorted(ids)):
            yield from conn.execute(sa.select(articles).where(articles.c.id.in_(chunk)))

    @staticmethod
    def _pks(conn: Connection, ids: set[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(sorted(ids)):
            found.update((row.id, row.pk) for row in conn.execute(sa.select(articles.c.id, articles.c.pk).where(articles.c.id.in_(chunk))))
        return found

    def _add_counts(self, conn: Connection, table: sa.Table, totals: dict[tuple[datetime, int], int]) -> None:
        if not totals:
            return
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        rows = [{"bucket": bucket, "article_pk": pk, "count": count} for (bucket, pk), count in totals.items()]
        for chunk in _chunks(rows, 300):
            statement = dialect.insert(table).values(chunk)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["bucket", "article_pk"], set_={"count": table.c.count + statement.excluded.count}
                )
            )


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, say when a transaction begins (see below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # A write takes the lock up front: a deferred transaction that reads and
            # then writes fails at once, without waiting, when another writer got in between.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _is_connection_error(exc: sa.exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(word in text for word in ("connection", "could not connect", "server closed", "terminating", "unable to open"))


def _floor(moment: datetime, width: timedelta) -> datetime:
    moment = moment.astimezone(timezone.utc)
    seconds = int(moment.timestamp())
    step = int(width.total_seconds())
    return datetime.fromtimestamp(seconds - seconds % step, timezone.utc)


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
