"""Articles, with their categories and sources: upserts and deletes, and every read of them a feed makes.

Categories and sources are made on first use, each with a slug (the pinyin of its name,
or one chosen in config, with ``-2``, ``-3`` when two names spell the same), fixed from
then on. Every write records, in its own transaction, which feed scopes it changed
(``versions.py``).

Only ``published`` articles are public (``schema.py``). ``_Public`` gathers what one
transaction does to the public view, the same for a write, a delete and a release: an article
that joins it is listed under its categories and labels, indexed and counted, one that leaves
it is taken out of all of these and loses its reads (a hot list never ranks an article that is
not public), and every scope either touches is bumped.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feeds.model import Article, Category, Label, Source, status_at
from feeds.store.database import Database, chunks, free_slug, storable
from feeds.store.rows import article_select, image_columns, pks, to_article
from feeds.store.outbox import Outbox
from feeds.store.search import Indexed, Search
from feeds.store.sitemaps import Sitemaps
from feeds.store.labels import Labels, Named, label_scope, labels_of, stored_labels
from feeds.store.schema import (EXPIRED, EXPIRING, PUBLIC, SCHEDULED, article_categories, articles, categories, reads_daily, reads_hourly, reads_minutely, sources)
from feeds.store.versions import FeedVersions, Membership, category_scope, shown, source_scope
from feeds.text import slugify

Outcome = Literal["created", "updated", "unchanged"]
_COMPARED = ("url", "title", "summary", "content", "author", "source_id", "category_id", "tags", "image", "image_width",
             "image_height", "image_caption", "image_credit", "published", "expires")
_RELEASE_BATCH = 500  # articles moved per release transaction
_CATEGORY_SHOWN = shown(sa.literal("category:") + categories.c.slug_path)
_SOURCE_SHOWN = shown(sa.literal("source:") + sources.c.slug)


class Articles:
    """The articles of one database, each in its category (and every ancestor's feed) and source."""

    def __init__(self, db: Database, versions: FeedVersions, labels: Labels, search: Search, outbox: Outbox,
                 category_slugs: dict[str, str] | None = None, source_slugs: dict[str, str] | None = None):
        self.db = db
        self.versions = versions
        self.labels = labels
        self.search = search
        self.outbox = outbox
        self._category_slugs = category_slugs or {}
        self._source_slugs = source_slugs or {}

    def upsert(self, batch: Sequence[Article], now: datetime | None = None) -> list[Outcome]:
        """Store ``batch`` in one transaction, matching on ``id``; say what happened to each.

        An article whose stored form already equals the new one is left alone, so
        importing the same data twice changes nothing. An edit that brings no
        ``updated`` time of its own is stamped with ``now``.
        """
        now = now or datetime.now(timezone.utc)
        return self.db.write(lambda conn: self._upsert(conn, batch, now))

    def delete(self, article_id: str) -> bool:
        """Remove an article from the store and every feed; False when there was none."""
        if not storable(article_id):
            return False

        def delete(conn: Connection) -> bool:
            row = conn.execute(sa.select(articles).where(articles.c.id == article_id)).first()
            if row is None:
                return False
            old = row._asdict()
            public = _Public(conn, self, datetime.now(timezone.utc), {}, self.labels.ensure(conn, stored_labels(old)))
            if old["status"] == "published":
                public.leave(old)
            conn.execute(articles.delete().where(articles.c.pk == row.pk))
            public.finish()  # after the delete: its sitemap page is counted without it
            return True

        return self.db.write(delete)

    def release(self, now: datetime | None = None) -> int:
        """Move every article whose time has come by ``now`` and say how many moved: a scheduled one
        whose ``published`` time came joins the public outputs, a public one whose ``expires`` came leaves
        them, and a public one dated later than ``now`` (stored before scheduling was known, or the
        clock was set back) waits again. A few hundred per transaction, each bumping the scopes it moved.

        Safe to run in every process at once: on PostgreSQL each transaction takes the rows it moves
        and skips those another holds, so each article moves once and its announcements go out once.
        """
        now = now or datetime.now(timezone.utc)

        def move(conn: Connection) -> int:
            # Each a range of one index, in that index's order: ordered by anything else, a database reads every article.
            wanted = [(SCHEDULED, articles.c.published, articles.c.published <= now),
                      (EXPIRING, articles.c.expires, articles.c.expires <= now),
                      (PUBLIC, articles.c.published, articles.c.published > now)]
            rows: dict[int, sa.Row] = {}
            for condition, order, moment in wanted:
                query = (article_select().where(condition, moment).order_by(order).limit(_RELEASE_BATCH)
                         .with_for_update(skip_locked=True, of=articles))
                rows.update((row.pk, row) for row in conn.execute(query))
            if not rows:
                return 0
            found = [to_article(row) for row in rows.values()]
            public = _Public(conn, self, now, self._ensure_categories(conn, {a.category for a in found if a.category}),
                             self.labels.ensure(conn, set().union(*map(labels_of, found))))
            for row, article in zip(rows.values(), found):
                status = status_at(article.published, article.expires, now)
                conn.execute(articles.update().where(articles.c.pk == row.pk).values(status=status))
                if row.status == "published":
                    public.leave(row._asdict())
                if status == "published":
                    public.join(article, row._asdict())
            public.finish()
            return len(rows)

        moved = 0
        while step := self.db.write(move):
            moved += step
        return moved

    def next_due(self) -> datetime | None:
        """The earliest time a stored article is to join or leave the public outputs, None when none is."""
        soonest = sa.select(
            sa.select(sa.func.min(articles.c.published)).where(SCHEDULED).scalar_subquery(),
            sa.select(sa.func.min(articles.c.expires)).where(EXPIRING).scalar_subquery(),
        )
        with self.db.read() as conn:
            times = [moment for moment in conn.execute(soonest).one() if moment is not None]
        return min(times, default=None)

    def queued(self, status: Literal["scheduled", "expired"], limit: int) -> tuple[int, list[Article]]:
        """How many articles are ``scheduled`` (or ``expired``), and the first ``limit`` of them: the next
        to be published first (the last to have expired first)."""
        condition, order = (SCHEDULED, articles.c.published.asc()) if status == "scheduled" else (EXPIRED, articles.c.expires.desc())
        with self.db.read() as conn:
            total = int(conn.scalar(sa.select(sa.func.count()).select_from(articles).where(condition)) or 0)
            found = conn.execute(article_select().where(condition).order_by(order, articles.c.pk).limit(limit))
            return total, [to_article(row) for row in found]

    def newest(self, limit: int, category: Category | None = None, source: Source | None = None,
               label: Label | None = None) -> list[Article]:
        """The newest ``limit`` articles overall, of a category and its descendants, of a source, or of a tag or author."""
        if label is not None:
            ranked = self.labels.newest_pks(label, limit)
            query = article_select().join(ranked, ranked.c.pk == articles.c.pk)
        elif category is not None:
            # The category's id as a scalar subquery, not a join: PostgreSQL then reads the newest
            # `limit` entries backwards along the primary key instead of sorting all of them.
            ranked = (
                sa.select(article_categories.c.article_pk.label("pk"), article_categories.c.published)
                .where(article_categories.c.category_id == self._category_id(category))
                .order_by(article_categories.c.published.desc(), article_categories.c.article_pk.desc())
                .limit(limit)
                .subquery()
            )
            query = article_select().join(ranked, ranked.c.pk == articles.c.pk)
        else:
            query = article_select().where(PUBLIC)
            if source is not None:
                query = query.where(articles.c.source_id == self._source_id(source))
            query = query.limit(limit)
        query = query.order_by(articles.c.published.desc(), articles.c.pk.desc())
        with self.db.read() as conn:
            return [to_article(row) for row in conn.execute(query)]

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
            members = sa.select(articles.c.pk, articles.c.published).where(PUBLIC)
            if source is not None:
                members = members.where(articles.c.source_id == self._source_id(source))
            order = (articles.c.published, articles.c.pk)
        scope = category_scope(category.slug_path) if category else source_scope(source.slug) if source else "all"
        with self.db.read() as conn:
            total = FeedVersions.articles_in(conn, scope)
            if page is None:
                return total, []
            run = members.order_by(*order).offset((page - 1) * size).limit(size).subquery()
            query = (
                article_select().join(run, run.c.pk == articles.c.pk)
                .order_by(articles.c.published.desc(), articles.c.pk.desc())
            )
            return total, [to_article(row) for row in conn.execute(query)]

    def get(self, article_id: str) -> Article | None:
        if not storable(article_id):
            return None
        with self.db.read() as conn:
            row = conn.execute(article_select().where(articles.c.id == article_id)).first()
        return to_article(row) if row else None

    def known_ids(self, ids: set[str]) -> set[str]:
        """Those of ``ids`` that name a stored article."""
        with self.db.read() as conn:
            return set(pks(conn, {i for i in ids if storable(i)}))

    def categories(self) -> list[Category]:
        """Every category that has shown an article (``versions.shown``), parents before children, siblings in
        pinyin order (as Chinese indexes sort)."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(categories.c.path, categories.c.slug_path).where(_CATEGORY_SHOWN)).all()
        found = [Category(tuple(row.path.split("/")), tuple(row.slug_path.split("/"))) for row in rows]
        return sorted(found, key=lambda category: [slugify(name) for name in category.names])

    def category(self, slug_path: str) -> Category | None:
        if not storable(slug_path):
            return None
        with self.db.read() as conn:
            query = sa.select(categories.c.path, categories.c.slug_path).where(categories.c.slug_path == slug_path, _CATEGORY_SHOWN)
            row = conn.execute(query).first()
        return Category(tuple(row.path.split("/")), tuple(row.slug_path.split("/"))) if row else None

    def sources(self) -> list[Source]:
        """Every source that has shown an article (``versions.shown``)."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(sources.c.name, sources.c.slug, sources.c.url).where(_SOURCE_SHOWN).order_by(sources.c.slug)).all()
        return [Source(row.name, row.slug, row.url) for row in rows]

    def source(self, slug: str) -> Source | None:
        if not storable(slug):
            return None
        with self.db.read() as conn:
            row = conn.execute(sa.select(sources.c.name, sources.c.slug, sources.c.url).where(sources.c.slug == slug, _SOURCE_SHOWN)).first()
        return Source(row.name, row.slug, row.url) if row else None

    def count(self) -> int:
        with self.db.read() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(articles)) or 0)

    @staticmethod
    def _category_id(category: Category) -> sa.ScalarSelect[int]:
        return sa.select(categories.c.id).where(categories.c.slug_path == category.slug_path).scalar_subquery()

    @staticmethod
    def _source_id(source: Source) -> sa.ScalarSelect[int]:
        return sa.select(sources.c.id).where(sources.c.slug == source.slug).scalar_subquery()

    def _upsert(self, conn: Connection, batch: Sequence[Article], now: datetime) -> list[Outcome]:
        category_ids = self._ensure_categories(conn, {a.category for a in batch if a.category})
        source_ids = self._ensure_sources(conn, [a.source for a in batch if a.source])
        existing = {row.id: row._asdict() for row in self._rows_by_id(conn, {a.id for a in batch})}
        public = _Public(conn, self, now, category_ids,
                         self.labels.ensure(conn, set().union(*map(labels_of, batch), *map(stored_labels, existing.values()))))
        outcomes: list[Outcome] = []
        # New articles are written a statement for many, not one each: on PostgreSQL every statement is a round trip.
        new: dict[str, tuple[dict[str, Any], Article]] = {}

        def write_new() -> None:
            if new:
                rows = [values for values, _ in new.values()]
                pks = conn.execute(articles.insert().returning(articles.c.pk, sort_by_parameter_order=True), rows).scalars()
                for (values, article), pk in zip(new.values(), pks):
                    existing[article.id] = stored = {**values, "pk": pk}
                    if values["status"] == "published":
                        public.join(article, stored)
                new.clear()

        for article in batch:
            # No stored time is later than now: an `updated` to come is taken as now (as the publication
            # time, for an article not yet published), and sent again it changes nothing.
            latest = max(now, article.published)
            late = article.updated is not None and article.updated > latest
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
                **image_columns(article.image),
                "published": article.published,
                "updated": latest if late else article.updated,
                "expires": article.expires,
                "status": article.status(now),
            }
            if article.id in new:  # the same id again in this batch: an edit of the one just made
                write_new()
            old = existing.get(article.id)
            if old is None:
                new[article.id] = (values, article)
                outcomes.append("created")
                continue
            changed = any(old[key] != values[key] for key in _COMPARED)
            if values["updated"] is None or (late and not changed):
                # An edit is stamped with its time, unless nobody has seen the article yet.
                values["updated"] = now if changed and old["status"] == "published" else old["updated"]
            if not changed and values["updated"] == old["updated"]:
                outcomes.append("unchanged")
                continue
            if not changed:
                values["status"] = old["status"]  # only a new `updated`: the release moves it when its time comes
            conn.execute(articles.update().where(articles.c.pk == old["pk"]).values(values))
            existing[article.id] = stored = {**values, "pk": old["pk"]}
            if old["status"] == "published":
                write_new()  # the rows leave() deletes may be among those not yet written
                public.leave(old, keep_reads=values["status"] == "published")
            if values["status"] == "published":
                public.join(article, stored)
            outcomes.append("updated")
        write_new()
        public.finish()
        return outcomes

    def _ensure_categories(self, conn: Connection, paths: Iterable[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
        wanted = {path[:depth] for path in paths for depth in range(1, len(path) + 1)}
        known: dict[tuple[str, ...], tuple[int, str]] = {}
        for chunk in chunks(["/".join(path) for path in wanted]):
            for row in conn.execute(sa.select(categories).where(categories.c.path.in_(chunk))):
                known[tuple(row.path.split("/"))] = (row.id, row.slug_path)
        for path in sorted(wanted, key=len):
            if path in known:
                continue
            parent = known[path[:-1]] if len(path) > 1 else None
            slug = self._category_slugs.get("/".join(path)) or self._category_slugs.get(path[-1]) or slugify(path[-1])
            slug_path = free_slug(conn, categories.c.slug_path, f"{parent[1]}/{slug}" if parent else slug)
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
        for chunk in chunks(list(latest)):
            for row in conn.execute(sa.select(sources).where(sources.c.name.in_(chunk))):
                known[row.name] = row.id
                url = latest[row.name].url
                if url and url != row.url:
                    conn.execute(sources.update().where(sources.c.id == row.id).values(url=url))
        for name, source in latest.items():
            if name not in known:
                slug = free_slug(conn, sources.c.slug, self._source_slugs.get(name) or slugify(name))
                known[name] = conn.execute(sources.insert().values(name=name, slug=slug, url=source.url)).inserted_primary_key[0]
        return known

    @staticmethod
    def _rows_by_id(conn: Connection, ids: set[str]) -> Iterator[Any]:
        for chunk in chunks(sorted(ids)):
            yield from conn.execute(sa.select(articles).where(articles.c.id.in_(chunk)))


@dataclass
class _Public:
    """What one write transaction does to the public view (see the module's comment): rows to list
    articles under their categories and labels are gathered and written a statement for many at
    ``finish``, with the search index, the counts and the scope versions."""

    conn: Connection
    owner: Articles
    now: datetime
    category_ids: dict[tuple[str, ...], int]  # of every category path (and its ancestors) joined
    label_ids: dict[Named, tuple[int, str]]  # (id, slug) of every label joined or left
    joined: set[str] = field(default_factory=set)  # article URLs, for the search engines (store.outbox)
    left: set[str] = field(default_factory=set)
    arrived: dict[int, datetime] = field(default_factory=dict)  # pk: last change of each article that joined, and
    departed: set[int] = field(default_factory=set)  # the pk of each that left: their sitemap pages change
    closure: list[dict[str, Any]] = field(default_factory=list)
    labelled: list[dict[str, Any]] = field(default_factory=list)
    indexed: dict[int, Indexed] = field(default_factory=dict)  # what keyword search must find anew
    unindexed: dict[int, Indexed] = field(default_factory=dict)  # ... and forget, as indexed before
    added: list[Membership] = field(default_factory=list)  # (category, source) of each article that joins
    removed: list[Membership] = field(default_factory=list)  # ... and of each that leaves
    categories: set[int | None] = field(default_factory=set)
    sources: set[int | None] = field(default_factory=set)
    labels: set[Named] = field(default_factory=set)

    def join(self, article: Article, row: dict[str, Any]) -> None:
        """``article``, stored as ``row``, is public from this transaction on."""
        pk = row["pk"]
        self.closure.extend(
            {"category_id": self.category_ids[article.category[:depth]], "article_pk": pk, "published": article.published}
            for depth in range(1, len(article.category) + 1)
        )
        self.labelled.extend(
            {"label_id": self.label_ids[named][0], "published": article.published, "article_pk": pk} for named in labels_of(article)
        )
        self.indexed[pk] = Indexed.of(article)
        self.joined.add(article.url)
        self.arrived[pk] = row["updated"] or row["published"]  # as the sitemap counts it: sitemaps._CHANGED
        self._touch(row, labels_of(article), self.added)

    def leave(self, row: dict[str, Any], keep_reads: bool = False) -> None:
        """The article stored as ``row`` is public no more (or, with ``keep_reads``, joins again as edited)."""
        pk = row["pk"]
        self.flush()  # the rows to delete may be among those not yet written
        self.conn.execute(article_categories.delete().where(article_categories.c.article_pk == pk))
        self.owner.labels.unplace(self.conn, pk)
        if self.indexed.pop(pk, None) is None:  # else made public in this transaction: not in the index yet
            self.unindexed.setdefault(pk, Indexed.of(row))
        if not keep_reads:
            for table in (reads_minutely, reads_hourly, reads_daily):
                self.conn.execute(table.delete().where(table.c.article_pk == pk))
        self.left.add(row["url"])
        self.departed.add(pk)
        self.arrived.pop(pk, None)
        self._touch(row, stored_labels(row), self.removed)

    def flush(self) -> None:
        if self.closure:
            self.conn.execute(article_categories.insert(), self.closure)
            self.closure.clear()
        self.owner.labels.place(self.conn, self.labelled)
        self.labelled.clear()

    def finish(self) -> None:
        self.flush()
        self.owner.search.index(self.conn, self.indexed, self.unindexed)
        Sitemaps.recount(self.conn, self.arrived, self.departed)
        self.owner.outbox.articles_changed(self.conn, {url: "update" if url in self.left else "new" for url in self.joined}
                                           | {url: "delete" for url in self.left - self.joined}, self.now)
        if self.added or self.removed:
            self.owner.versions.changed(self.conn, self.categories, self.sources, self.added, self.removed)
            self.owner.versions.bump(self.conn, {label_scope(kind, self.label_ids[(kind, name)][1]) for kind, name in self.labels})

    def _touch(self, row: dict[str, Any], named: set[Named], members: list[Membership]) -> None:
        members.append((row["category_id"], row["source_id"]))
        self.categories.add(row["category_id"])
        self.sources.add(row["source_id"])
        self.labels.update(named)
