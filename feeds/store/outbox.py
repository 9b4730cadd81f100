"""The push queue: what each search engine is still to be told of article URLs, and each engine's state.

``enqueue`` runs inside the write that made articles public or took them out (``articles.py``), so a
URL is queued exactly when the public view changed, never for an article still scheduled. A sender
(``feeds.reach``) takes due rows in batches (``claim``: on PostgreSQL rows another process holds are
skipped, so each goes out once across instances) and reports what became of each (``record``).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feeds.store.database import Database, chunks
from feeds.store.schema import push_engines, push_queue

Action = Literal["new", "update", "delete"]


@dataclass(frozen=True)
class Queued:
    """One URL an engine is to be told of: ``action`` is what became of it."""

    key: str
    engine: str
    url: str
    action: Action
    version: int
    attempts: int
    failing_since: datetime | None


@dataclass(frozen=True)
class Pushed:
    """What became of a queued URL: ``sent``; ``failed`` (tried again at ``retry_at``); ``deferred`` (not tried:
    again at ``retry_at``, no attempt counted, e.g. a spent daily quota); ``given_up`` (logged, dropped)."""

    item: Queued
    result: Literal["sent", "failed", "deferred", "given_up"]
    retry_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class EngineState:
    """What the newsroom sees of one engine."""

    engine: str
    queued: int
    sent: int
    failed: int
    last_sent: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    remain: int | None


def key_of(engine: str, url: str) -> str:
    return hashlib.sha256(f"{engine}\n{url}".encode()).hexdigest()


def merged(pending: str, action: Action) -> Action:
    """What to tell an engine of a URL whose ``pending`` news it was not told yet, now that ``action`` happened:
    the latest, except that an edit of an article it never heard of is still news of a new one."""
    return "new" if pending == "new" and action == "update" else action


class Outbox:
    def __init__(self, db: Database, engines: Sequence[str] = ()):
        self.db = db
        self.engines = tuple(engines)  # those configured: only they are queued for

    # -- inside a write transaction ---------------------------------------------------

    def enqueue(self, conn: Connection, changes: dict[str, Action], now: datetime) -> None:
        """Queue each changed URL for every configured engine, merged with what is pending for it."""
        if not self.engines or not changes:
            return
        wanted = {key_of(engine, url): (engine, url, action) for engine in self.engines for url, action in changes.items()}
        pending = {}
        for chunk in chunks(sorted(wanted)):
            query = sa.select(push_queue.c.key, push_queue.c.action, push_queue.c.version).where(push_queue.c.key.in_(chunk))
            pending.update((row.key, row) for row in conn.execute(query.with_for_update()))
        fresh = []
        for key, (engine, url, action) in wanted.items():
            row = pending.get(key)
            if row is None:
                fresh.append({"key": key, "engine": engine, "url": url, "action": action, "version": 1, "queued": now, "due": now})
            else:
                conn.execute(push_queue.update().where(push_queue.c.key == key).values(
                    action=merged(row.action, action), version=row.version + 1, due=now, attempts=0, failing_since=None))
        if fresh:
            conn.execute(push_queue.insert(), fresh)

    # -- the sender's --------------------------------------------------------------------

    def claim(self, engine: str, now: datetime, limit: int, hold: timedelta) -> list[Queued]:
        """Up to ``limit`` due URLs of ``engine``, held for ``hold`` (a sender that dies leaves them to others)."""

        def claim(conn: Connection) -> list[Queued]:
            query = (
                sa.select(push_queue)
                .where(push_queue.c.engine == engine, push_queue.c.due <= now,
                       sa.or_(push_queue.c.claimed_until.is_(None), push_queue.c.claimed_until < now))
                .order_by(push_queue.c.due)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = conn.execute(query).all()
            for chunk in chunks([row.key for row in rows]):
                conn.execute(push_queue.update().where(push_queue.c.key.in_(chunk)).values(claimed_until=now + hold))
            return [Queued(row.key, row.engine, row.url, row.action, row.version, row.attempts, row.failing_since) for row in rows]

        return self.db.write(claim)

    def record(self, engine: str, pushed: Iterable[Pushed], now: datetime, remain: int | None = None) -> None:
        """Apply what became of claimed URLs, and count it for the engine; a URL merged anew since it was
        claimed (its version moved) stays queued as merged."""
        pushed = list(pushed)

        def record(conn: Connection) -> None:
            sent = failed = 0
            error = None
            for done in pushed:
                mine = sa.and_(push_queue.c.key == done.item.key, push_queue.c.version == done.item.version)
                if done.result in ("sent", "given_up"):
                    conn.execute(push_queue.delete().where(mine))
                    sent += done.result == "sent"
                    failed += done.result == "given_up"
                else:
                    failing = done.result == "failed"
                    conn.execute(push_queue.update().where(mine).values(
                        due=done.retry_at, claimed_until=None,
                        attempts=push_queue.c.attempts + int(failing),
                        failing_since=sa.func.coalesce(push_queue.c.failing_since, now) if failing else push_queue.c.failing_since))
                error = done.error or error
            values: dict = {"sent": push_engines.c.sent + sent, "failed": push_engines.c.failed + failed}
            if sent:
                values["last_sent"] = now
            if error:
                values.update(last_error=error[:1000], last_error_at=now)
            if remain is not None:
                values["remain"] = remain
            if not conn.execute(push_engines.update().where(push_engines.c.engine == engine).values(values)).rowcount:
                conn.execute(push_engines.insert().values(engine=engine, sent=sent, failed=failed, last_sent=now if sent else None,
                                                          last_error=error[:1000] if error else None,
                                                          last_error_at=now if error else None, remain=remain))

        self.db.write(record)

    def quota(self, engine: str) -> tuple[int | None, datetime | None]:
        """What ``engine`` last said is left of its quota, and when it last took URLs (one row, read by key)."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(push_engines.c.remain, push_engines.c.last_sent).where(push_engines.c.engine == engine)).first()
        return (row.remain, row.last_sent) if row else (None, None)

    def states(self) -> list[EngineState]:
        """Each configured engine: how many URLs wait, what was sent and given up, the last error."""
        with self.db.read() as conn:
            queued = dict(conn.execute(sa.select(push_queue.c.engine, sa.func.count()).group_by(push_queue.c.engine)).all())
            kept = {row.engine: row for row in conn.execute(sa.select(push_engines))}
        found = []
        for engine in self.engines:
            row = kept.get(engine)
            found.append(EngineState(engine, int(queued.get(engine, 0)), row.sent if row else 0, row.failed if row else 0,
                                     row.last_sent if row else None, row.last_error if row else None,
                                     row.last_error_at if row else None, row.remain if row else None))
        return found
