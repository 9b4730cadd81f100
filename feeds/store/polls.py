"""Poll statistics: who polls each feed, per day in the site's timezone (``feeds/stats.py`` counts them).

Each process merges what it counted into the stored days; several processes and
instances add up, pollers as a union of salted hashes, aggregator reports as the
largest. A day's hashes are collapsed into a count once no flush adds to it any more.
"""
from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from feeds.model import FeedDay, PollCounts
from feeds.store.database import Database
from feeds.store.schema import stats_aggregators, stats_clients, stats_daily, stats_pollers, stats_salts


class PollStats:
    """The poll statistics tables."""

    def __init__(self, db: Database):
        self.db = db
        self._dialect = postgresql if db.dialect == "postgresql" else sqlite

    def add(self, counts: Sequence[PollCounts], keep_from: date, open_from: date) -> None:
        """Merge ``counts`` into the stored ones in one transaction: requests summed, pollers
        united, each service's report the largest. Then days before ``keep_from`` are
        deleted, and the poller hashes of days before ``open_from`` (no flush adds to them
        any more) are collapsed into their count."""

        dialect = self._dialect

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
            conn.execute(stats_salts.delete().where(stats_salts.c.day < open_from))

        self.db.write(add)

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
        with self.db.read() as conn:
            return [FeedDay(row.day, row.feed, int(row.requests), int(row.not_modified), int(row.pollers), int(row.reported))
                    for row in conn.execute(query)]

    def salt(self, day: date) -> bytes:
        """The key of the day's poller hashes, the same for every process and instance: made by the
        first to ask, and deleted with the day's hashes once the day is closed (``add``)."""
        with self.db.read() as conn:
            found = conn.scalar(sa.select(stats_salts.c.salt).where(stats_salts.c.day == day))
        if found is None:
            self.db.write(lambda conn: conn.execute(
                self._dialect.insert(stats_salts).values(day=day, salt=secrets.token_bytes(32)).on_conflict_do_nothing()))
            with self.db.read() as conn:
                found = conn.scalar(sa.select(stats_salts.c.salt).where(stats_salts.c.day == day))
        return bytes(found)

    def reports(self, day: date) -> dict[str, dict[str, int]]:
        """The subscribers each aggregator service reported for each feed on ``day``."""
        query = sa.select(stats_aggregators.c.feed, stats_aggregators.c.service, stats_aggregators.c.subscribers).where(
            stats_aggregators.c.day == day)
        found: dict[str, dict[str, int]] = {}
        with self.db.read() as conn:
            for feed, service, subscribers in conn.execute(query):
                found.setdefault(feed, {})[service] = int(subscribers)
        return found

    def client_requests(self, first: date, last: date) -> dict[str, dict[str, int]]:
        """Requests per client application of each feed from ``first`` to ``last``."""
        query = (
            sa.select(stats_clients.c.feed, stats_clients.c.client, sa.func.sum(stats_clients.c.requests))
            .where(stats_clients.c.day.between(first, last))
            .group_by(stats_clients.c.feed, stats_clients.c.client)
        )
        found: dict[str, dict[str, int]] = {}
        with self.db.read() as conn:
            for feed, client, requests in conn.execute(query):
                found.setdefault(feed, {})[client] = int(requests)
        return found

