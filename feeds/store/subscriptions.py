"""The WebSub hub's state: requests waiting for confirmation, subscriptions, and what each has been sent.

What is still to be done for them, a confirmation to ask or a delivery owed, is queued in the
outbox (``store.outbox``) in the same transaction: a request queues its ``verification``; a
write that changes a scope somebody follows queues a ``topic``, which the sender turns into
one ``delivery`` per subscriber (``expand``). What the sender's requests came to is applied
by ``verified`` and ``delivered``, in the transaction that records them in the outbox.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from feeds.model import HubDay, HubFeed, Intent, Owed
from feeds.store.database import Database, chunks
from feeds.store.outbox import Outbox, Push, Pushed
from feeds.store.schema import feed_versions, websub_days, websub_intents, websub_subscriptions

_intents, _subscriptions = websub_intents, websub_subscriptions


def _version(scope: sa.ColumnElement[str]) -> sa.ScalarSelect[int]:
    """The content version now of the scope named by ``scope`` (an SQL expression), 0 before its first change."""
    return sa.func.coalesce(sa.select(feed_versions.c.version).where(feed_versions.c.scope == scope).scalar_subquery(), 0)


class LimitReached(Exception):
    """A new subscription would pass ``websub.max_subscriptions`` or ``websub.max_per_host``."""


class Subscriptions:
    def __init__(self, db: Database, outbox: Outbox):
        self.db = db
        self.outbox = outbox
        self._dialect = postgresql if db.dialect == "postgresql" else sqlite

    # -- requests -----------------------------------------------------------------------

    def request(self, intent: Intent, now: datetime, max_total: int, max_per_host: int) -> None:
        """Keep ``intent`` until its callback confirms it, replacing any request still waiting for the
        same topic and callback. A subscription that is neither kept yet nor waiting counts against
        the limits; raise ``LimitReached`` naming the one it would pass. To unsubscribe from nothing
        is nothing to confirm: no request is kept, so no stranger's URL is called for it."""

        def store(conn: Connection) -> None:
            known = conn.scalar(sa.select(sa.func.count()).select_from(_subscriptions).where(_subscriptions.c.key == intent.key))
            waiting = conn.scalar(sa.select(sa.func.count()).select_from(_intents).where(_intents.c.key == intent.key))
            if intent.mode == "unsubscribe" and not known and not waiting:
                return
            if intent.mode == "subscribe" and not known and not waiting:
                for limit, where, what in (
                    (max_per_host, lambda table: table.c.host == intent.host, f"{max_per_host} for the callback host {intent.host}"),
                    (max_total, lambda table: sa.true(), f"{max_total} in all"),
                ):
                    held = sum(conn.scalar(sa.select(sa.func.count()).select_from(table).where(where(table))) or 0
                               for table in (_subscriptions, _intents))
                    if held >= limit:
                        raise LimitReached(f"this hub keeps at most {what} subscriptions")
            values = {"topic": intent.topic, "callback": intent.callback, "host": intent.host, "feed": intent.feed,
                      "scope": intent.scope, "mode": intent.mode, "secret": intent.secret,
                      "lease_seconds": intent.lease_seconds, "requested": now}
            insert = self._dialect.insert(_intents).values(key=intent.key, **values)
            conn.execute(insert.on_conflict_do_update(index_elements=["key"], set_=values))
            self.outbox.queue(conn, [Push("verification", intent.key, "", intent.mode)], now)

        self.db.write(store)

    def intents(self, keys: Iterable[str]) -> dict[str, Intent]:
        """The waiting requests of ``keys`` (those still waiting), each with its topic's content version now, before
        its callback is asked."""
        found = {}
        with self.db.read() as conn:
            for chunk in chunks(sorted(set(keys))):
                query = sa.select(_intents, _version(_intents.c.scope).label("version")).where(_intents.c.key.in_(chunk))
                for row in conn.execute(query):
                    found[row.key] = Intent(row.key, row.topic, row.callback, row.host, row.feed, row.scope, row.mode, row.secret,
                                            row.lease_seconds, row.version, row.requested)
        return found

    def verified(self, conn: Connection, pushed: Sequence[Pushed], now: datetime) -> None:
        """Apply what the callbacks said (``pushed``: sent is confirmed, its note the ``Intent`` asked about), in the
        sender's transaction. A request made anew while its callback was asked stays to be asked in turn."""
        for done in pushed:
            intent = done.note
            if intent is None:
                continue
            conn.execute(_intents.delete().where(_intents.c.key == intent.key, _intents.c.requested == intent.requested))
            if done.result == "sent":
                self._confirmed(conn, intent, now)

    def _confirmed(self, conn: Connection, intent: Intent, now: datetime) -> None:
        """Subscribe (owed every change since the intent was read, even one made while the callback was being asked;
        a renewal keeps what it was owed) or unsubscribe."""
        if intent.mode == "unsubscribe":
            self.outbox.forget(conn, "delivery", [intent.key])  # the outbox's rows before the subscription's, as everywhere
            conn.execute(_subscriptions.delete().where(_subscriptions.c.key == intent.key))
            return
        # A write to the scope committing meanwhile would not see this subscription, nor this transaction its new
        # version: take the scope's row first, so that one waits for the other (PostgreSQL; SQLite has one writer).
        insert = self._dialect.insert(feed_versions).values(scope=intent.scope, version=0, articles=0)
        conn.execute(insert.on_conflict_do_nothing(index_elements=["scope"]))
        version = conn.scalar(sa.select(feed_versions.c.version).where(feed_versions.c.scope == intent.scope).with_for_update())
        expires = now + timedelta(seconds=intent.lease_seconds)
        renewed = conn.execute(
            _subscriptions.update().where(_subscriptions.c.key == intent.key).values(secret=intent.secret, expires=expires)
        ).rowcount
        if not renewed:
            conn.execute(_subscriptions.insert().values(
                key=intent.key, topic=intent.topic, callback=intent.callback, host=intent.host, feed=intent.feed,
                scope=intent.scope, secret=intent.secret, expires=expires))
            if version > intent.version:
                self.outbox.queue(conn, [Push("delivery", intent.key, "", "content")], now)

    # -- distribution -------------------------------------------------------------------

    def expand(self, conn: Connection, scopes: Iterable[str], now: datetime) -> None:
        """Queue a delivery to every subscriber of ``scopes`` whose lease runs, in the sender's transaction; one failing
        since earlier brings that along, so that it is not asked for long again."""
        query = (sa.select(_subscriptions.c.key, _subscriptions.c.failing_since)
                 .where(_subscriptions.c.scope.in_(sorted(set(scopes))), _subscriptions.c.expires > now))
        self.outbox.queue(conn, [Push("delivery", row.key, "", "content", failing_since=row.failing_since)
                                 for row in conn.execute(query)], now)

    def owed(self, keys: Iterable[str], now: datetime) -> dict[str, Owed]:
        """The subscriptions of ``keys`` whose lease runs, each with its topic's content version now."""
        found = {}
        with self.db.read() as conn:
            for chunk in chunks(sorted(set(keys))):
                query = (sa.select(_subscriptions, _version(_subscriptions.c.scope).label("version"))
                         .where(_subscriptions.c.key.in_(chunk), _subscriptions.c.expires > now))
                for row in conn.execute(query):
                    found[row.key] = Owed(row.key, row.topic, row.callback, row.secret, row.feed, row.scope, int(row.version),
                                          row.delivered_etag)
        return found

    def delivered(self, conn: Connection, pushed: Sequence[Pushed], now: datetime, day: date) -> None:
        """Apply what became of deliveries (each ``note`` the ETag of the bytes the subscriber has now, or ``"gone"``
        for a 410, which ends its subscription) in the sender's transaction, and count them for ``day``."""
        s = _subscriptions
        feeds: dict[str, str] = {}
        for chunk in chunks(sorted({done.item.target for done in pushed})):
            feeds.update((row.key, row.feed) for row in conn.execute(sa.select(s.c.key, s.c.feed).where(s.c.key.in_(chunk))))
        pushed = [done for done in pushed if done.item.target in feeds]  # not those unsubscribed or expired meanwhile
        gone = [done.item.target for done in pushed if done.note == "gone"]
        for chunk in chunks(gone):
            conn.execute(s.delete().where(s.c.key.in_(chunk)))
        for result, values in (("sent", {"failing_since": None}), ("dropped", {})):  # the bytes it has; failing no more
            have = [{"k": done.item.target, "e": done.note} for done in pushed if done.result == result and done.note is not None]
            if have:
                conn.execute(s.update().where(s.c.key == sa.bindparam("k")).values(delivered_etag=sa.bindparam("e"), **values), have)
        failing = [{"k": done.item.target} for done in pushed if done.result in ("failed", "given_up") and done.note != "gone"]
        if failing:
            conn.execute(s.update().where(s.c.key == sa.bindparam("k")).values(
                failing_since=sa.func.coalesce(s.c.failing_since, now)), failing)
        counts: dict[str, list[int]] = {}
        for done in pushed:
            if done.result in ("sent", "failed", "given_up"):
                counts.setdefault(feeds[done.item.target], [0, 0])[done.result != "sent"] += 1
        rows = [{"day": day, "feed": feed, "delivered": d, "failed": f} for feed, (d, f) in sorted(counts.items())]
        if rows:
            insert = self._dialect.insert(websub_days)
            conn.execute(insert.on_conflict_do_update(
                index_elements=["day", "feed"],
                set_={"delivered": websub_days.c.delivered + insert.excluded.delivered,
                      "failed": websub_days.c.failed + insert.excluded.failed}), rows)

    def expire(self, now: datetime) -> int:
        """Remove the subscriptions whose lease has run out, and what was still owed to them; how many went."""

        def expire(conn: Connection) -> int:
            gone = list(conn.execute(sa.select(_subscriptions.c.key).where(_subscriptions.c.expires <= now)).scalars())
            self.outbox.forget(conn, "delivery", gone)
            for chunk in chunks(sorted(gone)):
                conn.execute(_subscriptions.delete().where(_subscriptions.c.key.in_(chunk)))
            return len(gone)

        return self.db.write(expire)

    # -- for the newsroom -----------------------------------------------------------------

    def feeds(self, now: datetime) -> dict[str, HubFeed]:
        """Each feed's subscribers now: active, waiting for confirmation, failing."""
        failing = _subscriptions.c.failing_since.is_not(None)
        kept = (
            sa.select(_subscriptions.c.feed, sa.func.count().label("all"), sa.func.count().filter(failing).label("failing"))
            .where(_subscriptions.c.expires > now).group_by(_subscriptions.c.feed)
        )
        waiting = (sa.select(_intents.c.feed, sa.func.count()).where(_intents.c.mode == "subscribe").group_by(_intents.c.feed))
        found: dict[str, HubFeed] = {}
        with self.db.read() as conn:
            for feed, total, failed in conn.execute(kept):
                found[feed] = HubFeed(feed, active=total - failed, failing=failed)
            for feed, pending in conn.execute(waiting):
                known = found.get(feed, HubFeed(feed))
                found[feed] = HubFeed(feed, known.active, pending, known.failing)
        return found

    def days(self, first: date, last: date) -> list[HubDay]:
        query = sa.select(websub_days).where(websub_days.c.day.between(first, last)).order_by(websub_days.c.day, websub_days.c.feed)
        with self.db.read() as conn:
            return [HubDay(row.day, row.feed, int(row.delivered), int(row.failed)) for row in conn.execute(query)]

    def count(self) -> int:
        with self.db.read() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(_subscriptions)) or 0)
