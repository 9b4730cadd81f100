"""What every request needs, built once per app (``Services``), and how a request reaches it.

The store, catalog, rendered-feed cache, WebSub publisher and hub, poll counter, schedule and pusher of one
site are opened together by ``open_services``; a Flask app keeps them in
``app.extensions["feeds"]``, and the blueprints reach them through ``services()``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app

from feeds.addresses import feed_address
from feeds.cache import ChangeNews, is_redis, open_cache
from feeds.catalog import Catalog
from feeds.config import Settings
from feeds.polls import PollCounter
from feeds.reach import Pusher
from feeds.schedule import Schedule
from feeds.serving import RenderedFeeds, feed_paths
from feeds.store import Store
from feeds.websub.delivery import Distributor
from feeds.websub.publisher import Publisher
from feeds.writers import FORMATS


@dataclass(frozen=True)
class Services:
    """What every request needs, built once per app: ``app.extensions["feeds"]``."""

    settings: Settings
    store: Store
    catalog: Catalog
    feeds: RenderedFeeds
    publisher: Publisher
    hub: Distributor
    stats: PollCounter
    schedule: Schedule
    pusher: Pusher


def open_services(settings: Settings) -> Services:
    """The store (migrated), catalog, rendered-feed cache, WebSub publisher and hub, poll counter, schedule and pusher
    of one site."""
    publisher = Publisher(settings.websub.hubs)
    news = ChangeNews(settings.cache.url, settings.cache.retry_after) if is_redis(settings.cache.url) else None
    changed, pushed = threading.Event(), threading.Event()  # wake this process's hub, and its pusher
    store = Store(settings.database.url, settings.slugs.categories, settings.slugs.sources,
                  {"tag": settings.slugs.tags, "author": settings.slugs.authors},
                  on_change=_announcer(settings, publisher, news, (changed, pushed)), recheck_seconds=settings.cache.recheck_seconds,
                  push_engines=settings.push_engines)
    store.migrate()
    catalog = Catalog(store, settings)
    feeds = RenderedFeeds(store, catalog, open_cache(settings.cache.url, settings.cache.retry_after), settings, news)
    hub = Distributor(store, feeds, settings, changed)
    return Services(settings, store, catalog, feeds, publisher, hub, PollCounter(store, settings), Schedule(store),
                    Pusher(store, settings, pushed))


def _announcer(settings: Settings, publisher: Publisher, news: ChangeNews | None,
               wake: tuple[threading.Event, ...]) -> Callable[[set[str]], None]:
    """Tell the other processes which scopes a committed change touched, wake this process's
    hub and pusher, and ping the other hubs for every feed URL it touched. Reads arrive all the time;
    the hot lists are announced to other hubs at most once per ``cache.hot_ttl``."""
    last_hot = [0.0]

    def announce(scopes: set[str]) -> None:
        if news is not None:
            news.publish(scopes)
        for event in wake:
            event.set()
        if not settings.websub.hubs:
            return
        if "hot" in scopes:
            if time.monotonic() - last_hot[0] < settings.cache.hot_ttl:
                scopes = scopes - {"hot"}
            else:
                last_hot[0] = time.monotonic()
        paths = feed_paths(scopes, settings.hot.windows)
        publisher.publish(f"{feed_address(settings, path)}.{extension}" for path in paths for extension in FORMATS)

    return announce


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions["feeds"]


def settings() -> Settings:
    return services().settings


def catalog() -> Catalog:
    return services().catalog
