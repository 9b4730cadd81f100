"""The WebSub hub's state: requests waiting for confirmation, subscriptions, and what each is owed.

Work is claimed before it is done: a process marks the rows it takes ``claimed_until`` a
while ahead, in a transaction that on PostgreSQL skips rows another process holds
(``FOR UPDATE SKIP LOCKED``) and on SQLite holds the one write lock, so that with several
workers and instances each verification and delivery goes out once. A process that dies
with work claimed leaves it to be claimed again when the claim runs out: nothing is lost.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from feeds.model import HubDay, HubFeed, Intent, Owed, Sent
from feeds.store.database import Database, chunks
from feeds.store.schema import feed_versions, websub_days, websub_intents, websub_subscriptions

_intents, _subscriptions = websub_intents, websub_subscriptions


class LimitReached(Exception):
    """A new subscription would pass ``websub.max_subscriptions`` or ``websub.max_per_host``."""


class Subscriptions:
    def __init__(self, db: Database):
        self.db = db
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
                      "lease_seconds": intent.lease_seconds, "requested": now, "claimed_until": None}
            insert = self._dialect.insert(_intents).values(key=intent.key, **values)
            conn.execute(insert.on_conflict_do_update(index_elements=["key"], set_=values))

        self.db.write(store)

    def claim_requests(self, now: datetime, most: int, hold: timedelta) -> list[Intent]:
        """Up to ``most`` waiting requests, oldest first, held for this process until ``now + hold``, each with its
        topic's content version now, before its callback is asked."""
        free = sa.or_(_intents.c.claimed_until.is_(None), _intents.c.claimed_until <= now)
        version = sa.select(feed_versions.c.version).where(feed_versions.c.scope == _intents.c.scope).scalar_subquery()
        query = (sa.select(_intents, sa.func.coalesce(version, 0).label("version"))
                 .where(free).order_by(_intents.c.requested).limit(most))
        rows = self._claim(_intents, query, now + hold)
        return [Intent(row.key, row.topic, row.callback, row.host, row.feed, row.scope, row.mode, row.secret,
                       row.lease_seconds, row.version) for row in rows]

    def confirmed(self, intent: Intent, now: datetime) -> None:
        """The callback confirmed ``intent``: subscribe (owed every change since the intent was claimed, even one
        made while the callback was being asked; a renewal keeps what it was owed) or unsubscribe."""

        def apply(conn: Connection) -> None:
            conn.execute(_intents.delete().where(_intents.c.key == intent.key))
            if intent.mode == "unsubscribe":
                conn.execute(_subscriptions.delete().where(_subscriptions.c.key == intent.key))
                return
            expires = now + timedelta(seconds=intent.lease_seconds)
            renewed = conn.execute(
                _subscriptions.update().where(_subscriptions.c.key == intent.key)
                .values(secret=intent.secret, expires=expires)
            ).rowcount
            if not renewed:
                conn.execute(_subscriptions.insert().values(
                    key=intent.key, topic=intent.topic, callback=intent.callback, host=intent.host, feed=intent.feed,
                    scope=intent.scope, secret=intent.secret, expires=expires,
                    delivered_version=intent.version, due=now, attempts=0,
                ))

        self.db.write(apply)

    def dropped(self, intent: Intent) -> None:
        """The callback did not confirm ``intent``: forget it (a subscription it would renew stays as it is)."""
        self.db.write(lambda conn: conn.execute(_intents.delete().where(_intents.c.key == intent.key)))

    # -- distribution -------------------------------------------------------------------

    def claim_owed(self, now: datetime, most: int, hold: timedelta) -> list[Owed]:
        """Up to ``most`` subscriptions whose topic changed since they were last sent, due now and not
        expired, held for this process until ``now + hold``; with the version each is owed."""
        query = (
            sa.select(_subscriptions, feed_versions.c.version)
            .join(feed_versions, feed_versions.c.scope == _subscriptions.c.scope)
            .where(
                feed_versions.c.version > _subscriptions.c.delivered_version,
                _subscriptions.c.due <= now,
                _subscriptions.c.expires > now,
                sa.or_(_subscriptions.c.claimed_until.is_(None), _subscriptions.c.claimed_until <= now),
            )
            .order_by(_subscriptions.c.due)
            .limit(most)
        )
        rows = self._claim(_subscriptions, query, now + hold)
        return [Owed(row.key, row.topic, row.callback, row.secret, row.feed, int(row.version), row.delivered_etag,
                     row.attempts, row.failing_since) for row in rows]

    def record(self, sent: Sequence[Sent], now: datetime, day: date) -> None:
        """Write what became of the claimed deliveries at ``now``, and count them for ``day``, in one transaction."""
        if not sent:
            return
        s = _subscriptions

        def apply(conn: Connection) -> None:
            by_result: dict[str, list[Sent]] = {}
            for item in sent:
                by_result.setdefault(item.result, []).append(item)
            done = by_result.get("delivered", []) + by_result.get("unchanged", []) + by_result.get("given_up", [])
            if done:
                conn.execute(
                    s.update().where(s.c.key == sa.bindparam("k")).values(
                        delivered_version=sa.bindparam("v"), delivered_etag=sa.bindparam("e"), attempts=0,
                        failing_since=sa.bindparam("f"), claimed_until=None),
                    [{"k": item.owed.key, "v": item.owed.version, "e": item.etag or item.owed.delivered_etag,
                      "f": (item.owed.failing_since or now) if item.result == "given_up" else None} for item in done],
                )
            failed = by_result.get("failed", [])
            if failed:
                conn.execute(
                    s.update().where(s.c.key == sa.bindparam("k")).values(
                        attempts=s.c.attempts + 1, failing_since=sa.func.coalesce(s.c.failing_since, sa.bindparam("now")),
                        due=sa.bindparam("due"), claimed_until=None),
                    [{"k": item.owed.key, "now": now, "due": item.retry_at} for item in failed],
                )
            for chunk in chunks([item.owed.key for item in by_result.get("gone", [])]):
                conn.execute(s.delete().where(s.c.key.in_(chunk)))
            counts: dict[str, list[int]] = {}
            for item in sent:
                tally = counts.setdefault(item.owed.feed, [0, 0])
                tally[0] += item.result == "delivered"
                tally[1] += item.result in ("failed", "given_up", "gone")
            rows = [{"day": day, "feed": feed, "delivered": d, "failed": f} for feed, (d, f) in sorted(counts.items()) if d or f]
            if rows:
                insert = self._dialect.insert(websub_days)
                conn.execute(insert.on_conflict_do_update(
                    index_elements=["day", "feed"],
                    set_={"delivered": websub_days.c.delivered + insert.excluded.delivered,
                          "failed": websub_days.c.failed + insert.excluded.failed}), rows)

        self.db.write(apply)

    def expire(self, now: datetime) -> int:
        """Remove the subscriptions whose lease has run out; how many went."""
        return self.db.write(lambda conn: conn.execute(_subscriptions.delete().where(_subscriptions.c.expires <= now)).rowcount)

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

    # -- internals --------------------------------------------------------------------------

    def _claim(self, table: sa.Table, query: sa.Select, until: datetime) -> list[sa.Row]:
        with self.db.read() as conn:  # most of the time there is nothing to do: find that out without a write lock
            if conn.execute(query.limit(1)).first() is None:
                return []
        if self.db.dialect == "postgresql":
            query = query.with_for_update(of=table, skip_locked=True)

        def claim(conn: Connection) -> list[sa.Row]:
            rows = conn.execute(query).all()
            for chunk in chunks([row.key for row in rows]):
                conn.execute(table.update().where(table.c.key.in_(chunk)).values(claimed_until=until))
            return rows

        return self.db.write(claim)
