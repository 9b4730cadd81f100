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
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
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

# Read counts, summed per article into minute, hour and day buckets. A ranking sums whole
# hours and, at the ragged ends of its window, minutes; the day buckets only bound it from
# above, so that the long tail of rarely read articles need not be summed (Store.ranking).
# On SQLite the tables are WITHOUT ROWID: the primary key is the table, counts included.
# ``ix_*_article`` (article, bucket, count) sums one article over a range of buckets from
# the index alone; ``ix_reads_daily_busiest`` (bucket, count, article) lists a day's most
# read articles, or those read at least so often, without reading the rest.
def _reads_table(name: str, *indexes: sa.Index) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("bucket", UTCDateTime, primary_key=True),
        sa.Column("article_pk", sa.Integer, sa.ForeignKey("articles.pk", ondelete="CASCADE"), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        *indexes,
        sqlite_with_rowid=False,
    )


reads_minutely = _reads_table("reads_minutely", sa.Index("ix_reads_minutely_article", "article_pk", "bucket", "count"))
reads_hourly = _reads_table("reads_hourly", sa.Index("ix_reads_hourly_article", "article_pk", "bucket", "count"))
reads_daily = _reads_table(
    "reads_daily",
    sa.Index("ix_reads_daily_article", "article_pk"),
    sa.Index("ix_reads_daily_busiest", "bucket", "count", "article_pk"),
)

ranking_states = sa.Table(
    "ranking_states",
    metadata,
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("signature", sa.String(64), nullable=False),
    sa.Column("changed", UTCDateTime, nullable=False),
)

