"""Every table of the store, one section per concern, on one ``metadata``.

One schema serves SQLite (the embedded default, in WAL mode) and PostgreSQL unchanged.
A new concern's tables go in a section of their own here, with an Alembic migration in
``migrations/versions``; its queries go in a module of their own beside this one.

Layout choices that keep "newest N" flat as the store grows: a closure table
``article_categories`` holds one row per article and per ancestor of its category, so a
category feed (descendants included) is one index range scan; sources and the "all" feed
have their own ``(…, published, pk)`` indexes. Reads are summed into hourly buckets, with
minute buckets for the ragged edge of a ranking window.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()


class UTCDateTime(sa.types.TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every database (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# == articles, with their categories and sources (articles.py) =======================
# Only ``published`` articles are public: only they are listed in ``article_categories`` and
# ``article_labels``, indexed for search, counted in ``feed_versions`` and ranked. An article
# becomes public, or stops being public, in one transaction that does all of that at once
# (articles.py), when it is written or when its time comes (``Articles.release``). The two
# conditions are literal SQL, the same in the indexes and the queries: SQLite uses a partial
# index only for a query whose condition holds the index's own, word for word.

PUBLIC = sa.text("articles.status = 'published'")
SCHEDULED = sa.text("articles.status = 'scheduled'")
EXPIRING = sa.text("articles.status = 'published' AND articles.expires IS NOT NULL")
EXPIRED = sa.text("articles.status = 'expired'")

categories = sa.Table(
    "categories",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("categories.id"), nullable=True),
    sa.Column("path", sa.String(1000), nullable=False, unique=True),
    sa.Column("slug_path", sa.String(1000), nullable=False, unique=True),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(500), nullable=False, unique=True),
    sa.Column("slug", sa.String(200), nullable=False, unique=True),
    sa.Column("url", sa.String(2048), nullable=True),
)

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("id", sa.String(200), nullable=False, unique=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("author", sa.String(500), nullable=True),
    sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id"), nullable=True),
    sa.Column("category_id", sa.Integer, sa.ForeignKey("categories.id"), nullable=True),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("image", sa.String(2048), nullable=True),  # its URL; what is known of it beside it
    sa.Column("image_width", sa.Integer, nullable=True),
    sa.Column("image_height", sa.Integer, nullable=True),
    sa.Column("image_caption", sa.Text, nullable=True),
    sa.Column("image_credit", sa.Text, nullable=True),
    sa.Column("published", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=True),
    sa.Column("expires", UTCDateTime, nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="published"),  # model.Status
    sa.Index("ix_articles_published", "published", "pk"),
    sa.Index("ix_articles_source_published", "source_id", "published", "pk"),
    # What falls due next, and what the newsroom is shown as queued, each from an index of the few rows concerned.
    sa.Index("ix_articles_scheduled", "published", sqlite_where=SCHEDULED, postgresql_where=SCHEDULED),
    sa.Index("ix_articles_expiring", "expires", sqlite_where=EXPIRING, postgresql_where=EXPIRING),
    sa.Index("ix_articles_expired", "expires", sqlite_where=EXPIRED, postgresql_where=EXPIRED),
    # The articles that share a URL, which a sitemap lists once (sitemaps.py). A hash index on PostgreSQL: a
    # URL may be longer than a B-tree entry may be there.
    sa.Index("ix_articles_url", "url", postgresql_using="hash"),
)

article_categories = sa.Table(
    "article_categories",
    metadata,
    sa.Column("category_id", sa.Integer, sa.ForeignKey("categories.id"), primary_key=True),
    sa.Column("published", UTCDateTime, primary_key=True),
    sa.Column("article_pk", sa.Integer, sa.ForeignKey("articles.pk", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_article_categories_article", "article_pk"),
)


# == tags and authors (labels.py) ====================================================
# A label is a tag or an author, with its own slug (pinyin, or chosen in config), made on
# first use like categories and sources. ``article_labels`` lists each article under each
# of its labels, keyed like ``article_categories``: a tag's or author's feed is one index
# range scan, newest first.

labels = sa.Table(
    "labels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "tag" or "author"
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("slug", sa.String(200), nullable=False),
    sa.UniqueConstraint("kind", "name", name="uq_labels_kind_name"),
    sa.UniqueConstraint("kind", "slug", name="uq_labels_kind_slug"),
)

article_labels = sa.Table(
    "article_labels",
    metadata,
    sa.Column("label_id", sa.Integer, sa.ForeignKey("labels.id"), primary_key=True),
    sa.Column("published", UTCDateTime, primary_key=True),
    sa.Column("article_pk", sa.Integer, sa.ForeignKey("articles.pk", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_article_labels_article", "article_pk"),
)


# == keyword search (search.py) ======================================================
# The grams of each article's title, summary and text (search.py says why grams): in an
# FTS5 table on SQLite (rowid = article pk), in a tsvector with a GIN index on PostgreSQL.
# Neither is a table SQLAlchemy's metadata describes, so they are made by statements of
# their own, with the rest of the schema.

SEARCH_TABLES = {
    "sqlite": ["CREATE VIRTUAL TABLE article_search USING fts5(grams, content='', detail=none)"],
    "postgresql": [
        "CREATE TABLE article_search (article_pk INTEGER PRIMARY KEY REFERENCES articles (pk) ON DELETE CASCADE, "
        "grams TSVECTOR NOT NULL)",
        "CREATE INDEX ix_article_search_grams ON article_search USING gin (grams)",
    ],
}


def create_search_tables(connection: Any) -> None:
    for statement in SEARCH_TABLES[connection.dialect.name]:
        connection.exec_driver_sql(statement)


sa.event.listen(metadata, "after_create", lambda target, connection, **kw: create_search_tables(connection))


# == feed versions (versions.py) =====================================================
# One row per feed scope ("all", "category:<slug path>", "source:<slug>", "tag:<slug>",
# "author:<slug>", "hot"): bumped
# in the same transaction as any change to what its feeds show, so a rendered feed can
# be cached under its version and never served stale (feeds/serving.py); and how many
# articles the scope holds (a category with its descendants), kept in the same
# transaction, so that numbering archive pages costs one lookup, not a count of them all.

feed_versions = sa.Table(
    "feed_versions",
    metadata,
    sa.Column("scope", sa.String(1100), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("articles", sa.BigInteger, nullable=False, server_default="0"),
)


# == reads and rankings (reads.py, rankings.py) ======================================
# Read counts, summed per article into minute, hour and day buckets. A ranking sums whole
# hours and, at the ragged ends of its window, minutes; the day buckets only bound it from
# above, so that the long tail of rarely read articles need not be summed (rankings.py).
# On SQLite the tables are WITHOUT ROWID: the primary key is the table, counts included.
# ``ix_*_article`` (article, bucket, count) sums one article over a range of buckets from
# the index alone; ``ix_reads_daily_busiest`` (bucket, count, article) lists a day's most
# read articles, or those read at least so often, without reading the rest.

def _reads_table(name: str, *indexes: sa.Index) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("bucket", UTCDateTime, primary_key=True),
        sa.Column("article_pk", sa.Integer, sa.ForeignKey("articles.pk", ondelete="CASCADE"), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        *indexes,
        sqlite_with_rowid=False,
    )


reads_minutely = _reads_table("reads_minutely", sa.Index("ix_reads_minutely_article", "article_pk", "bucket", "count"))
reads_hourly = _reads_table("reads_hourly", sa.Index("ix_reads_hourly_article", "article_pk", "bucket", "count"))
reads_daily = _reads_table(
    "reads_daily",
    sa.Index("ix_reads_daily_article", "article_pk"),
    sa.Index("ix_reads_daily_busiest", "bucket", "count", "article_pk"),
)

# When each hot list's ranking last changed, and a signature of that ranking.
ranking_states = sa.Table(
    "ranking_states",
    metadata,
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("signature", sa.String(64), nullable=False),
    sa.Column("changed", UTCDateTime, nullable=False),
)


# == poll statistics (polls.py) ======================================================
# Who polls each feed, per day in the site's timezone. Nothing here can name a person:
# a poller is a hash of address and User-Agent under a salt that lives for one day in
# memory or Redis only, and a day's hashes are collapsed into a count once it is over.

stats_daily = sa.Table(
    "stats_daily",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("not_modified", sa.BigInteger, nullable=False),
    sa.Column("pollers", sa.BigInteger, nullable=True),  # NULL while the day's hashes are still kept
)

# The distinct non-aggregator pollers of a day that is not over yet: a primary key, so
# each instance's flush adds its hashes and the union is what is stored.
stats_pollers = sa.Table(
    "stats_pollers",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("poller", sa.String(32), primary_key=True),
)

# Subscribers an aggregator reported (Feedly, Inoreader…): the day's largest report per
# service, so repeated polls and several instances never add up.
stats_aggregators = sa.Table(
    "stats_aggregators",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("service", sa.String(100), primary_key=True),
    sa.Column("subscribers", sa.BigInteger, nullable=False),
)

# The day's salt of the poller hashes, shared by every process and instance; deleted with
# the day's hashes once no flush adds to them, so that they cannot be made again.
stats_salts = sa.Table(
    "stats_salts",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("salt", sa.LargeBinary(32), nullable=False),
)

stats_clients = sa.Table(
    "stats_clients",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("client", sa.String(100), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
)


# == the WebSub hub (subscriptions.py) ===============================================
# A subscription request waits in ``websub_intents`` until its callback has confirmed it
# (or it is dropped); then it is a row of ``websub_subscriptions`` until it is cancelled,
# expires or answers 410. What is still to be done for either (a confirmation to ask, a
# delivery owed) is a row of the outbox below. ``key`` is a hash of topic and callback:
# both may be 2,048 characters, too long for a unique index.

websub_intents = sa.Table(
    "websub_intents",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("topic", sa.String(2048), nullable=False),
    sa.Column("callback", sa.String(2048), nullable=False),
    sa.Column("host", sa.String(300), nullable=False),
    sa.Column("feed", sa.String(1000), nullable=False),
    sa.Column("scope", sa.String(1100), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("secret", sa.String(200), nullable=True),
    sa.Column("lease_seconds", sa.Integer, nullable=False),
    sa.Column("requested", UTCDateTime, nullable=False),
)

websub_subscriptions = sa.Table(
    "websub_subscriptions",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("topic", sa.String(2048), nullable=False),
    sa.Column("callback", sa.String(2048), nullable=False),
    sa.Column("host", sa.String(300), nullable=False),
    sa.Column("feed", sa.String(1000), nullable=False),  # the topic's feed path, as poll statistics name it
    sa.Column("scope", sa.String(1100), nullable=False),  # the feed_versions row its content follows
    sa.Column("secret", sa.String(200), nullable=True),
    sa.Column("expires", UTCDateTime, nullable=False),
    sa.Column("delivered_etag", sa.String(80), nullable=True),  # the bytes it has: not sent again
    sa.Column("failing_since", UTCDateTime, nullable=True),  # deliveries to it fail, or were given up, since
    sa.Index("ix_websub_subscriptions_scope", "scope"),
    sa.Index("ix_websub_subscriptions_host", "host"),
)

websub_days = sa.Table(
    "websub_days",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("feed", sa.String(1000), primary_key=True),
    sa.Column("delivered", sa.BigInteger, nullable=False),
    sa.Column("failed", sa.BigInteger, nullable=False),
)


# == the outbox (outbox.py) ==========================================================
# Every push still to be made, one row per channel, target and subject: a confirmation the
# hub is to ask (``verification``: target the intent), a changed feed scope whose subscribers
# are owed it (``topic``), one subscriber owed its topic's new bytes (``delivery``), another
# hub to tell of a changed scope (``ping``: target the hub's URL), a search engine to tell of
# an article URL (``indexnow``, ``baidu``: ``action`` new, update or delete). A row is written
# in the transaction that made it owed, so nothing is pushed before its time and a SIGKILL
# loses nothing; news arriving for a row still queued is merged into it (``version`` moves, so
# a sender that took the row removes it only if nothing was merged in meanwhile).
# ``outbox_channels`` keeps what the newsroom sees of each channel, and a pause it asked for
# (Baidu's daily quota).

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # a hash of channel, target and subject: each may be long
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("queued", UTCDateTime, nullable=False),
    sa.Column("due", UTCDateTime, nullable=False),  # no attempt before: the backoff after a failure, or a pause
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failing_since", UTCDateTime, nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("claim", sa.String(16), nullable=True),  # the claim's token: only its holder releases it
    sa.Index("ix_outbox_channel_due", "channel", "due"),
)

outbox_channels = sa.Table(
    "outbox_channels",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("sent", sa.BigInteger, nullable=False, server_default="0"),  # pushes taken, ever
    sa.Column("failed", sa.BigInteger, nullable=False, server_default="0"),  # pushes given up, ever
    sa.Column("last_sent", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_error_at", UTCDateTime, nullable=True),
    sa.Column("remain", sa.BigInteger, nullable=True),  # what the far end said is left of its quota (Baidu)
)


# == sitemap pages (sitemaps.py) =====================================================
# Each page of the article sitemaps (a fixed range of storage order), with the last change to
# its public articles and how many there are: kept by the transaction that changes the public
# view (articles.py), so the sitemap index reads a row a page, not every article.

sitemap_pages = sa.Table(
    "sitemap_pages",
    metadata,
    sa.Column("page", sa.Integer, primary_key=True),
    sa.Column("changed", UTCDateTime, nullable=False),
    sa.Column("articles", sa.Integer, nullable=False),
)
