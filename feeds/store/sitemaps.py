"""What the search engines' sitemaps list: every public article's URL once, in pages of fixed
ranges of storage order, and the public articles of the last days for a news sitemap.

A page holds the articles stored ``(n - 1) * size + 1`` to ``n * size`` (by ``pk``), so a new
article changes only the last page, an edit only its own. A URL that several public articles
share is listed with the first of them stored (``ix_articles_url`` finds the others).
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from feeds.model import Article
from feeds.store.database import Database
from feeds.store.rows import article_select, to_article
from feeds.store.schema import PUBLIC, articles

_CHANGED = sa.func.coalesce(articles.c.updated, articles.c.published)  # updated is only kept when later
_EARLIER = articles.alias("earlier")
_FIRST_WITH_URL = ~sa.exists().where(_EARLIER.c.url == articles.c.url, _EARLIER.c.pk < articles.c.pk,
                                     _EARLIER.c.status == "published")


class Sitemaps:
    def __init__(self, db: Database):
        self.db = db

    def pages(self, size: int) -> list[tuple[int, datetime]]:
        """Each page that holds a public article, with the last change to any of them."""
        page = ((articles.c.pk - 1) // size + 1).label("page")
        query = sa.select(page, sa.func.max(_CHANGED)).where(PUBLIC).group_by(page).order_by(page)
        with self.db.read() as conn:
            return [(int(number), changed) for number, changed in conn.execute(query)]

    def page(self, number: int, size: int) -> list[tuple[str, datetime]]:
        """(url, last change) of the public articles of page ``number``, in storage order."""
        query = (
            sa.select(articles.c.url, _CHANGED)
            .where(PUBLIC, articles.c.pk > (number - 1) * size, articles.c.pk <= number * size, _FIRST_WITH_URL)
            .order_by(articles.c.pk)
        )
        with self.db.read() as conn:
            return [(url, changed) for url, changed in conn.execute(query)]

    def news(self, since: datetime, limit: int) -> list[Article]:
        """The public articles published since ``since``, newest first, at most ``limit``."""
        query = (article_select().where(PUBLIC, articles.c.published >= since, _FIRST_WITH_URL)
                 .order_by(articles.c.published.desc(), articles.c.pk.desc()).limit(limit))
        with self.db.read() as conn:
            return [to_article(row) for row in conn.execute(query)]