# One row per feed scope ("all", "category:<slug path>", "source:<slug>", "hot"): bumped
# in the same transaction as any change to what its feeds show, so a rendered feed can
# be cached under its version and never served stale (feeds/serving.py); and how many
# articles the scope holds (a category with its descendants), kept in the same
# transaction, so that numbering archive pages costs one lookup, not a count of them all.
feed_versions = sa.Table(
    "feed_versions",
    metadata,
    sa.Column("scope", sa.String(1100), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("articles", sa.BigInteger, nullable=False, server_default="0"),
)

Outcome = Literal["created", "updated", "unchanged"]
_CONNECT_TIMEOUT = 5  # seconds a PostgreSQL connect may take before the request is answered 503 (see _engine)
_MIGRATION_LOCK = 0x66656564  # "feed": the PostgreSQL advisory lock key that Store.migrate holds
_CHUNK = 500
_COMPARED = ("url", "title", "summary", "content", "author", "source_id", "category_id", "tags", "image", "published")


@dataclass(frozen=True)
class Ranked:
    """An article and its reads inside a ranking window."""

    article: Article
    reads: int


class Store:
    """Articles, categories, sources and reads in one SQL database."""

    def __init__(
        self,
        url: str,
        category_slugs: dict[str, str] | None = None,
        source_slugs: dict[str, str] | None = None,
        on_change: Callable[[set[str]], None] | None = None,
        recheck_seconds: float = 0,
    ):
        """``on_change`` is called after each committed write with the scopes it changed.
        A feed version read is trusted for ``recheck_seconds`` (see ``version``)."""
        self.url = url
        self.engine = _engine(url)
        self._category_slugs = category_slugs or {}
        self._source_slugs = source_slugs or {}
        self.on_change = on_change
        self._versions = threading.local()
        self._versions_lock = threading.Lock()
        self._version_connections: list[Any] = []
        self.recheck_seconds = recheck_seconds
        self._known_versions: dict[str, tuple[int, float]] = {}  # scope -> (version, trusted until)
        self._changes = 0  # changes heard of (forget_versions): a version read across one is not kept
        placeholder = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._version_sql = f"SELECT version FROM feed_versions WHERE scope = {placeholder}"

    def close(self) -> None:
        with self._versions_lock:
            for connection in self._version_connections:
                with suppress(Exception):
                    connection.close()
            self._version_connections.clear()
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
            if conn.dialect.name == "postgresql":
                # Instances starting together would each create the schema and all but one fail;
                # the lock (held until commit) lets one migrate while the others wait, then find it done.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
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
        if not _storable(article_id):
            return False

        def delete(conn: Connection) -> bool:
            row = conn.execute(sa.select(articles.c.pk, articles.c.category_id, articles.c.source_id).where(articles.c.id == article_id)).first()
            if row is None:
                return False
            pk = row.pk
            self._changed(conn, {row.category_id}, {row.source_id}, added=[], removed=[(row.category_id, row.source_id)])
            for table in (article_categories, reads_minutely, reads_hourly, reads_daily):
                conn.execute(table.delete().where(table.c.article_pk == pk))
            conn.execute(articles.delete().where(articles.c.pk == pk))
            return True

        return self._write(delete)

    _reads_pruned_before: datetime | None = None  # how far record_reads(keep=…) has pruned, in this process

    def record_reads(self, events: Sequence[ReadEvent], keep: timedelta | None = None, now: datetime | None = None) -> None:
        """Add read events to their minute, hour and day buckets, in one transaction.

        Raises ``KeyError`` naming the first unknown article id; nothing is written then.
        With ``keep`` (the longest ranking window), buckets that no window ending at ``now``
        or later can reach are then pruned, at most once an hour per process, in a
        transaction of their own; a failed prune is left for the next call.
        """
        if events:

            def record(conn: Connection) -> None:
                pks = self._pks(conn, {event.article_id for event in events})
                for event in events:
                    if event.article_id not in pks:
                        raise KeyError(event.article_id)
                moments = [(int(event.at.timestamp()), pks[event.article_id], event.count) for event in events]
                for table, width in _BUCKETS:
                    step = int(width.total_seconds())
                    totals: dict[tuple[int, int], int] = {}
                    for seconds, pk, count in moments:
                        key = (seconds - seconds % step, pk)
                        totals[key] = totals.get(key, 0) + count
                    self._add_counts(conn, table, totals)
                self._bump(conn, {"hot"})

            self._write(record)
        if keep is not None:
            cutoff = _floor((now or datetime.now(timezone.utc)) - keep, _HOUR)
            if self._reads_pruned_before is None or cutoff > self._reads_pruned_before:
                self._reads_pruned_before = cutoff
                try:
                    self.prune_reads(cutoff)
                except sa.exc.DBAPIError:  # e.g. a deadlock with a concurrent writer: try again next time
                    self._reads_pruned_before = None

    def prune_reads(self, before: datetime) -> int:
        """Drop the read buckets that end by ``before``; return how many rows went.

        A ranking window of length W ending at ``now`` or later reads no bucket that ends
        by ``now - W``, so ``before = now - longest window`` keeps every list exact.
        """

        def prune(conn: Connection) -> int:
            removed = 0
            for table, width in _BUCKETS:
                removed += conn.execute(table.delete().where(table.c.bucket <= before - width)).rowcount
            return removed

        return self._write(prune)

    # -- reads ----------------------------------------------------------------------

    def newest(self, limit: int, category: Category | None = None, source: Source | None = None) -> list[Article]:
        """The newest ``limit`` articles overall, of a category and its descendants, or of a source."""
        if category is not None:
            # The category's id as a scalar subquery, not a join: PostgreSQL then reads the newest
            # `limit` entries backwards along the primary key instead of sorting all of them.
            ranked = (
                sa.select(article_categories.c.article_pk.label("pk"), article_categories.c.published)
                .where(article_categories.c.category_id == self._category_id(category))
                .order_by(article_categories.c.published.desc(), article_categories.c.article_pk.desc())
                .limit(limit)
                .subquery()
            )
            query = self._article_select().join(ranked, ranked.c.pk == articles.c.pk)
        else:
            query = self._article_select()
            if source is not None:
                query = query.where(articles.c.source_id == self._source_id(source))
            query = query.limit(limit)
        query = query.order_by(articles.c.published.desc(), articles.c.pk.desc())
        with self._read() as conn:
            return [self._article(row) for row in conn.execute(query)]

    def archive(
        self, size: int, page: int | None, category: Category | None = None, source: Source | None = None
    ) -> tuple[int, list[Article]]:
        """How many articles the feed of ``category`` (descendants included), ``source`` or everything
        holds, and its ``page``-th run of ``size`` articles counted from the oldest (page 1: the
        oldest ``size``), newest first; no articles when ``page`` is None.

        Counted from the oldest, in (published, pk) order, so that new articles never move an
        earlier page; both answers come from one transaction, so they agree.
        """
        if category is not None:
            members = (
                sa.select(article_categories.c.article_pk.label("pk"), article_categories.c.published)
                .where(article_categories.c.category_id == self._category_id(category))
            )
            order = (article_categories.c.published, article_categories.c.article_pk)
        else:
            members = sa.select(articles.c.pk, articles.c.published)
            if source is not None:
                members = members.where(articles.c.source_id == self._source_id(source))
            order = (articles.c.published, articles.c.pk)
        scope = f"category:{category.slug_path}" if category else f"source:{source.slug}" if source else "all"
        with self._read() as conn:
            total = int(conn.scalar(sa.select(feed_versions.c.articles).where(feed_versions.c.scope == scope)) or 0)
            if page is None:
                return total, []
            run = members.order_by(*order).offset((page - 1) * size).limit(size).subquery()
            query = (
                self._article_select().join(run, run.c.pk == articles.c.pk)
                .order_by(articles.c.published.desc(), articles.c.pk.desc())
            )
            return total, [self._article(row) for row in conn.execute(query)]

    def ranking(self, now: datetime, window: timedelta, limit: int, category: Category | None = None) -> list[Ranked]:
        """The ``limit`` articles most read in the ``window`` ending at ``now``, of ``category``
        and its descendants when given: most reads first, then the newest, then the last stored.

        The window is exact to the minute: a read counts when its minute overlaps
        ``(now - window, now]``. Whole hours are summed from the hourly buckets, the ragged
        hours at both ends from their minute buckets.

        The long tail of rarely read articles is not summed when it cannot reach the list
        (see ``_top_by_threshold``); when no useful bound is found every article is summed.
        All statements read one snapshot of the database.
        """
        if limit < 1:
            return []
        if window <= timedelta(0):
            raise ValueError(f"a ranking window must be positive, got {window}")
        span = _Span.of(now, window)
        with self._read() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot, as SQLite gives
            category_id = None
            if category is not None:
                category_id = conn.scalar(sa.select(categories.c.id).where(categories.c.slug_path == category.slug_path))
                if category_id is None:
                    return []
            top = self._top_by_threshold(conn, span, limit, category_id)
            if top is None:
                top = self._top_by_summing_all(conn, span, limit, category_id)
            rows = {}
            for chunk in _chunks([pk for pk, _ in top]):
                rows.update((row.pk, row) for row in conn.execute(self._article_select().where(articles.c.pk.in_(chunk))))
        return [Ranked(self._article(rows[pk]), reads) for pk, reads in top]

    def ranking_changed(self, feed: str, signature: str, now: datetime | None = None) -> datetime:
        """When the ranking shown by ``feed`` last changed: the time stored with ``signature``
        when that is the ranking last seen; else ``now`` (never earlier than the time stored
        before), which is stored with the new signature.

        Safe for concurrent requests on SQLite and PostgreSQL without locking: the state
        moves only by compare-and-swap (an insert that does nothing on conflict, an update
        conditional on the signature and time read), and a request that loses the race reads
        the winner's state again. Two requests that see the same new ranking therefore store
        it once and answer the same time, and the time never goes backwards.
        """
        now = now or datetime.now(timezone.utc)
        changed = now
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        for _ in range(10):
            with self._read() as conn:
                row = conn.execute(
                    sa.select(ranking_states.c.signature, ranking_states.c.changed).where(ranking_states.c.feed == feed)
                ).first()
            if row is not None and row.signature == signature:
                return row.changed
            if row is None:
                changed = now
                swap: sa.Executable = (
                    dialect.insert(ranking_states)
                    .values(feed=feed, signature=signature, changed=changed)
                    .on_conflict_do_nothing(index_elements=["feed"])
                )
            else:
                changed = max(now, row.changed)
                swap = (
                    ranking_states.update()
                    .where(
                        ranking_states.c.feed == feed,
                        ranking_states.c.signature == row.signature,
                        ranking_states.c.changed == row.changed,
                    )
                    .values(signature=signature, changed=changed)
                )
            if self._write(lambda conn: conn.execute(swap).rowcount) == 1:
                return changed
        return changed  # lost ten races in a row: answer without storing; the next request stores it

    def article(self, article_id: str) -> Article | None:
        if not _storable(article_id):
            return None
        with self._read() as conn:
            row = conn.execute(self._article_select().where(articles.c.id == article_id)).first()
        return self._article(row) if row else None

    def known_ids(self, ids: set[str]) -> set[str]:
        """Those of ``ids`` that name a stored article."""
        with self._read() as conn:
            return set(self._pks(conn, {i for i in ids if _storable(i)}))

    def has_reads_since(self, moment: datetime) -> bool:
        """Whether any read is stored at ``moment`` or later (to the minute)."""
        with self._read() as conn:
            query = sa.select(reads_minutely.c.bucket).where(reads_minutely.c.bucket >= _floor(moment, _MINUTE)).limit(1)
            return conn.scalar(query) is not None

    def categories(self) -> list[Category]:
        """Every category, parents before children, siblings in pinyin order (as Chinese indexes sort)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(categories.c.path, categories.c.slug_path)).all()
        found = [Category(tuple(row.path.split("/")), tuple(row.slug_path.split("/"))) for row in rows]
        return sorted(found, key=lambda category: [slugify(name) for name in category.names])

    def category(self, slug_path: str) -> Category | None:
        if not _storable(slug_path):
            return None
        with self._read() as conn:
            row = conn.execute(sa.select(categories.c.path, categories.c.slug_path).where(categories.c.slug_path == slug_path)).first()
        return Category(tuple(row.path.split("/")), tuple(row.slug_path.split("/"))) if row else None

    def sources(self) -> list[Source]:
        with self._read() as conn:
            rows = conn.execute(sa.select(sources.c.name, sources.c.slug, sources.c.url).order_by(sources.c.slug)).all()
        return [Source(row.name, row.slug, row.url) for row in rows]

    def source(self, slug: str) -> Source | None:
        if not _storable(slug):
            return None
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
        """Run ``work(conn)`` in one write transaction; retry when a concurrent writer won a race.
        After the commit, tell ``on_change`` which scopes the work bumped."""
        for attempt in range(5):
            try:
                with self._guard(), self.engine.connect() as conn:
                    conn = conn.execution_options(immediate=True)
                    conn.info["feeds_changed"] = changed = set()
                    try:
                        with conn.begin():
                            result = work(conn)
                    finally:
                        conn.info.pop("feeds_changed", None)
                if changed:
                    self.forget_versions(changed)
                    if self.on_change is not None:
                        self.on_change(changed)
                return result
            except sa.exc.IntegrityError:
                if attempt == 4:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def version(self, scope: str) -> int:
        """How many times what the feeds of ``scope`` show has changed (0: never).

        Every poll asks this. A version read from the database is trusted for
        ``recheck_seconds``, so that a busy feed costs each process one lookup a period, not
        one a poll: a change committed through another process or instance shows within
        that time, one committed through this store, or told of by ``forget_versions``, at once.
        """
        known = self._known_versions.get(scope)
        if known is not None and time.monotonic() < known[1]:
            return known[0]
        changes = self._changes
        version = self._read_version(scope)
        if version is not None and self.recheck_seconds and changes == self._changes:
            # Only scopes with a row are kept: a scope is anyone's text (it comes from the URL).
            self._known_versions[scope] = (version, time.monotonic() + self.recheck_seconds)
        return version or 0

    def forget_versions(self, scopes: Iterable[str] | None = None) -> None:
        """Stop trusting the versions read of ``scopes`` (None: of all): they changed, here or
        through another process (``cache.ChangeNews``)."""
        with self._versions_lock:
            self._changes += 1
            if scopes is None:
                self._known_versions.clear()
            for scope in scopes or ():
                self._known_versions.pop(scope, None)

    def _read_version(self, scope: str) -> int | None:
        """The version in the database, None without a row. Skips SQLAlchemy's pool and statement machinery:
        each thread keeps one autocommit driver connection for it alone."""
        if not _storable(scope):
            return None
        for attempt in (1, 2):  # a connection the server dropped gets one fresh try
            connection = getattr(self._versions, "connection", None)
            fresh = connection is None
            try:
                if connection is None:
                    connection = self.engine.raw_connection()
                    connection.detach()  # ours for good, not the pool's
                    if self.engine.dialect.name == "postgresql":
                        # or every lookup would hold a transaction, and its locks, open
                        connection.dbapi_connection.autocommit = True
                    self._versions.connection = connection
                    with self._versions_lock:
                        self._version_connections.append(connection)
                cursor = connection.cursor()
                cursor.execute(self._version_sql, (scope,))
                row = cursor.fetchone()
                cursor.close()
                break
            except (self.engine.dialect.loaded_dbapi.Error, sa.exc.DBAPIError) as exc:
                self._versions.connection = None
                if connection is not None:
                    with suppress(Exception):
                        connection.close()
                    with self._versions_lock, suppress(ValueError):
                        self._version_connections.remove(connection)
                if fresh or attempt == 2:
                    raise StoreUnavailable(f"cannot read feed versions: {exc}") from exc
        return int(row[0]) if row else None

    @staticmethod
    def _bump(conn: Connection, scopes: set[str]) -> None:
        """Count a change to each of ``scopes``, in the caller's transaction."""
        scopes = scopes - conn.info["feeds_changed"]
        if not scopes:
            return
        bumped = conn.execute(
            feed_versions.update().where(feed_versions.c.scope.in_(sorted(scopes))).values(version=feed_versions.c.version + 1)
            .returning(feed_versions.c.scope)
        ).scalars().all()
        missing = scopes - set(bumped)
        if missing:
            conn.execute(feed_versions.insert(), [{"scope": scope, "version": 1} for scope in sorted(missing)])
        conn.info["feeds_changed"].update(scopes)

    @staticmethod
    def _changed(
        conn: Connection,
        category_ids: set[int | None],
        source_ids: set[int | None],
        added: list[tuple[int | None, int | None]],
        removed: list[tuple[int | None, int | None]],
    ) -> None:
        """Record a change in the caller's transaction: bump every scope an article in these
        categories and sources shows in (everything, hot lists, its category and every ancestor,
        its source), and move the article counts of the scopes that articles joined (``added``:
        their category and source) and left (``removed``), both among those categories and sources."""
        category_scopes, source_scopes = Store._scope_names(conn, category_ids, source_ids)
        Store._bump(conn, {"all", "hot", *(scope for scopes in (*category_scopes.values(), *source_scopes.values()) for scope in scopes)})
        deltas: Counter[str] = Counter()
        for members, step in ((added, 1), (removed, -1)):
            for category_id, source_id in members:
                for scope in ("all", *category_scopes.get(category_id, ()), *source_scopes.get(source_id, ())):
                    deltas[scope] += step
        moved = [{"moved_scope": scope, "delta": delta} for scope, delta in sorted(deltas.items()) if delta]
        if moved:
            conn.execute(
                feed_versions.update().where(feed_versions.c.scope == sa.bindparam("moved_scope"))
                .values(articles=feed_versions.c.articles + sa.bindparam("delta")),
                moved,
            )

    @staticmethod
    def _scope_names(
        conn: Connection, category_ids: set[int | None], source_ids: set[int | None]
    ) -> tuple[dict[int, tuple[str, ...]], dict[int, tuple[str]]]:
        """The scopes of each category (itself and every ancestor) and of each source."""
        category_scopes: dict[int, tuple[str, ...]] = {}
        source_scopes: dict[int, tuple[str]] = {}
        category_ids, source_ids = category_ids - {None}, source_ids - {None}
        if category_ids:
            for category_id, slug_path in conn.execute(sa.select(categories.c.id, categories.c.slug_path).where(categories.c.id.in_(category_ids))):
                parts = slug_path.split("/")
                category_scopes[category_id] = tuple("category:" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
        if source_ids:
            for source_id, slug in conn.execute(sa.select(sources.c.id, sources.c.slug).where(sources.c.id.in_(source_ids))):
                source_scopes[source_id] = ("source:" + slug,)
        return category_scopes, source_scopes

    @staticmethod
    def _category_id(category: Category) -> sa.ScalarSelect[int]:
        return sa.select(categories.c.id).where(categories.c.slug_path == category.slug_path).scalar_subquery()

    @staticmethod
    def _source_id(source: Source) -> sa.ScalarSelect[int]:
        return sa.select(sources.c.id).where(sources.c.slug == source.slug).scalar_subquery()

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
        touched_categories: set[int | None] = set()
        touched_sources: set[int | None] = set()
        added: list[tuple[int | None, int | None]] = []  # (category, source) of each article that joins them
        removed: list[tuple[int | None, int | None]] = []  # ... and of each that leaves them
        # New articles and closure rows are written a statement for many, not one each: on
        # PostgreSQL every statement is a round trip.
        new: dict[str, tuple[dict[str, Any], Article]] = {}
        closure: list[dict[str, Any]] = []

        def place(article: Article, pk: int) -> None:
            closure.extend(
                {"category_id": category_ids[article.category[:depth]], "article_pk": pk, "published": article.published}
                for depth in range(1, len(article.category) + 1)
            )

        def write_new() -> None:
            if new:
                rows = [values for values, _ in new.values()]
                pks = conn.execute(articles.insert().returning(articles.c.pk, sort_by_parameter_order=True), rows).scalars()
                for (values, article), pk in zip(new.values(), pks):
                    existing[article.id] = {**values, "pk": pk}
                    place(article, pk)
                new.clear()
            if closure:
                conn.execute(article_categories.insert(), closure)
                closure.clear()

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
            if article.id in new:  # the same id again in this batch: an edit of the one just made
                write_new()
            old = existing.get(article.id)
            if old is None:
                new[article.id] = (values, article)
                outcomes.append("created")
                added.append((values["category_id"], values["source_id"]))
                touched_categories.add(values["category_id"])
                touched_sources.add(values["source_id"])
                continue
            pk = old["pk"]
            changed = any(old[key] != values[key] for key in _COMPARED)
            if values["updated"] is None:
                values["updated"] = now if changed else old["updated"]
            if not changed and values["updated"] == old["updated"]:
                outcomes.append("unchanged")
                continue
            touched_categories.update((old["category_id"], values["category_id"]))
            touched_sources.update((old["source_id"], values["source_id"]))
            if (old["category_id"], old["source_id"]) != (values["category_id"], values["source_id"]):
                removed.append((old["category_id"], old["source_id"]))
                added.append((values["category_id"], values["source_id"]))
            conn.execute(articles.update().where(articles.c.pk == pk).values(values))
            outcomes.append("updated")
            existing[article.id] = {**values, "pk": pk}
            if old["category_id"] != values["category_id"] or old["published"] != values["published"]:
                write_new()  # the rows to delete may be among those not yet written
                conn.execute(article_categories.delete().where(article_categories.c.article_pk == pk))
                place(article, pk)
        write_new()
        if any(outcome != "unchanged" for outcome in outcomes):
            self._changed(conn, touched_categories, touched_sources, added, removed)
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

    def _add_counts(self, conn: Connection, table: sa.Table, totals: dict[tuple[int, int], int]) -> None:
        """Add ``totals`` ((bucket in Unix seconds, article pk): reads) to their buckets in one
        upsert: on PostgreSQL one statement over arrays of the rows (an executemany there
        sends each row on its own), on SQLite one statement executed for every row.

        Rows go in key order, so concurrent writers lock the same rows in the same order
        (no deadlock on PostgreSQL).
        """
        if not totals:
            return
        moments: dict[int, datetime] = {}
        keys = sorted(totals)
        buckets = [moments.get(bucket) or moments.setdefault(bucket, datetime.fromtimestamp(bucket, timezone.utc)) for bucket, _ in keys]
        if self.engine.dialect.name == "postgresql":
            given = {"buckets": buckets, "pks": [pk for _, pk in keys], "counts": [totals[key] for key in keys]}
            conn.execute(_statements.add_counts(table.name, "postgresql"), given)
        else:
            rows = [{"bucket": bucket, "article_pk": pk, "count": totals[bucket_s, pk]} for bucket, (bucket_s, pk) in zip(buckets, keys)]
            conn.execute(_statements.add_counts(table.name, "sqlite"), rows)

    # -- ranking internals ------------------------------------------------------------
    # The statements are built once per shape (_statements) and run with new parameters:
    # building them anew took longer than running them.

    def _top_by_threshold(self, conn: Connection, span: _Span, limit: int, category_id: int | None) -> list[tuple[int, int]] | None:
        """The top ``limit`` (article pk, reads), summing only the articles that can be in it;
        None when no bound is found that spares most of the long tail.

        The ``limit``-th best of any articles' sums, T, is a lower bound on the true one.
        An article with T reads in the window has at least T/D of them in one of the D day
        buckets the window touches (its ragged end days included), so the articles with a
        day count of ceil(T/D) or more, which the (bucket, count) index lists without
        reading the rest, are all that can be in the list. T comes from the articles with
        the best day counts, found at the top of the same index.
        """
        seeds, sparse = self._seeds(conn, span, limit, category_id)
        sums = self._sums(conn, span, seeds)
        threshold = _nth(sums, limit)
        least = -(-threshold // len(span.days))  # ceil(T / D)
        if least < 2:
            return None  # every article read in the window could be in the list
        if sparse:  # a small category: through the list of its members, as its seeds were
            candidates = self._read_at_least(conn, span, least, category_id)
        else:
            candidates = self._read_at_least(conn, span, least, None)
            if candidates is not None and category_id is not None:
                candidates = self._members(conn, candidates - sums.keys(), category_id)
        if candidates is None:
            return None  # too many to sum one by one
        sums.update(self._sums(conn, span, candidates - sums.keys()))
        return self._order(conn, {pk: reads for pk, reads in sums.items() if reads >= threshold}, limit)

    def _seeds(self, conn: Connection, span: _Span, limit: int, category_id: int | None) -> tuple[list[int], bool]:
        """Articles likely to make the list: those with the best day counts in the window; and
        whether the category is too small to find enough of them among the best of all.

        For a category, first those among the best of all articles (enough, in a big
        category, and cheap to pick out), else those among the top ``_CATEGORY_DEPTH`` of
        each day, through the list of its members (which costs in proportion to them).
        """
        wanted = _SEEDS * limit
        best = self._best_of_days(conn, span, _SEEDS * limit * (1 if category_id is None else _CATEGORY_SPREAD), None)
        sparse = False
        if category_id is not None:
            members = self._members(conn, set(best), category_id)
            best = {pk: count for pk, count in best.items() if pk in members}
            if len(best) < wanted:
                best, sparse = self._best_of_days(conn, span, _CATEGORY_DEPTH, category_id), True
        return sorted(best, key=best.__getitem__, reverse=True)[:wanted], sparse

    @staticmethod
    def _best_of_days(conn: Connection, span: _Span, per_day: int, category_id: int | None) -> dict[int, int]:
        """The ``per_day`` best day counts of each day (of the category's articles, if given):
        each article and its best."""
        scope = {} if category_id is None else {"category": category_id}
        found: dict[int, int] = {}
        for days in _chunks(list(span.days), 100):
            query = _statements.best_of_days(len(days), category_id is not None)
            given = {f"day{n}": day for n, day in enumerate(days)}
            for pk, count in conn.execute(query, {**given, "per_day": per_day, **scope}):
                found[pk] = max(found.get(pk, 0), int(count))
        return found

    @staticmethod
    def _read_at_least(conn: Connection, span: _Span, least: int, category_id: int | None) -> set[int] | None:
        """The articles (of the category, if given) read ``least`` times or more on one of the
        window's days; None when they are more than ``_MAX_CANDIDATES``."""
        scope = {} if category_id is None else {"category": category_id}
        query = _statements.read_at_least(category_id is not None)
        found: set[int] = set()
        for days in _chunks(list(span.days)):
            found.update(conn.scalars(query, {"days": days, "least": least, "most": _MAX_CANDIDATES + 1, **scope}))
            if len(found) > _MAX_CANDIDATES:
                return None
        return found

    @staticmethod
    def _members(conn: Connection, pks: set[int], category_id: int) -> set[int]:
        """Those of ``pks`` in the category, descendants included: looked up one by one."""
        found: set[int] = set()
        for chunk in _chunks(sorted(pks)):
            found.update(conn.scalars(_statements.members(), {"pks": chunk, "category": category_id}))
        return found

    @staticmethod
    def _top_by_summing_all(conn: Connection, span: _Span, limit: int, category_id: int | None) -> list[tuple[int, int]]:
        """The top ``limit`` (article pk, reads), every article in the window summed."""
        query = _statements.summing_all(tuple(table.name for table, _, _ in span.pieces), category_id is not None)
        given = {name: value for n, (_, start, end) in enumerate(span.pieces) for name, value in ((f"start{n}", start), (f"end{n}", end))}
        if category_id is not None:
            given["category"] = category_id
        return [(pk, int(reads)) for pk, reads in conn.execute(query, {**given, "place": limit - 1, "limit": limit})]

    @staticmethod
    def _sums(conn: Connection, span: _Span, pks: Iterable[int]) -> dict[int, int]:
        """Reads in the window of each of ``pks`` that has any, through the (article, bucket, count) indexes."""
        query = _statements.sums(tuple(table.name for table, _, _ in span.pieces))
        given = {name: value for n, (_, start, end) in enumerate(span.pieces) for name, value in ((f"start{n}", start), (f"end{n}", end))}
        found: dict[int, int] = {}
        for chunk in _chunks(sorted(pks)):
            found.update((pk, int(reads)) for pk, reads in conn.execute(query, {**given, "pks": chunk}))
        return found

    @staticmethod
    def _order(conn: Connection, sums: dict[int, int], limit: int) -> list[tuple[int, int]]:
        """The first ``limit`` of ``sums`` by reads, then publication time, then pk, all descending."""
        published: dict[int, datetime] = {}
        for chunk in _chunks(sorted(sums)):
            published.update((pk, at) for pk, at in conn.execute(_statements.published(), {"pks": chunk}))
        ranked = sorted(published, key=lambda pk: (sums[pk], published[pk], pk), reverse=True)
        return [(pk, sums[pk]) for pk in ranked[:limit]]


class _Statements:
    """The statements of reads and rankings, one per shape, with bound parameters for everything else."""

    def __init__(self) -> None:
        self._built: dict[tuple[Any, ...], Any] = {}

    def _get(self, key: tuple[Any, ...], build: Any) -> Any:
        found = self._built.get(key)
        if found is None:
            found = self._built.setdefault(key, build())
        return found

    @staticmethod
    def _scope(article_pk: sa.ColumnElement[int], category: bool) -> list[sa.ColumnElement[bool]]:
        """In the category ``:category``, descendants included (when ``category``).

        An IN list, which each statement gathers once, not a correlated EXISTS, which
        SQLite answers from the primary key (category, published, article) by reading the
        whole category for every row. Given ``article_pk + 0``, SQLite checks the rows it
        finds otherwise against the list, rather than searching an index once per member.
        """
        if not category:
            return []
        members = sa.select(article_categories.c.article_pk).where(article_categories.c.category_id == sa.bindparam("category"))
        return [article_pk.in_(members)]

    def best_of_days(self, days: int, category: bool) -> sa.Select:
        """(article, count) of the ``:per_day`` best counts of each of the days ``:day0``,
        ``:day1``…, found at the top of ix_reads_daily_busiest; with ``category``, those of
        them in the category ``:category``."""

        def build() -> sa.Select:
            parts = [
                sa.select(reads_daily.c.article_pk, reads_daily.c.count)
                .where(reads_daily.c.bucket == sa.bindparam(f"day{n}"))
                .order_by(reads_daily.c.count.desc())
                .limit(sa.bindparam("per_day"))
                .subquery()
                for n in range(days)
            ]
            tops = sa.union_all(*(sa.select(part.c.article_pk, part.c.count) for part in parts)).subquery()
            # The category's list is gathered once, out here, rather than once per day.
            return sa.select(tops.c.article_pk, tops.c.count).where(*self._scope(tops.c.article_pk + 0, category))

        return self._get(("best_of_days", days, category), build)

    def read_at_least(self, category: bool) -> sa.Select:
        """The articles read ``:least`` times or more on one of the ``:days`` (at most ``:most``)."""

        def build() -> sa.Select:
            return (
                sa.select(reads_daily.c.article_pk)
                .distinct()
                .where(
                    reads_daily.c.bucket.in_(sa.bindparam("days", expanding=True)),
                    reads_daily.c.count >= sa.bindparam("least"),
                    *self._scope(reads_daily.c.article_pk + 0, category),
                )
                .limit(sa.bindparam("most"))
            )

        return self._get(("read_at_least", category), build)

    def members(self) -> sa.Select:
        """Those of ``:pks`` in the category ``:category``, each looked up in ix_article_categories_article.

        ``category_id + 0``: else SQLite reads the primary key (category, published, article),
        the whole category, instead.
        """
        def build() -> sa.Select:
            return sa.select(article_categories.c.article_pk).where(
                article_categories.c.article_pk.in_(sa.bindparam("pks", expanding=True)),
                article_categories.c.category_id + 0 == sa.bindparam("category"),
            )

        return self._get(("members",), build)

    def _pieces(self, tables: tuple[str, ...], *where: Any) -> sa.Subquery:
        """The (article_pk, count) rows of each table from ``:start<n>`` to ``:end<n>``."""
        pieces = []
        for n, name in enumerate(tables):
            table = metadata.tables[name]
            pieces.append(
                sa.select(table.c.article_pk, table.c.count).where(
                    table.c.bucket >= sa.bindparam(f"start{n}"),
                    table.c.bucket < sa.bindparam(f"end{n}"),
                    *(condition(table.c.article_pk) for condition in where),
                )
            )
        return (sa.union_all(*pieces) if len(pieces) > 1 else pieces[0]).subquery()

    def sums(self, tables: tuple[str, ...]) -> sa.Select:
        """Reads per article of ``:pks`` over the pieces of a window."""

        def build() -> sa.Select:
            counted = self._pieces(tables, lambda pk: pk.in_(sa.bindparam("pks", expanding=True)))
            return sa.select(counted.c.article_pk, sa.func.sum(counted.c.count)).group_by(counted.c.article_pk)

        return self._get(("sums", tables), build)

    def summing_all(self, tables: tuple[str, ...], category: bool) -> sa.Select:
        """The ``:limit`` articles most read over the pieces of a window, summing all of them."""

        def build() -> sa.Select:
            counted = self._pieces(tables, *([lambda pk: self._scope(pk, True)[0]] if category else []))  # driven by the members
            totals = (
                sa.select(counted.c.article_pk, sa.func.sum(counted.c.count).label("reads"))
                .group_by(counted.c.article_pk)
                .cte("totals")
            )
            # Only the articles with at least the limit-th most reads are joined to find their publication time.
            least = sa.select(totals.c.reads).order_by(totals.c.reads.desc()).offset(sa.bindparam("place")).limit(1).scalar_subquery()
            return (
                sa.select(totals.c.article_pk, totals.c.reads)
                .join(articles, articles.c.pk == totals.c.article_pk)
                .where(totals.c.reads >= sa.func.coalesce(least, 0))
                .order_by(totals.c.reads.desc(), articles.c.published.desc(), articles.c.pk.desc())
                .limit(sa.bindparam("limit"))
            )

        return self._get(("summing_all", tables, category), build)

    def add_counts(self, name: str, dialect: str) -> sa.Executable:
        """Add counts to the buckets of the table ``name``: rows of (bucket, article_pk, count)
        on SQLite, arrays ``:buckets``, ``:pks`` and ``:counts`` on PostgreSQL."""

        def build() -> sa.Executable:
            table = metadata.tables[name]
            if dialect == "postgresql":
                rows = sa.func.unnest(
                    sa.bindparam("buckets", type_=postgresql.ARRAY(UTCDateTime())),
                    sa.bindparam("pks", type_=postgresql.ARRAY(sa.Integer)),
                    sa.bindparam("counts", type_=postgresql.ARRAY(sa.BigInteger)),
                ).table_valued("bucket", "article_pk", "count").render_derived()
                statement = postgresql.insert(table).from_select(
                    ["bucket", "article_pk", "count"], sa.select(rows.c.bucket, rows.c.article_pk, rows.c.count)
                )
            else:
                statement = sqlite.insert(table)
            return statement.on_conflict_do_update(
                index_elements=["bucket", "article_pk"], set_={"count": table.c.count + statement.excluded.count}
            )

        return self._get(("add_counts", name, dialect), build)

    def published(self) -> sa.Select:
        """(pk, published) of the articles ``:pks``."""

        def build() -> sa.Select:
            return sa.select(articles.c.pk, articles.c.published).where(articles.c.pk.in_(sa.bindparam("pks", expanding=True)))

        return self._get(("published",), build)


_statements = _Statements()


_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
_BUCKETS = ((reads_minutely, _MINUTE), (reads_hourly, _HOUR), (reads_daily, _DAY))  # also the order rows are locked in
_SEEDS = 4  # articles summed first to bound a ranking from below, per place in the list (Store._top_by_threshold)
_CATEGORY_SPREAD = 5  # for a category, look first among five times as many of all articles
_CATEGORY_DEPTH = 300  # else this far down each day's most read articles of the category
_MAX_CANDIDATES = 5_000  # beyond this many, summing every article in one statement is faster


def _nth(sums: dict[int, int], n: int) -> int:
    """The ``n``-th largest of the values, or 0 when there are fewer."""
    return sorted(sums.values(), reverse=True)[n - 1] if len(sums) >= n else 0


@dataclass(frozen=True)
class _Span:
    """A ranking window cut into bucket ranges.

    Minute buckets ``lo <= b < hi`` are in the window: whole hours are read from the hourly
    table, the ragged hours at either end from the minute table (``pieces``: table, start,
    end). ``days`` are the day buckets the window touches, ragged ends included.
    """

    pieces: tuple[tuple[sa.Table, datetime, datetime], ...]
    days: tuple[datetime, ...]

    @classmethod
    def of(cls, now: datetime, window: timedelta) -> _Span:
        lo = _floor(now - window, _MINUTE)
        hi = _floor(now, _MINUTE) + _MINUTE
        whole_from = _ceil(lo, _HOUR)
        whole_to = _floor(hi, _HOUR)
        if whole_from < whole_to:
            pieces = [(reads_minutely, lo, whole_from), (reads_hourly, whole_from, whole_to), (reads_minutely, whole_to, hi)]
        else:
            pieces = [(reads_minutely, lo, hi)]
        days = []
        day = _floor(lo, _DAY)
        while day < hi:
            days.append(day)
            day += _DAY
        return cls(tuple((table, start, end) for table, start, end in pieces if start < end), tuple(days))


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
    # A database that is away must cost a request a few seconds and a 503, not a hang until the
    # worker is killed: libpq's connect_timeout bounds a connect to a host that does not answer,
    # tcp_user_timeout a query on a connection whose packets go nowhere. Pre-ping replaces pooled
    # connections that died meanwhile, so the service recovers by itself when the database is back.
    connect_args = {"connect_timeout": _CONNECT_TIMEOUT, "tcp_user_timeout": _CONNECT_TIMEOUT * 2000} if url.startswith("postgresql") else {}
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _is_connection_error(exc: sa.exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(word in text for word in ("connection", "could not connect", "server closed", "terminating", "unable to open"))


def _storable(key: str) -> bool:
    """Whether a key (an article id, a slug from a URL, a scope) could be stored at all: PostgreSQL
    cannot even compare text holding NUL, and nothing stored holds one, so it names nothing."""
    return "\x00" not in key


def _floor(moment: datetime, width: timedelta) -> datetime:
    moment = moment.astimezone(timezone.utc)
    seconds = int(moment.timestamp())
    step = int(width.total_seconds())
    return datetime.fromtimestamp(seconds - seconds % step, timezone.utc)


def _ceil(moment: datetime, width: timedelta) -> datetime:
    floor = _floor(moment, width)
    return floor if floor == moment else floor + width


def _chunks(items: list[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# == poll statistics (feeds/stats.py) ================================================
# Who polls each feed, per day in the site's timezone. Nothing here can name a person:
# a poller is a hash of address and User-Agent under a salt that lives for one day in
# memory or Redis only, and a day's hashes are collapsed into a count once it is over.

from datetime import date  # noqa: E402  (kept in this section with what uses it)

stats_daily = sa.Table(
    "stats_daily",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("not_modified", sa.BigInteger, nullable=False),
    sa.Column("pollers", sa.BigInteger, nullable=True),  # NULL while the day's hashes are still kept
)

# The distinct non-aggregator pollers of a day that is not over yet: a primary key, so
# each instance's flush adds its hashes and the union is what is stored.
stats_pollers = sa.Table(
    "stats_pollers",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("poller", sa.String(32), primary_key=True),
)

# Subscribers an aggregator reported (Feedly, Inoreader…): the day's largest report per
# service, so repeated polls and several instances never add up.
stats_aggregators = sa.Table(
    "stats_aggregators",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("service", sa.String(100), primary_key=True),
    sa.Column("subscribers", sa.BigInteger, nullable=False),
)

stats_clients = sa.Table(
    "stats_clients",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("client", sa.String(100), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
)


@dataclass(frozen=True)
class PollCounts:
    """What one process counted of one feed on one day since its last flush."""

    day: date
    feed: str
    requests: int
    not_modified: int
    pollers: frozenset[str]  # salted hashes of (address, User-Agent), aggregators left out
    subscribers: dict[str, int]  # aggregator service -> the most subscribers it reported
    clients: dict[str, int]  # client application -> requests


@dataclass(frozen=True)
class FeedDay:
    """One feed's polls on one day, as stored."""

    day: date
    feed: str
    requests: int
    not_modified: int
    pollers: int  # distinct non-aggregator pollers
    reported: int  # subscribers the aggregators reported, each service counted once


class PollStore:
    """The poll statistics tables, written and read through a ``Store``'s connections."""

    def __init__(self, store: Store):
        self.store = store

    def add_poll_counts(self, counts: Sequence[PollCounts], keep_from: date, open_from: date) -> None:
        """Merge ``counts`` into the stored ones in one transaction: requests summed, pollers
        united, each service's report the largest. Then days before ``keep_from`` are
        deleted, and the poller hashes of days before ``open_from`` (no flush adds to them
        any more) are collapsed into their count."""

        dialect = postgresql if self.store.engine.dialect.name == "postgresql" else sqlite

        def add(conn: Connection) -> None:
            ordered = sorted(counts, key=lambda c: (c.day, c.feed))  # the same lock order in every instance
            if ordered:
                daily = dialect.insert(stats_daily)
                conn.execute(
                    daily.on_conflict_do_update(
                        index_elements=["day", "feed"],
                        set_={"requests": stats_daily.c.requests + daily.excluded.requests,
                              "not_modified": stats_daily.c.not_modified + daily.excluded.not_modified},
                    ),
                    [{"day": c.day, "feed": c.feed, "requests": c.requests, "not_modified": c.not_modified, "pollers": None}
                     for c in ordered],
                )
            pollers = [{"day": c.day, "feed": c.feed, "poller": p} for c in ordered for p in sorted(c.pollers)]
            if pollers:
                conn.execute(dialect.insert(stats_pollers).on_conflict_do_nothing(), pollers)
            reports = [{"day": c.day, "feed": c.feed, "service": s, "subscribers": n}
                       for c in ordered for s, n in sorted(c.subscribers.items())]
            if reports:
                insert = dialect.insert(stats_aggregators)
                larger = sa.case((insert.excluded.subscribers > stats_aggregators.c.subscribers, insert.excluded.subscribers),
                                 else_=stats_aggregators.c.subscribers)
                conn.execute(insert.on_conflict_do_update(index_elements=["day", "feed", "service"], set_={"subscribers": larger}),
                             reports)
            clients = [{"day": c.day, "feed": c.feed, "client": name, "requests": n}
                       for c in ordered for name, n in sorted(c.clients.items())]
            if clients:
                insert = dialect.insert(stats_clients)
                conn.execute(insert.on_conflict_do_update(index_elements=["day", "feed", "client"],
                                                          set_={"requests": stats_clients.c.requests + insert.excluded.requests}),
                             clients)
            for table in (stats_daily, stats_pollers, stats_aggregators, stats_clients):
                conn.execute(table.delete().where(table.c.day < keep_from))
            closing = (
                sa.select(sa.func.count())
                .where(stats_pollers.c.day == stats_daily.c.day, stats_pollers.c.feed == stats_daily.c.feed)
                .scalar_subquery()
            )
            conn.execute(stats_daily.update().where(stats_daily.c.day < open_from, stats_daily.c.pollers.is_(None))
                         .values(pollers=closing))
            conn.execute(stats_pollers.delete().where(stats_pollers.c.day < open_from))

        self.store._write(add)

    def feed_days(self, first: date, last: date) -> list[FeedDay]:
        """Every feed's polls on each day from ``first`` to ``last``, by day then feed."""
        live = (
            sa.select(stats_pollers.c.day, stats_pollers.c.feed, sa.func.count().label("pollers"))
            .where(stats_pollers.c.day.between(first, last))
            .group_by(stats_pollers.c.day, stats_pollers.c.feed)
            .subquery()
        )
        reported = (
            sa.select(stats_aggregators.c.day, stats_aggregators.c.feed, sa.func.sum(stats_aggregators.c.subscribers).label("reported"))
            .where(stats_aggregators.c.day.between(first, last))
            .group_by(stats_aggregators.c.day, stats_aggregators.c.feed)
            .subquery()
        )
        query = (
            sa.select(
                stats_daily.c.day, stats_daily.c.feed, stats_daily.c.requests, stats_daily.c.not_modified,
                sa.func.coalesce(stats_daily.c.pollers, live.c.pollers, 0).label("pollers"),
                sa.func.coalesce(reported.c.reported, 0).label("reported"),
            )
            .select_from(stats_daily)
            .outerjoin(live, sa.and_(live.c.day == stats_daily.c.day, live.c.feed == stats_daily.c.feed))
            .outerjoin(reported, sa.and_(reported.c.day == stats_daily.c.day, reported.c.feed == stats_daily.c.feed))
            .where(stats_daily.c.day.between(first, last))
            .order_by(stats_daily.c.day, stats_daily.c.feed)
        )
        with self.store._read() as conn:
            return [FeedDay(row.day, row.feed, int(row.requests), int(row.not_modified), int(row.pollers), int(row.reported))
                    for row in conn.execute(query)]

    def client_requests(self, first: date, last: date) -> dict[str, dict[str, int]]:
        """Requests per client application of each feed from ``first`` to ``last``."""
        query = (
            sa.select(stats_clients.c.feed, stats_clients.c.client, sa.func.sum(stats_clients.c.requests))
            .where(stats_clients.c.day.between(first, last))
            .group_by(stats_clients.c.feed, stats_clients.c.client)
        )
        found: dict[str, dict[str, int]] = {}
        with self.store._read() as conn:
            for feed, client, requests in conn.execute(query):
                found.setdefault(feed, {})[client] = int(requests)
        return found

