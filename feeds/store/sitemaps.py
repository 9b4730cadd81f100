"""What the search engines' sitemaps list: every public article's URL once, in pages of fixed
ranges of storage order, and the public articles of the last days for a news sitemap.

A page holds the articles stored ``(n - 1) * PAGE + 1`` to ``n * PAGE`` (by ``pk``), so a new
article changes only the last page, an edit only its own. Each page's last change and article
count are kept in ``sitemap_pages`` by the transaction that changes the public view (``recount``,
called by ``articles.py``), so the index reads a row a page. A URL that several public articles
share is listed with the first of them stored (``ix_articles_url`` finds the others).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from feeds.model import Article
from feeds.store.database import Database
from feeds.store.rows import article_select, to_article
from feeds.store.schema import PUBLIC, articles, sitemap_pages

PAGE = 5_000  # articles a sitemap page holds: under 10 MB for URLs of up to 2,000 characters once escaped

_CHANGED = sa.func.coalesce(articles.c.updated, articles.c.published)  # updated is only kept when later
_EARLIER = articles.alias("earlier")
_FIRST_WITH_URL = ~sa.exists().where(_EARLIER.c.url == articles.c.url, _EARLIER.c.pk < articles.c.pk,
                                     _EARLIER.c.status == "published")


class Sitemaps:
    def __init__(self, db: Database):
        self.db = db

    def pages(self) -> list[tuple[int, datetime]]:
        """Each page that holds a public article, with the last change to any of them."""
        query = sa.select(sitemap_pages.c.page, sitemap_pages.c.changed).where(sitemap_pages.c.articles > 0).order_by(sitemap_pages.c.page)
        with self.db.read() as conn:
            return [(int(number), changed) for number, changed in conn.execute(query)]

    def page(self, number: int) -> list[tuple[str, datetime]]:
        """(url, last change) of the public articles of page ``number``, in storage order."""
        query = (
            sa.select(articles.c.url, _CHANGED)
            .where(PUBLIC, articles.c.pk > (number - 1) * PAGE, articles.c.pk <= number * PAGE, _FIRST_WITH_URL)
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

    # -- inside a write transaction ---------------------------------------------------

    @staticmethod
    def recount(conn: Connection, joined: dict[int, datetime], left: Iterable[int]) -> None:
        """Keep the pages of the articles that joined the public view (pk: last change) or left it. A page only
        joined is added to (the common case, a new article: one upsert); a page something left is counted again
        (its last change may be earlier now), one range of the primary key."""
        recounted = {(pk - 1) // PAGE + 1 for pk in left}
        added: dict[int, tuple[int, datetime]] = {}
        for pk, changed in joined.items():
            number = (pk - 1) // PAGE + 1
            if number not in recounted:
                count, latest = added.get(number, (0, changed))
                added[number] = (count + 1, max(latest, changed))
        for number, (count, changed) in sorted(added.items()):
            insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(sitemap_pages)
            conn.execute(insert.values(page=number, changed=changed, articles=count).on_conflict_do_update(
                index_elements=["page"],
                set_={"articles": sitemap_pages.c.articles + insert.excluded.articles,
                      "changed": sa.case((insert.excluded.changed > sitemap_pages.c.changed, insert.excluded.changed),
                                         else_=sitemap_pages.c.changed)}))
        for number in sorted(recounted):
            changed, count = conn.execute(
                sa.select(sa.func.max(_CHANGED), sa.func.count())
                .where(PUBLIC, articles.c.pk > (number - 1) * PAGE, articles.c.pk <= number * PAGE)
            ).one()
            conn.execute(sitemap_pages.delete().where(sitemap_pages.c.page == number))
            if count:
                conn.execute(sitemap_pages.insert().values(page=number, changed=changed, articles=count))

    @staticmethod
    def count_all(conn: Connection) -> None:
        """Count every page afresh: migration 0010's, for the articles stored before pages were kept."""
        page = ((articles.c.pk - 1) // PAGE + 1).label("page")
        rows = conn.execute(sa.select(page, sa.func.max(_CHANGED), sa.func.count()).where(PUBLIC).group_by(page)).all()
        conn.execute(sitemap_pages.delete())
        if rows:
            conn.execute(sitemap_pages.insert(), [{"page": int(number), "changed": changed, "articles": count}
                                                  for number, changed, count in rows])
