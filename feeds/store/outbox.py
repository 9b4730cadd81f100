"""The outbox: every push still to be made, whatever it is and wherever it goes, and what the newsroom sees
of each channel.

A push is queued in the transaction that made it owed, so that nothing goes out before its time
(a scheduled article's URL is queued when it is published, not when it is written) and a SIGKILL
loses nothing:

- ``verification``: a subscription request (target: the intent) whose callback is to confirm it,
  queued with the request (``store.subscriptions``);
- ``topic``: a feed scope that changed, queued by the write that bumped it when the hub has subscribers;
  the sender turns it into one ``delivery`` per subscriber (``expand``), so a write costs a row a
  scope, never one a subscriber;
- ``delivery``: a subscription (target) owed its topic's new bytes;
- ``ping``: another hub (target: its URL) to be told that a scope changed, queued by the write;
- ``indexnow`` and ``baidu``: a search engine to be told of an article URL (subject) that
  was published (``new``), edited (``update``) or taken out (``delete``), queued by the article
  writes (``articles.py``).

News for a push still queued is merged into its row (``version`` moves), which keeps its place
and its pause: a failing destination is not asked again sooner for being told more. One sender
(``feeds.outbox``) takes due rows of a channel in batches (``claim``: on PostgreSQL rows another
process holds are skipped, so each goes out once across instances) and reports what became of
each (``record``).
"""
from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from feeds.store.database import Database, chunks
from feeds.store.schema import outbox, outbox_channels, websub_subscriptions

HUB_CHANNELS = ("verification", "topic", "delivery")
Result = Literal["sent", "failed", "deferred", "given_up", "dropped"]


@dataclass(frozen=True)
class Destinations:
    """Where pushes go, from the settings: the channels that are queued for."""

    engines: tuple[str, ...] = ()  # the search engines told of article URLs
    hubs: tuple[str, ...] = ()  # other hubs told of changed scopes
    hub: bool = False  # this service's own hub: its subscribers are owed every change
    hot_pace: int = 0  # seconds: a change to the hot lists is told at most once in each such period

    @property
    def channels(self) -> tuple[str, ...]:
        return HUB_CHANNELS * self.hub + ("ping",) * bool(self.hubs) + self.engines


class Push(NamedTuple):
    """A push to queue. ``due``: not before (now when None); ``failing_since``: what a new row inherits."""

    channel: str
    target: str
    subject: str
    action: str
    due: datetime | None = None
    failing_since: datetime | None = None


@dataclass(frozen=True)
class Queued:
    """A queued push, as a sender claimed it."""

    key: str
    channel: str
    target: str
    subject: str
    action: str
    version: int
    attempts: int
    failing_since: datetime | None
    claim: str  # the claim's token: only its holder releases it


@dataclass(frozen=True)
class Pushed:
    """What became of a claimed push: ``sent``; ``failed`` (tried again at ``retry_at``); ``deferred`` (not tried:
    again at ``retry_at``, no attempt counted, e.g. a spent daily quota); ``given_up`` (logged, dropped);
    ``dropped`` (nothing left to send, e.g. bytes the subscriber has: not counted). ``note`` is the channel's own."""

    item: Queued
    result: Result
    retry_at: datetime | None = None
    error: str | None = None
    note: Any = None


@dataclass(frozen=True)
class ChannelState:
    """What the newsroom sees of one channel."""

    channel: str
    queued: int
    sent: int
    failed: int
    last_sent: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    remain: int | None


def key_of(channel: str, target: str, subject: str) -> str:
    return hashlib.sha256(f"{channel}\n{target}\n{subject}".encode()).hexdigest()


