"""Feed versions: how many times what each feed scope shows has changed, and how many articles it holds.

A scope is what a set of feeds shows: ``all``, ``category:<slug path>`` (descendants
included), ``source:<slug>`` and ``hot``. Every write bumps, in its own transaction, the
version of each scope it touches (``bump``, ``changed``), so that a rendered feed is cached
under its scope's version and never served stale (``feeds/serving.py``).

Every poll asks ``current``: a version read is trusted for ``recheck_seconds``, and
forgotten at once when a write commits through any process on this machine (the
``ChangeCounter`` in shared memory), or when news of another instance's write arrives
(``forget``, called by ``feeds.cache.ChangeNews``).
"""
from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feeds.errors import StoreUnavailable
from feeds.store.database import Database, storable
from feeds.store.schema import categories, feed_versions, sources

Membership = tuple[int | None, int | None]  # (category id, source id) of an article


def category_scope(slug_path: str) -> str:
    return f"category:{slug_path}"


def source_scope(slug: str) -> str:
    return f"source:{slug}"


def shown(scope: sa.ColumnElement[str]) -> sa.Exists:
    """Whether the scope named by ``scope`` (an SQL expression) has ever shown an article: its row is made when
    the first article joins it. A category, source or label made for an article not yet published is not
    public, not even its name; one whose articles all left stays (its feed is empty and says so)."""
    return sa.exists().where(feed_versions.c.scope == scope)


