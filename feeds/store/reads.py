"""Reads of articles, summed into minute, hour and day buckets for the hot lists (``rankings.py``).

Every batch of read events bumps the ``hot`` scope, so that cached hot lists are
rendered again. Buckets that no ranking window can reach any more are pruned.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import cache

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from feeds.model import ReadEvent
from feeds.store.rows import pks
from feeds.store.database import Database
from feeds.store.schema import PUBLIC, UTCDateTime, metadata, reads_daily, reads_hourly, reads_minutely
from feeds.store.versions import FeedVersions

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
BUCKETS = ((reads_minutely, MINUTE), (reads_hourly, HOUR), (reads_daily, DAY))  # also the order rows are locked in


class Reads:
    """How often each article was read, by minute, hour and day."""

    def __init__(self, db: Database):
        self.db = db
        self._pruned_before: datetime | None = None  # how far record(keep=…) has pruned, in this process

    def record(self, events: Sequence[ReadEvent], keep: timedelta | None = None, now: datetime | None = None) -> int:
        """Add read events to their minute, hour and day buckets, in one transaction; return how many
        counted. Reads of an article that is not public (scheduled, expired) are not counted: a hot list
        must not rank it, and when it is published its reads start from nothing.

        Raises ``KeyError`` naming the first unknown article id; nothing is written then.
        With ``keep`` (the longest ranking window), buckets that no window ending at ``now``
        or later can reach are then pruned, at most once an hour per process, in a
        transaction of their own; a failed prune is left for the next call.
        """
        counted = 0
        if events:

            def record(conn: Connection) -> int:
                ids = {event.article_id for event in events}
                known = pks(conn, ids)
                for event in events:
                    if event.article_id not in known:
                        raise KeyError(event.article_id)
                found = pks(conn, ids, PUBLIC)
                moments = [(int(event.at.timestamp()), found[event.article_id], event.count) for event in events
                           if event.article_id in found]
                for table, width in BUCKETS:
                    step = int(width.total_seconds())
                    totals: dict[tuple[int, int], int] = {}
                    for seconds, pk, count in moments:
                        key = (seconds - seconds % step, pk)
                        totals[key] = totals.get(key, 0) + count
                    self._add_counts(conn, table, totals)
                if moments:
                    FeedVersions.bump(conn, {"hot"})
                return len(moments)

            counted = self.db.write(record)
        if keep is not None:
            cutoff = floor((now or datetime.now(timezone.utc)) - keep, HOUR)
            if self._pruned_before is None or cutoff > self._pruned_before:
                self._pruned_before = cutoff
                try:
                    self.prune(cutoff)
                except sa.exc.DBAPIError:  # e.g. a deadlock with a concurrent writer: try again next time
                    self._pruned_before = None
        return counted

    def prune(self, before: datetime) -> int:
        """Drop the read buckets that end by ``before``; return how many rows went.

        A ranking window of length W ending at ``now`` or later reads no bucket that ends
        by ``now - W``, so ``before = now - longest window`` keeps every list exact.
        """

        def prune(conn: Connection) -> int:
            removed = 0
            for table, width in BUCKETS:
                removed += conn.execute(table.delete().where(table.c.bucket <= before - width)).rowcount
            return removed

        return self.db.write(prune)

    def any_since(self, moment: datetime) -> bool:
        """Whether any read is stored at ``moment`` or later (to the minute)."""
        with self.db.read() as conn:
            query = sa.select(reads_minutely.c.bucket).where(reads_minutely.c.bucket >= floor(moment, MINUTE)).limit(1)
            return conn.scalar(query) is not None

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
        if self.db.dialect == "postgresql":
            given = {"buckets": buckets, "pks": [pk for _, pk in keys], "counts": [totals[key] for key in keys]}
            conn.execute(_add_counts_statement(table.name, "postgresql"), given)
        else:
            rows = [{"bucket": bucket, "article_pk": pk, "count": totals[bucket_s, pk]} for bucket, (bucket_s, pk) in zip(buckets, keys)]
            conn.execute(_add_counts_statement(table.name, "sqlite"), rows)


@cache  # built once per table and dialect: building a statement took longer than running it
def _add_counts_statement(name: str, dialect: str) -> sa.Executable:
    """Add counts to the buckets of the table ``name``: rows of (bucket, article_pk, count)
    on SQLite, arrays ``:buckets``, ``:pks`` and ``:counts`` on PostgreSQL."""
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


def floor(moment: datetime, width: timedelta) -> datetime:
    moment = moment.astimezone(timezone.utc)
    seconds = int(moment.timestamp())
    step = int(width.total_seconds())
    return datetime.fromtimestamp(seconds - seconds % step, timezone.utc)


def ceil(moment: datetime, width: timedelta) -> datetime:
    floored = floor(moment, width)
    return floored if floored == moment else floored + width
