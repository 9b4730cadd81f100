"""Stored articles as domain objects: the query that reads an article with its category path and
source, and the mapping of its row to an ``Article``; every part of the store that hands out
articles (newest, archives, rankings, search) reads them through these.
"""
from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feeds.model import Article, Image, Source
from feeds.store.database import chunks
from feeds.store.schema import articles, categories, sources


def article_select(*extra: Any) -> sa.Select:
    """Articles with their category path and source, for ``to_article``."""
    return (
        sa.select(
            articles,
            categories.c.path.label("category_path"),
            sources.c.name.label("source_name"),
            sources.c.slug.label("source_slug"),
            sources.c.url.label("source_url"),
            *extra,
        )
        .select_from(articles)
        .outerjoin(categories, categories.c.id == articles.c.category_id)
        .outerjoin(sources, sources.c.id == articles.c.source_id)
    )


def to_article(row: Any) -> Article:
    return Article(
        id=row.id,
        url=row.url,
        title=row.title,
        summary=row.summary,
        content=row.content,
        author=row.author,
        source=Source(row.source_name, row.source_slug, row.source_url) if row.source_name else None,
        category=tuple(row.category_path.split("/")) if row.category_path else (),
        tags=tuple(json.loads(row.tags)),
        image=Image(row.image, row.image_width, row.image_height, row.image_caption, row.image_credit) if row.image else None,
        published=row.published,
        updated=row.updated,
        expires=row.expires,
    )


def image_columns(image: Image | None) -> dict[str, Any]:
    """An image as the articles table keeps it: its URL, and what is known of it, beside it."""
    return {"image": image.url if image else None, "image_width": image.width if image else None,
            "image_height": image.height if image else None, "image_caption": image.caption if image else None,
            "image_credit": image.credit if image else None}


def pks(conn: Connection, ids: set[str], *where: Any) -> dict[str, int]:
    """The pk of each of ``ids`` that names a stored article (meeting the conditions ``where``)."""
    found: dict[str, int] = {}
    for chunk in chunks(sorted(ids)):
        query = sa.select(articles.c.id, articles.c.pk).where(articles.c.id.in_(chunk), *where)
        found.update((row.id, row.pk) for row in conn.execute(query))
    return found

