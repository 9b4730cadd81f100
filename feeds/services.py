"""What every request needs, built once per app (``Services``), and how a request reaches it.

The store, catalog, rendered-feed cache, poll counter, schedule and the outbox's sender (the WebSub hub's
work, pings of other hubs, pushes to search engines) of one site are opened together by ``open_services``; a Flask app keeps them in
``app.extensions["feeds"]``, and the blueprints reach them through ``services()``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app

from feeds.cache import ChangeNews, is_redis, open_cache
from feeds.catalog import Catalog
from feeds.config import Settings
from feeds.outbox import Sender
from feeds.polls import PollCounter
from feeds.reach import engines
from feeds.schedule import Schedule
from feeds.serving import RenderedFeeds
from feeds.store import Store
from feeds.store.outbox import Destinations
from feeds.websub.delivery import hub_channels
from feeds.websub.publisher import Pings


@dataclass(frozen=True)
class Services:
    """What every request needs, built once per app: ``app.extensions["feeds"]``."""

    settings: Settings
    store: Store
    catalog: Catalog
    feeds: RenderedFeeds
    stats: PollCounter
    schedule: Schedule
    sender: Sender


def open_services(settings: Settings) -> Services:
    """The store (migrated), catalog, rendered-feed cache, poll counter, schedule and sender of one site."""
    news = ChangeNews(settings.cache.url, settings.cache.retry_after) if is_redis(settings.cache.url) else None
    destinations = Destinations(settings.push_engines, tuple(settings.websub.hubs), settings.websub.hub, settings.cache.hot_ttl)
    wake: list[Callable[[], None]] = []
    store = Store(settings.database.url, settings.slugs.categories, settings.slugs.sources,
                  {"tag": settings.slugs.tags, "author": settings.slugs.authors},
                  on_change=_announcer(news, wake), recheck_seconds=settings.cache.recheck_seconds, destinations=destinations)
    store.migrate()
    store.outbox.prune()
    catalog = Catalog(store, settings)
    feeds = RenderedFeeds(store, catalog, open_cache(settings.cache.url, settings.cache.retry_after), settings, news)
    channels = [*hub_channels(store, feeds, settings), *[Pings(settings)] * bool(settings.websub.hubs), *engines(settings, store)]
    sender = Sender(store, channels)
    wake.append(sender.wake)
    return Services(settings, store, catalog, feeds, PollCounter(store, settings), Schedule(store), sender)


def _announcer(news: ChangeNews | None, wake: list[Callable[[], None]]) -> Callable[[set[str]], None]:
    """Tell the other processes which scopes a committed change touched, and wake this process's sender: the
    change queued what it owes in the outbox."""

    def announce(scopes: set[str]) -> None:
        if news is not None:
            news.publish(scopes)
        for call in wake:
            call()

    return announce


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions["feeds"]


def settings() -> Settings:
    return services().settings


def catalog() -> Catalog:
    return services().catalog
