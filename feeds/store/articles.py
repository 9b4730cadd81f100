"""Articles, with their categories and sources: upserts and deletes, and every read of them a feed makes.

Categories and sources are made on first use, each with a slug (the pinyin of its name,
or one chosen in config, with ``-2``, ``-3`` when two names spell the same), fixed from
then on. Every write records, in its own transaction, which feed scopes it changed
(``versions.py``).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feeds.model import Article, Category, Label, Source
from feeds.store.database import Database, chunks, free_slug, storable
from feeds.store.rows import article_select, pks, to_article
from feeds.store.search import Indexed, Search
from feeds.store.labels import Labels, label_scope, labels_of, stored_labels
from feeds.store.schema import article_categories, article_labels, articles, categories, reads_daily, reads_hourly, reads_minutely, sources
from feeds.store.versions import FeedVersions, Membership, category_scope, source_scope
from feeds.text import slugify

Outcome = Literal["created", "updated", "unchanged"]
_COMPARED = ("url", "title", "summary", "content", "author", "source_id", "category_id", "tags", "image", "published")


class Articles:
    """The articles of one database, each in its category (and every ancestor's feed) and source."""

    def __init__(self, db: Database, versions: FeedVersions, labels: Labels, search: Search, category_slugs: dict[str, str] | None = None,
                 source_slugs: dict[str, str] | None = None):
        self.db = db
        self.versions = versions
        self.labels = labels
        self.search = search
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
            row = conn.execute(sa.select(articles.c.pk, articles.c.category_id, articles.c.source_id, articles.c.tags, articles.c.author,
                                         articles.c.published, articles.c.title, articles.c.summary, articles.c.content)
                               .where(articles.c.id == article_id)).first()
            if row is None:
                return False
            pk = row.pk
            self.versions.changed(conn, {row.category_id}, {row.source_id}, added=[], removed=[(row.category_id, row.source_id)])
            self.versions.bump(conn, self._label_scopes(self.labels.ensure(conn, stored_labels(row._asdict()))))
            self.search.index(conn, added={}, removed={pk: Indexed.of(row)})
            for table in (article_categories, article_labels, reads_minutely, reads_hourly, reads_daily):
                conn.execute(table.delete().where(table.c.article_pk == pk))
            conn.execute(articles.delete().where(articles.c.pk == pk))
            return True

        return self.db.write(delete)

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
            query = article_select()
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
            members = sa.select(articles.c.pk, articles.c.published)
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
        """Every category, parents before children, siblings in pinyin order (as Chinese indexes sort)."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(categories.c.path, categories.c.slug_path)).all()
        found = [Category(tuple(row.path.split("/")), tuple(row.slug_path.split("/"))) for row in rows]
        return sorted(found, key=lambda category: [slugify(name) for name in category.names])

    def category(self, slug_path: str) -> Category | None:
        if not storable(slug_path):
            return None
        with self.db.read() as conn:
            row = conn.execute(sa.select(categories.c.path, categories.c.slug_path).where(categories.c.slug_path == slug_path)).first()
        return Category(tuple(row.path.split("/")), tuple(row.slug_path.split("/"))) if row else None

    def sources(self) -> list[Source]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(sources.c.name, sources.c.slug, sources.c.url).order_by(sources.c.slug)).all()
        return [Source(row.name, row.slug, row.url) for row in rows]

    def source(self, slug: str) -> Source | None:
        if not storable(slug):
            return None
        with self.db.read() as conn:
            row = conn.execute(sa.select(sources.c.name, sources.c.slug, sources.c.url).where(sources.c.slug == slug)).first()
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
        label_ids = self.labels.ensure(conn, set().union(*map(labels_of, batch), *map(stored_labels, existing.values())))
        touched_labels: set[tuple[str, str]] = set()
        outcomes: list[Outcome] = []
        touched_categories: set[int | None] = set()
        touched_sources: set[int | None] = set()
        added: list[Membership] = []  # (category, source) of each article that joins them
        removed: list[Membership] = []  # ... and of each that leaves them
        # New articles and closure rows are written a statement for many, not one each: on
        # PostgreSQL every statement is a round trip.
        new: dict[str, tuple[dict[str, Any], Article]] = {}
        closure: list[dict[str, Any]] = []
        labelled: list[dict[str, Any]] = []
        # What keyword search must find anew, and what it must forget (as indexed before this batch).
        indexed: dict[int, Indexed] = {}
        unindexed: dict[int, Indexed] = {}

        def label(article: Article, pk: int) -> None:
            labelled.extend(
                {"label_id": label_ids[named][0], "published": article.published, "article_pk": pk} for named in labels_of(article)
            )

        def place(article: Article, pk: int) -> None:
            closure.extend(
                {"category_id": category_ids[article.category[:depth]], "article_pk": pk, "published": article.published}
                for depth in range(1, len(article.category) + 1)
            )

        def write_new() -> None:
            if new:
                rows = [values for values, _ in new.values()]
                pks = conn.execute(articles.insert().returning(articles.c.pk, sort_by_parameter_order=True), rows).scalars()
                for (values, article), pk in zip(new.values(), pks):
                    existing[article.id] = {**values, "pk": pk}
                    place(article, pk)
                    label(article, pk)
                    indexed[pk] = Indexed.of(article)
                new.clear()
            if closure:
                conn.execute(article_categories.insert(), closure)
                closure.clear()
            self.labels.place(conn, labelled)
            labelled.clear()

        for article in batch:
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
                "image": article.image,
                "published": article.published,
                "updated": article.updated,
            }
            if article.id in new:  # the same id again in this batch: an edit of the one just made
                write_new()
            old = existing.get(article.id)
            if old is None:
                new[article.id] = (values, article)
                outcomes.append("created")
                added.append((values["category_id"], values["source_id"]))
                touched_categories.add(values["category_id"])
                touched_sources.add(values["source_id"])
                touched_labels.update(labels_of(article))
                continue
            pk = old["pk"]
            changed = any(old[key] != values[key] for key in _COMPARED)
            if values["updated"] is None:
                values["updated"] = now if changed else old["updated"]
            if not changed and values["updated"] == old["updated"]:
                outcomes.append("unchanged")
                continue
            touched_categories.update((old["category_id"], values["category_id"]))
            touched_sources.update((old["source_id"], values["source_id"]))
            touched_labels.update(stored_labels(old) | labels_of(article))
            if (old["category_id"], old["source_id"]) != (values["category_id"], values["source_id"]):
                removed.append((old["category_id"], old["source_id"]))
                added.append((values["category_id"], values["source_id"]))
            conn.execute(articles.update().where(articles.c.pk == pk).values(values))
            if Indexed.of(old) != Indexed.of(values):
                if pk not in indexed:  # else made in this batch: not in the index yet
                    unindexed.setdefault(pk, Indexed.of(old))
                indexed[pk] = Indexed.of(article)
            outcomes.append("updated")
            existing[article.id] = {**values, "pk": pk}
            if old["category_id"] != values["category_id"] or old["published"] != values["published"]:
                write_new()  # the rows to delete may be among those not yet written
                conn.execute(article_categories.delete().where(article_categories.c.article_pk == pk))
                place(article, pk)
            if stored_labels(old) != labels_of(article) or old["published"] != values["published"]:
                write_new()
                self.labels.unplace(conn, pk)
                label(article, pk)
        write_new()
        self.search.index(conn, indexed, unindexed)
        if any(outcome != "unchanged" for outcome in outcomes):
            self.versions.changed(conn, touched_categories, touched_sources, added, removed)
            self.versions.bump(conn, self._label_scopes({named: label_ids[named] for named in touched_labels}))
        return outcomes

    @staticmethod
    def _label_scopes(found: dict[tuple[str, str], tuple[int, str]]) -> set[str]:
        return {label_scope(kind, slug) for (kind, _), (_, slug) in found.items()}

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
