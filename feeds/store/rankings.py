"""Hot-list rankings: the articles most read in a window, exact to the minute, and when a list last changed.

A ranking sums whole hours from the hourly buckets and the ragged hours at both ends of
its window from the minute buckets (``reads.py``). The long tail of rarely read articles
is not summed when the day buckets show that it cannot reach the list
(``Rankings._top_by_threshold``). The statements are built once per shape
(``_statements``) and run with new parameters: building them anew took longer than
running them.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from feeds.model import Category, Ranked
from feeds.store.rows import article_select, to_article
from feeds.store.database import Database, chunks
from feeds.store.reads import DAY, HOUR, MINUTE, ceil, floor
from feeds.store.schema import PUBLIC, article_categories, articles, categories, metadata, ranking_states, reads_daily, reads_hourly, reads_minutely

_SEEDS = 4  # articles summed first to bound a ranking from below, per place in the list (Rankings._top_by_threshold)
_CATEGORY_SPREAD = 5  # for a category, look first among five times as many of all articles
_CATEGORY_DEPTH = 300  # else this far down each day's most read articles of the category
_MAX_CANDIDATES = 5_000  # beyond this many, summing every article in one statement is faster


class Rankings:
    """The hot lists' rankings over the stored reads."""

    def __init__(self, db: Database):
        self.db = db

    def top(self, now: datetime, window: timedelta, limit: int, category: Category | None = None) -> list[Ranked]:
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
        with self.db.read() as conn:
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
            for chunk in chunks([pk for pk, _ in top]):
                rows.update((row.pk, row) for row in conn.execute(article_select().where(articles.c.pk.in_(chunk), PUBLIC)))
        # An article leaves the public outputs with its reads; one read while it was on its way out is left out here.
        return [Ranked(to_article(rows[pk]), reads) for pk, reads in top if pk in rows]

    def changed(self, feed: str, signature: str, now: datetime | None = None) -> datetime:
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
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        for _ in range(10):
            with self.db.read() as conn:
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
            if self.db.write(lambda conn: conn.execute(swap).rowcount) == 1:
                return changed
        return changed  # lost ten races in a row: answer without storing; the next request stores it

    # -- internals ----------------------------------------------------------------------

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
        for days in chunks(list(span.days), 100):
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
        for days in chunks(list(span.days)):
            found.update(conn.scalars(query, {"days": days, "least": least, "most": _MAX_CANDIDATES + 1, **scope}))
            if len(found) > _MAX_CANDIDATES:
                return None
        return found

    @staticmethod
    def _members(conn: Connection, pks: set[int], category_id: int) -> set[int]:
        """Those of ``pks`` in the category, descendants included: looked up one by one."""
        found: set[int] = set()
        for chunk in chunks(sorted(pks)):
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
        for chunk in chunks(sorted(pks)):
            found.update((pk, int(reads)) for pk, reads in conn.execute(query, {**given, "pks": chunk}))
        return found

    @staticmethod
    def _order(conn: Connection, sums: dict[int, int], limit: int) -> list[tuple[int, int]]:
        """The first ``limit`` of ``sums`` by reads, then publication time, then pk, all descending."""
        published: dict[int, datetime] = {}
        for chunk in chunks(sorted(sums)):
            published.update((pk, at) for pk, at in conn.execute(_statements.published(), {"pks": chunk}))
        ranked = sorted(published, key=lambda pk: (sums[pk], published[pk], pk), reverse=True)
        return [(pk, sums[pk]) for pk in ranked[:limit]]



class _Statements:
    """The statements of rankings, one per shape, with bound parameters for everything else."""

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

    def published(self) -> sa.Select:
        """(pk, published) of the articles ``:pks``."""

        def build() -> sa.Select:
            return sa.select(articles.c.pk, articles.c.published).where(articles.c.pk.in_(sa.bindparam("pks", expanding=True)))

        return self._get(("published",), build)


_statements = _Statements()


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
        lo = floor(now - window, MINUTE)
        hi = floor(now, MINUTE) + MINUTE
        whole_from = ceil(lo, HOUR)
        whole_to = floor(hi, HOUR)
        if whole_from < whole_to:
            pieces = [(reads_minutely, lo, whole_from), (reads_hourly, whole_from, whole_to), (reads_minutely, whole_to, hi)]
        else:
            pieces = [(reads_minutely, lo, hi)]
        days = []
        day = floor(lo, DAY)
        while day < hi:
            days.append(day)
            day += DAY
        return cls(tuple((table, start, end) for table, start, end in pieces if start < end), tuple(days))