class ChangeCounter:
    """How many writes to one database have committed on this machine: eight bytes of shared
    memory that every process using the database maps (the server's workers, ``feeds import``).

    A process compares it with the count it saw last on every poll, a read of memory, and
    forgets the versions it trusts when it moved: a write acknowledged by one worker is then
    what the next request to any worker sees, at no cost to a poll.
    """

    def __init__(self, database_url: str):
        shared = Path("/dev/shm")  # memory, never disk; elsewhere the temporary folder does, through the page cache
        folder = shared if shared.is_dir() and os.access(shared, os.W_OK) else Path(tempfile.gettempdir())
        name = hashlib.sha256(database_url.encode()).hexdigest()[:16]
        self._fd = os.open(folder / f"feeds-{os.getuid()}-{name}.changes", os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < 8:
                os.ftruncate(self._fd, 8)
        self._memory = mmap.mmap(self._fd, 8)
        self._count = memoryview(self._memory).cast("Q")  # one native 8-byte word: read in a few tens of ns

    def read(self) -> int:
        return self._count[0]

    def bump(self) -> None:
        with self._locked():
            self._count[0] += 1

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # lockf, not flock: its locks belong to a process, so workers forked with the
        # same descriptor still exclude each other.
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._count.release()
        with suppress(Exception):
            self._memory.close()
        with suppress(OSError):
            os.close(self._fd)


class FeedVersions:
    def __init__(self, db: Database, recheck_seconds: float = 0):
        self.db = db
        self.recheck_seconds = recheck_seconds
        self._counter = ChangeCounter(db.url)
        self._seen = self._counter.read()
        self._trusted: dict[str, tuple[int, float]] = {}  # scope -> (version, trusted until)
        self._changes = 0  # changes heard of (forget): a version read across one is not kept
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[Any] = []
        placeholder = "?" if db.engine.dialect.paramstyle == "qmark" else "%s"
        self._sql = f"SELECT version FROM feed_versions WHERE scope = {placeholder}"
        db.after_commit.append(self._committed)  # before any other listener: they may read the new versions

    def current(self, scope: str) -> int:
        """How many times what the feeds of ``scope`` show has changed (0: never).

        A version read from the database is trusted for ``recheck_seconds``, so that a busy
        feed costs each process one lookup a period, not one a poll: a change committed
        through another process or instance shows within that time, one committed through
        this store, or told of by ``forget``, at once.
        """
        seen = self._counter.read()
        if seen != self._seen:  # a write committed through another process on this machine
            self._seen = seen
            self.forget()
        known = self._trusted.get(scope)
        if known is not None and time.monotonic() < known[1]:
            return known[0]
        changes = self._changes
        version = self._read(scope)
        if version is not None and self.recheck_seconds and changes == self._changes:
            # Only scopes with a row are kept: a scope is anyone's text (it comes from the URL).
            self._trusted[scope] = (version, time.monotonic() + self.recheck_seconds)
        return version or 0

    def forget(self, scopes: Iterable[str] | None = None) -> None:
        """Stop trusting the versions read of ``scopes`` (None: of all): they changed, here or
        through another process."""
        with self._lock:
            self._changes += 1
            if scopes is None:
                self._trusted.clear()
            for scope in scopes or ():
                self._trusted.pop(scope, None)

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                with suppress(Exception):
                    connection.close()
            self._connections.clear()
        self._counter.close()

    def _committed(self, scopes: set[str]) -> None:
        self.forget(scopes)
        self._counter.bump()

    # -- inside a write transaction ---------------------------------------------------

    @staticmethod
    def bump(conn: Connection, scopes: set[str]) -> None:
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

    @classmethod
    def changed(
        cls,
        conn: Connection,
        category_ids: set[int | None],
        source_ids: set[int | None],
        added: list[Membership],
        removed: list[Membership],
    ) -> None:
        """Record a change in the caller's transaction: bump every scope an article in these
        categories and sources shows in (everything, hot lists, its category and every ancestor,
        its source), and move the article counts of the scopes that articles joined (``added``:
        their category and source) and left (``removed``), both among those categories and sources."""
        category_scopes, source_scopes = _scope_names(conn, category_ids, source_ids)
        cls.bump(conn, {"all", "hot", *(scope for scopes in (*category_scopes.values(), *source_scopes.values()) for scope in scopes)})
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
    def articles_in(conn: Connection, scope: str) -> int:
        """How many articles the scope holds, as kept by ``changed``."""
        return int(conn.scalar(sa.select(feed_versions.c.articles).where(feed_versions.c.scope == scope)) or 0)

    # -- internals --------------------------------------------------------------------

    def _read(self, scope: str) -> int | None:
        """The version in the database, None without a row. Skips SQLAlchemy's pool and statement machinery:
        each thread keeps one autocommit driver connection for it alone."""
        if not storable(scope):
            return None
        engine = self.db.engine
        for attempt in (1, 2):  # a connection the server dropped gets one fresh try
            connection = getattr(self._local, "connection", None)
            fresh = connection is None
            try:
                if connection is None:
                    connection = engine.raw_connection()
                    connection.detach()  # ours for good, not the pool's
                    if engine.dialect.name == "postgresql":
                        # or every lookup would hold a transaction, and its locks, open
                        connection.dbapi_connection.autocommit = True
                    self._local.connection = connection
                    with self._lock:
                        self._connections.append(connection)
                cursor = connection.cursor()
                cursor.execute(self._sql, (scope,))
                row = cursor.fetchone()
                cursor.close()
                break
            except (engine.dialect.loaded_dbapi.Error, sa.exc.DBAPIError) as exc:
                self._local.connection = None
                if connection is not None:
                    with suppress(Exception):
                        connection.close()
                    with self._lock, suppress(ValueError):
                        self._connections.remove(connection)
                if fresh or attempt == 2:
                    raise StoreUnavailable(f"cannot read feed versions: {exc}") from exc
        return int(row[0]) if row else None


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
            category_scopes[category_id] = tuple(category_scope("/".join(parts[:depth])) for depth in range(1, len(parts) + 1))
    if source_ids:
        for source_id, slug in conn.execute(sa.select(sources.c.id, sources.c.slug).where(sources.c.id.in_(source_ids))):
            source_scopes[source_id] = (source_scope(slug),)
    return category_scopes, source_scopes
