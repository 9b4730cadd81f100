"""The connection to the database: engine settings per dialect, read and write transactions,
schema migration, and what a failure means to a caller.

Every query module runs its statements through one ``Database``: ``read()`` for a
connection, ``write(work)`` for a transaction that is retried when a concurrent writer won
a race. The feed scopes a write changed (``versions.py`` fills that set) are handed to the
``before_commit`` hooks in its transaction (the outbox queues what the change owes) and, once
committed, to the ``after_commit`` listeners. A database that cannot be reached is
``StoreUnavailable``, which the web layer answers with a 503.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from feeds.errors import StoreUnavailable
from feeds.store.schema import metadata

T = TypeVar("T")

CHUNK = 500  # keys per IN list: well under SQLite's and PostgreSQL's limits on parameters
_CONNECT_TIMEOUT = 5  # seconds a PostgreSQL connect may take before the request is answered 503 (see _engine)
_MIGRATION_LOCK = 0x66656564  # "feed": the PostgreSQL advisory lock key that migrate holds


class Database:
    """One SQL database: SQLite (WAL) or PostgreSQL, by URL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = _engine(url)
        self.before_commit: list[Callable[[Connection, set[str]], None]] = []  # in the write, with the scopes it changed
        self.after_commit: list[Callable[[set[str]], None]] = []  # called with the scopes a write changed

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision: a fresh database is created and stamped,
        an older one is upgraded through the Alembic migrations."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.guard(), self.engine.begin() as conn:
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

    def time_queries(self, observe: Callable[[float], None]) -> None:
        """Call ``observe`` with the seconds each statement took (two engine events: cheap)."""

        def started(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
            context.feeds_started = time.perf_counter()

        def finished(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
            observe(time.perf_counter() - context.feeds_started)

        sa.event.listen(self.engine, "before_cursor_execute", started)
        sa.event.listen(self.engine, "after_cursor_execute", finished)

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn a lost or refused connection into ``StoreUnavailable``."""
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if getattr(exc, "connection_invalidated", False) or _is_connection_error(exc):
                raise StoreUnavailable(str(exc.orig)) from exc
            raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.guard(), self.engine.connect() as conn:
            yield conn

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in one write transaction; retry when a concurrent writer won a race (a unique key taken,
        a deadlock).
        Before the commit, hand the scopes the work changed to the ``before_commit`` hooks; after it,
        tell the ``after_commit`` listeners."""
        for attempt in range(5):
            try:
                with self.guard(), self.engine.connect() as conn:
                    conn = conn.execution_options(immediate=True)
                    conn.info["feeds_changed"] = changed = set()
                    try:
                        with conn.begin():
                            result = work(conn)
                            if changed:
                                for hook in self.before_commit:
                                    hook(conn, changed)
                    finally:
                        conn.info.pop("feeds_changed", None)
                if changed:
                    for listener in self.after_commit:
                        listener(changed)
                return result
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                if attempt == 4 or not (isinstance(exc, sa.exc.IntegrityError) or _lost_a_race(exc)):
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")


def storable(key: str) -> bool:
    """Whether a key (an article id, a slug from a URL, a scope) could be stored at all: PostgreSQL
    cannot even compare text holding NUL, and nothing stored holds one, so it names nothing."""
    return "\x00" not in key


def chunks(items: list[T], size: int = CHUNK) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


def _lost_a_race(exc: sa.exc.DBAPIError) -> bool:
    """Whether PostgreSQL chose this transaction to end a deadlock, or to keep a serializable order: try again."""
    return getattr(exc.orig, "sqlstate", None) in ("40P01", "40001")


def _is_connection_error(exc: sa.exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(word in text for word in ("connection", "could not connect", "server closed", "terminating", "unable to open"))


def free_slug(conn: Connection, column: sa.Column, wanted: str, *among: Any) -> str:
    """``wanted``, or ``wanted-2``, ``wanted-3``… when two names spell the same slug (``among``: rows of one kind)."""
    candidate, number = wanted, 1
    while conn.scalar(sa.select(sa.func.count()).where(column == candidate, *among)):
        number += 1
        candidate = f"{wanted}-{number}"
    return candidate
