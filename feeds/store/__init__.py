"""The store: every table and every query, in SQLAlchemy Core. The only package that speaks SQL.

One ``Store`` opens the database and hangs one object per concern off it, each with a
narrow face and a module of its own:

- ``store.articles`` (``articles.py``): upserts and deletes, the release of articles whose
  time has come (only published articles are public), the newest of a feed, archive pages,
  the queue of scheduled and expired articles, categories and sources;
- ``store.labels`` (``labels.py``): tags and authors, each listing its articles, kept by
  the article upserts;
- ``store.search`` (``search.py``): keyword search through an index of each article's
  characters and pairs of characters, kept by the article upserts;
- ``store.versions`` (``versions.py``): each feed scope's version and article count, moved
  in every write's transaction, and the trust a process puts in a version it read;
- ``store.reads`` (``reads.py``) and ``store.rankings`` (``rankings.py``): read events in
  minute, hour and day buckets, and the hot lists ranked from them;
- ``store.polls`` (``polls.py``): who polls which feed, per day;
- ``store.subscriptions`` (``subscriptions.py``): the WebSub hub's subscriptions and what
  each is owed;
- ``store.sitemaps`` (``sitemaps.py``): every public article's URL in pages, and the newest for
  a news sitemap;
- ``store.outbox`` (``outbox.py``): every push still to be made (the hub's confirmations and
  deliveries, pings of other hubs, search engines told of article URLs), queued by the writes
  that owe them.

``schema.py`` holds every table, ``database.py`` the engine, transactions and migrations
(Alembic, in ``migrations/``), ``rows.py`` the reading of an article's row as an ``Article``. Reads come back as domain objects from ``feeds.model``.
A new concern (a table or two and their queries) is a section in ``schema.py``, a migration
and a module here, hung off ``Store``.
"""
from __future__ import annotations

from collections.abc import Callable

from feeds.store.articles import Articles, Outcome
from feeds.store.database import Database
from feeds.store.labels import Labels
from feeds.store.outbox import Destinations, Outbox
from feeds.store.search import Search
from feeds.store.sitemaps import Sitemaps
from feeds.store.polls import PollStats
from feeds.store.rankings import Rankings
from feeds.store.reads import Reads
from feeds.store.subscriptions import Subscriptions
from feeds.store.versions import FeedVersions

__all__ = ["Store", "Outcome"]


class Store:
    """Articles, categories, sources, reads, feed versions and poll statistics in one SQL database."""

    def __init__(
        self,
        url: str,
        category_slugs: dict[str, str] | None = None,
        source_slugs: dict[str, str] | None = None,
        label_slugs: dict[str, dict[str, str]] | None = None,
        on_change: Callable[[set[str]], None] | None = None,
        recheck_seconds: float = 0,
        destinations: Destinations = Destinations(),
    ):
        """``on_change`` is called after each committed write with the feed scopes it changed.
        A feed version read is trusted for ``recheck_seconds`` (see ``FeedVersions.current``).
        ``destinations`` are where pushes are queued for (``store.outbox``)."""
        self.db = Database(url)
        self.versions = FeedVersions(self.db, recheck_seconds)
        self.labels = Labels(self.db, label_slugs)
        self.search = Search(self.db)
        self.outbox = Outbox(self.db, destinations)
        self.articles = Articles(self.db, self.versions, self.labels, self.search, self.outbox, category_slugs, source_slugs)
        self.reads = Reads(self.db)
        self.rankings = Rankings(self.db)
        self.polls = PollStats(self.db)
        self.subscriptions = Subscriptions(self.db, self.outbox)
        self.sitemaps = Sitemaps(self.db)
        self.closed = False
        if on_change is not None:
            self.db.after_commit.append(on_change)

    @property
    def url(self) -> str:
        return self.db.url

    def migrate(self) -> None:
        self.db.migrate()

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        self.db.ping()

    def time_queries(self, observe: Callable[[float], None]) -> None:
        """Call ``observe`` with the seconds each SQL statement took."""
        self.db.time_queries(observe)

    def close(self) -> None:
        self.closed = True
        self.versions.close()
        self.db.close()
