"""Tags and authors: each a label with a feed of its own, kept in the same transaction as the article.

A label is made on first use, with a slug (the pinyin of its name, or one chosen in config,
``-2``, ``-3`` when two names spell the same), fixed from then on. ``article_labels`` lists
each article under each of its labels by publication time, so a label's feed is one index
range scan, as a category's is.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feeds.model import Article, Label
from feeds.store.database import Database, chunks, free_slug, storable
from feeds.store.schema import article_labels, labels
from feeds.store.versions import shown
from feeds.text import slugify

KINDS = ("tag", "author")
Named = tuple[str, str]  # (kind, name)


def names_of(tags: Iterable[str], author: str | None) -> set[Named]:
    """The labels an article with these tags and author is listed under."""
    return {("tag", tag) for tag in tags} | ({("author", author)} if author else set())


def label_scope(kind: str, slug: str) -> str:
    return f"{kind}:{slug}"


class Labels:
    """The tags and authors of one database, and the newest articles of each."""

    def __init__(self, db: Database, slugs: dict[str, dict[str, str]] | None = None):
        self.db = db
        self._slugs = slugs or {}  # kind -> name -> slug chosen in config

    def get(self, kind: str, slug: str) -> Label | None:
        if kind not in KINDS or not storable(slug):
            return None
        with self.db.read() as conn:
            query = sa.select(labels.c.name).where(labels.c.kind == kind, labels.c.slug == slug, shown(labels.c.kind + ":" + labels.c.slug))
            row = conn.execute(query).first()
        return Label(kind, row.name, slug) if row else None  # type: ignore[arg-type]

    def of(self, articles: Sequence[Article]) -> list[tuple[Label, ...]]:
        """Each article's labels: its author, then its tags in its own order."""
        def named(article: Article) -> list[Named]:
            return [("author", article.author)] * bool(article.author) + [("tag", tag) for tag in article.tags]

        found: dict[Named, Label] = {}
        wanted = {name for article in articles for name in named(article)}
        with self.db.read() as conn:
            for kind in KINDS:
                for chunk in chunks(sorted(name for k, name in wanted if k == kind)):
                    query = sa.select(labels.c.name, labels.c.slug).where(labels.c.kind == kind, labels.c.name.in_(chunk))
                    found.update(((kind, row.name), Label(kind, row.name, row.slug)) for row in conn.execute(query))  # type: ignore[arg-type]
        return [tuple(found[name] for name in named(article) if name in found) for article in articles]

    def most_used(self, kind: str, limit: int | None = None) -> list[tuple[Label, int]]:
        """The labels of ``kind`` with how many articles each has, the most used first (then by slug)."""
        used = sa.func.count(article_labels.c.article_pk)
        query = (
            sa.select(labels.c.name, labels.c.slug, used.label("used"))
            .join(article_labels, article_labels.c.label_id == labels.c.id)
            .where(labels.c.kind == kind)
            .group_by(labels.c.id, labels.c.name, labels.c.slug)
            .order_by(used.desc(), labels.c.slug)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [(Label(kind, row.name, row.slug), int(row.used)) for row in conn.execute(query)]  # type: ignore[arg-type]

    def newest_pks(self, label: Label, limit: int) -> sa.Subquery:
        """The newest ``limit`` articles of ``label``, as a subquery of (pk, published) to join."""
        label_id = sa.select(labels.c.id).where(labels.c.kind == label.kind, labels.c.slug == label.slug).scalar_subquery()
        return (
            sa.select(article_labels.c.article_pk.label("pk"), article_labels.c.published)
            .where(article_labels.c.label_id == label_id)
            .order_by(article_labels.c.published.desc(), article_labels.c.article_pk.desc())
            .limit(limit)
            .subquery()
        )

    # -- inside a write transaction ---------------------------------------------------

    def ensure(self, conn: Connection, wanted: set[Named]) -> dict[Named, tuple[int, str]]:
        """The (id, slug) of each wanted label, made where missing."""
        known: dict[Named, tuple[int, str]] = {}
        for kind in KINDS:
            names = sorted(name for k, name in wanted if k == kind)
            for chunk in chunks(names):
                query = sa.select(labels.c.id, labels.c.name, labels.c.slug).where(labels.c.kind == kind, labels.c.name.in_(chunk))
                known.update(((kind, row.name), (row.id, row.slug)) for row in conn.execute(query))
            for name in names:
                if (kind, name) not in known:
                    slug = free_slug(conn, labels.c.slug, self._slugs.get(kind, {}).get(name) or slugify(name), labels.c.kind == kind)
                    label_id = conn.execute(labels.insert().values(kind=kind, name=name, slug=slug)).inserted_primary_key[0]
                    known[(kind, name)] = (label_id, slug)
        return known

    @staticmethod
    def place(conn: Connection, rows: list[dict[str, Any]]) -> None:
        """List articles under labels: rows of label_id, published, article_pk."""
        if rows:
            conn.execute(article_labels.insert(), rows)

    @staticmethod
    def unplace(conn: Connection, pk: int) -> None:
        conn.execute(article_labels.delete().where(article_labels.c.article_pk == pk))


def labels_of(article: Article) -> set[Named]:
    return names_of(article.tags, article.author)


def stored_labels(row: dict[str, Any]) -> set[Named]:
    """The labels of an article as stored (tags kept as JSON)."""
    return names_of(json.loads(row["tags"]), row["author"])

