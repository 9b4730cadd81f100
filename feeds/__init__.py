"""A feed publisher: a news site's stored articles as RSS 2.0, Atom 1.0 and JSON Feed 1.1 feeds."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from feeds.cache import ChangeNews, is_redis, open_cache
from feeds.catalog import Catalog, feed_address
from feeds.config import Settings, load_settings
from feeds.errors import StoreUnavailable
from feeds.metrics import QUERY_SECONDS, configure_logging, register_request_log
from feeds.metrics import endpoint as metrics_endpoint
from feeds.serving import RenderedFeeds, feed_paths
from feeds.store import Store
from feeds.websub.publisher import Publisher
from feeds.writers import FORMATS

if TYPE_CHECKING:
    from feeds.stats import PollCounter
    from feeds.websub.delivery import Distributor

__all__ = ["create_app", "Services", "Settings", "load_settings"]
__version__ = "0.1.0"

log = logging.getLogger("feeds")


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


def open_services(settings: Settings) -> Services:
    """The store (migrated), catalog, rendered-feed cache, WebSub publisher and hub, and poll counter of one site."""
    from feeds.stats import PollCounter  # not at the top: feeds.stats needs feeds.api, which needs this module
    from feeds.websub.delivery import Distributor  # likewise: it needs feeds.web

    publisher = Publisher(settings.websub.hubs)
    news = ChangeNews(settings.cache.url, settings.cache.retry_after) if is_redis(settings.cache.url) else None
    changed = threading.Event()
    store = Store(settings.database.url, settings.slugs.categories, settings.slugs.sources,
                  {"tag": settings.slugs.tags, "author": settings.slugs.authors},
                  on_change=_announcer(settings, publisher, news, changed), recheck_seconds=settings.cache.recheck_seconds)
    store.migrate()
    catalog = Catalog(store, settings)
    feeds = RenderedFeeds(store, catalog, open_cache(settings.cache.url, settings.cache.retry_after), settings, news)
    hub = Distributor(store, feeds, settings, changed)
    return Services(settings, store, catalog, feeds, publisher, hub, PollCounter(store, settings))


def _announcer(settings: Settings, publisher: Publisher, news: ChangeNews | None,
               changed: threading.Event) -> Callable[[set[str]], None]:
    """Tell the other processes which scopes a committed change touched, wake this process's
    hub, and ping the other hubs for every feed URL it touched. Reads arrive all the time;
    the hot lists are announced to other hubs at most once per ``cache.hot_ttl``."""
    last_hot = [0.0]

    def announce(scopes: set[str]) -> None:
        if news is not None:
            news.publish(scopes)
        changed.set()
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


def create_app(config: Settings | Mapping[str, Any] | None = None, deliver: bool = False) -> Flask:
    """The WSGI app. ``config`` is a ``Settings``, or overrides nested like config.toml. With ``deliver``, this
    process also runs the WebSub hub's verifications and deliveries beside the requests: a serving process
    does, where the app is made in each worker (as ``feeds serve`` does; gunicorn without
    ``--preload``)."""
    settings = config if isinstance(config, Settings) else load_settings(overrides=config)
    app = Flask(__name__)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = settings.api.max_body_bytes
    app.extensions["feeds"] = open_services(settings)

    from feeds import api, embed, pages, stats, web
    from feeds.websub import hub

    app.register_blueprint(web.bp)
    app.register_blueprint(hub.bp)
    app.register_blueprint(pages.bp)  # its /feeds/<path>.html outranks web's /feeds/<path> (tests/test_pages.py)
    app.register_blueprint(embed.bp)  # frameable by other sites: no refuse_framing
    app.register_blueprint(api.bp)
    app.register_blueprint(stats.bp)
    app.jinja_env.globals["feed_url"] = web.feed_url
    services = app.extensions["feeds"]
    app.add_url_rule("/metrics", "metrics", metrics_endpoint(services.store, settings.metrics.allow))
    services.store.time_queries(QUERY_SECONDS.observe)
    if deliver:
        services.hub.start()
    _register_errors(app)
    register_request_log(app)
    app.wsgi_app = web.FastPolls(app.wsgi_app, services)  # type: ignore[method-assign]
    if settings.server.proxies:  # outermost: the fast path, too, counts the reader's address, not the proxy's
        hops = settings.server.proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    configure_logging()
    return app


def _register_errors(app: Flask) -> None:
    def answer(status: int, message: str) -> Response:
        if request.path.startswith("/api/"):
            response = jsonify(error=message)
        else:
            response = Response(message + "\n", mimetype="text/plain")
        response.status_code = status
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = answer(exc.code or 500, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response

    @app.errorhandler(StoreUnavailable)
    def store_down(exc: StoreUnavailable) -> Response:
        log.error("database unavailable: %s", exc)
        response = answer(503, "The database is unavailable; try again shortly.")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return answer(500, "Internal error; it has been logged.")