class Outbox:
    def __init__(self, db: Database, destinations: Destinations = Destinations()):
        self.db = db
        self.destinations = destinations
        self._dialect = postgresql if db.dialect == "postgresql" else sqlite
        if destinations.hub or destinations.hubs:
            db.before_commit.append(self.scopes_changed)

    # -- inside a write transaction ---------------------------------------------------

    def queue(self, conn: Connection, pushes: Iterable[Push], now: datetime) -> None:
        """Queue each push, merged into the row of one still queued: an edit of an article an engine was not
        told of yet is still news of a new one; otherwise the latest action wins."""
        rows = {}
        for push in pushes:
            key = key_of(push.channel, push.target, push.subject)
            rows[key] = {"key": key, "channel": push.channel, "target": push.target, "subject": push.subject,
                         "action": push.action, "version": 1, "queued": now, "due": push.due or now, "attempts": 0,
                         "failing_since": push.failing_since}
        if not rows:
            return
        insert = self._dialect.insert(outbox)
        merge = insert.on_conflict_do_update(index_elements=["key"], set_={
            "action": sa.case((sa.and_(outbox.c.action == "new", insert.excluded.action == "update"), "new"),
                              else_=insert.excluded.action),
            "version": outbox.c.version + 1,
        })
        for chunk in chunks([rows[key] for key in sorted(rows)]):  # in key order: concurrent writers lock alike
            conn.execute(merge, chunk)

    def articles_changed(self, conn: Connection, changes: dict[str, str], now: datetime) -> None:
        """Queue each article URL that joined or left the public view (``new``, ``update`` or ``delete``) for every
        configured search engine."""
        self.queue(conn, (Push(engine, "", url, action) for engine in self.destinations.engines
                          for url, action in changes.items()), now)

    def scopes_changed(self, conn: Connection, scopes: set[str]) -> None:
        """Queue, in the write that changed ``scopes``, a ping of each to every other hub and, when this hub has
        subscribers, a ``topic`` of each (run by ``Database.write`` before it commits). Which scopes have subscribers is
        the sender's to find out: a write costs the same with ten thousand as with one."""
        now = datetime.now(timezone.utc)
        destinations = self.destinations
        followed = destinations.hub and conn.execute(sa.select(websub_subscriptions.c.key).limit(1)).first() is not None
        self.queue(conn, [*(Push("ping", hub, scope, "change", self._paced(scope, now)) for hub in destinations.hubs for scope in scopes),
                          *(Push("topic", "", scope, "change", self._paced(scope, now)) for scope in scopes if followed)], now)

    def prune(self) -> int:
        """Drop what is queued for channels no longer configured (an engine or the hub turned off); how many went."""
        return self.db.write(lambda conn: conn.execute(outbox.delete().where(outbox.c.channel.not_in(self.destinations.channels))).rowcount)

    def forget(self, conn: Connection, channel: str, targets: Iterable[str]) -> None:
        """Drop what is queued on ``channel`` for ``targets`` (pushes queued with no subject): they are gone."""
        for chunk in chunks(sorted({key_of(channel, target, "") for target in targets})):
            conn.execute(outbox.delete().where(outbox.c.key.in_(chunk)))

    def _paced(self, scope: str, now: datetime) -> datetime | None:
        """When a change to ``scope`` is due: at once, but the hot lists, which every read moves, at the end of
        their pace's period."""
        pace = self.destinations.hot_pace
        if scope != "hot" or not pace:
            return None
        return datetime.fromtimestamp(math.ceil(now.timestamp() / pace) * pace, timezone.utc)

    # -- the sender's --------------------------------------------------------------------

    def claim(self, channel: str, now: datetime, limit: int, hold: timedelta) -> list[Queued]:
        """Up to ``limit`` due pushes of ``channel``, oldest first, held for ``hold`` (a sender that dies leaves
        them to others when the hold runs out)."""
        ready = (sa.select(outbox).where(outbox.c.channel == channel, outbox.c.due <= now,
                                         sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now))
                 .order_by(outbox.c.due).limit(limit))
        with self.db.read() as conn:  # most of the time there is nothing to send: find that out without a write lock
            if conn.execute(ready.limit(1)).first() is None:
                return []
        token = secrets.token_hex(8)

        def claim(conn: Connection) -> list[Queued]:
            rows = conn.execute(ready.with_for_update(skip_locked=True)).all()
            for chunk in chunks([row.key for row in rows]):
                conn.execute(outbox.update().where(outbox.c.key.in_(chunk)).values(claimed_until=now + hold, claim=token))
            return [Queued(row.key, row.channel, row.target, row.subject, row.action, row.version, row.attempts,
                           row.failing_since, token) for row in rows]

        return self.db.write(claim)

    def record(self, channel: str, pushed: Sequence[Pushed], now: datetime, remain: int | None = None,
               settle: Callable[[Connection, Sequence[Pushed], datetime], None] | None = None) -> None:
        """Apply what became of claimed pushes, count it for the channel and let it ``settle`` its own state, in one
        transaction. Only pushes still held by their claim are applied: one whose claim ran out is another sender's
        now. A failure is kept with its pause whatever was merged into it meanwhile; a push that went (or was given
        up) while news was merged into it stays queued as a fresh push of that news."""

        def record(conn: Connection) -> None:
            claims = {done.item.key: done.item.claim for done in pushed}
            held: dict[str, int] = {}  # key -> version, of the rows still under this claim
            for chunk in chunks(sorted(claims)):
                # in key order, locked on PostgreSQL as ``queue`` locks them: no deadlock with a write
                query = sa.select(outbox.c.key, outbox.c.version, outbox.c.claim).where(outbox.c.key.in_(chunk))
                for row in conn.execute(query.order_by(outbox.c.key).with_for_update()):
                    if row.claim == claims[row.key]:
                        held[row.key] = row.version
            mine = [done for done in pushed if done.item.key in held]
            finished = [done for done in mine if done.result in ("sent", "given_up", "dropped")]
            for chunk in chunks(sorted(done.item.key for done in finished if held[done.item.key] == done.item.version)):
                conn.execute(outbox.delete().where(outbox.c.key.in_(chunk)))
            key, at = outbox.c.key == sa.bindparam("k"), sa.bindparam("at", type_=outbox.c.due.type)
            free = {"claimed_until": None, "claim": None}
            merged = [{"k": done.item.key, "a": done.item.action, "at": self._paced(done.item.subject, now) or now}
                      for done in finished if held[done.item.key] != done.item.version]
            if merged:  # news merged in while it went: a fresh push of that news (an edit, once the engine knows the URL)
                conn.execute(outbox.update().where(key).values(
                    due=at, attempts=0, failing_since=None, **free,
                    action=sa.case((sa.and_(outbox.c.action == "new", sa.bindparam("a") == "new"), "update"), else_=outbox.c.action)),
                    merged)
            for result, values in (
                ("failed", {"attempts": outbox.c.attempts + 1, "failing_since": sa.func.coalesce(outbox.c.failing_since, now)}),
                ("deferred", {}),
            ):
                again = [{"k": done.item.key, "at": done.retry_at} for done in mine if done.result == result]
                if again:
                    conn.execute(outbox.update().where(key).values(due=at, **free, **values), again)
            if settle is not None:
                settle(conn, mine, now)
            sent = sum(done.result == "sent" for done in mine)
            failed = sum(done.result == "given_up" for done in mine)
            error = next((done.error for done in reversed(mine) if done.error), None)
            if sent or failed or error or remain is not None:
                self._count(conn, channel, sent, failed, now, error, remain)

        if pushed:
            self.db.write(record)

    def _count(self, conn: Connection, channel: str, sent: int, failed: int, now: datetime, error: str | None,
               remain: int | None) -> None:
        values: dict[str, Any] = {"sent": outbox_channels.c.sent + sent, "failed": outbox_channels.c.failed + failed}
        if sent:
            values["last_sent"] = now
        if error:
            values.update(last_error=error[:1000], last_error_at=now)
        if remain is not None:
            values["remain"] = remain
        if not conn.execute(outbox_channels.update().where(outbox_channels.c.channel == channel).values(values)).rowcount:
            conn.execute(outbox_channels.insert().values(
                channel=channel, sent=sent, failed=failed, last_sent=now if sent else None,
                last_error=error[:1000] if error else None, last_error_at=now if error else None, remain=remain))

    def quota(self, channel: str) -> tuple[int | None, datetime | None]:
        """What ``channel`` last said is left of its quota, and when it last took pushes (one row, read by key)."""
        with self.db.read() as conn:
            row = conn.execute(sa.select(outbox_channels.c.remain, outbox_channels.c.last_sent)
                               .where(outbox_channels.c.channel == channel)).first()
        return (row.remain, row.last_sent) if row else (None, None)

    # -- for the newsroom -----------------------------------------------------------------

    def states(self) -> list[ChannelState]:
        """Each configured channel: how many pushes wait, how many were sent and given up, the last error."""
        with self.db.read() as conn:
            queued = dict(conn.execute(sa.select(outbox.c.channel, sa.func.count()).group_by(outbox.c.channel)).all())
            kept = {row.channel: row for row in conn.execute(sa.select(outbox_channels))}
        found = []
        for channel in self.destinations.channels:
            row = kept.get(channel)
            found.append(ChannelState(channel, int(queued.get(channel, 0)), row.sent if row else 0, row.failed if row else 0,
                                      row.last_sent if row else None, row.last_error if row else None,
                                      row.last_error_at if row else None, row.remain if row else None))
        return found
