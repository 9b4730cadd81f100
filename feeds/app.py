"""The WSGI app: ``create_app`` opens the services, registers the blueprints and error handlers,
and puts the polling fast path (and, behind proxies, ProxyFix) in front of Flask."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from feeds import api, embed, pages, partners, sitemaps, stats, web
from feeds.config import Settings, load_settings
from feeds.errors import StoreUnavailable
from feeds.metrics import QUERY_SECONDS, configure_logging, register_request_log
from feeds.metrics import endpoint as metrics_endpoint
from feeds.services import open_services
from feeds.websub import hub

log = logging.getLogger("feeds")


def create_app(config: Settings | Mapping[str, Any] | None = None, background: bool = False) -> Flask:
    """The WSGI app. ``config`` is a ``Settings``, or overrides nested like config.toml. With ``background``,
    this process also does the work beside the requests: publishing scheduled articles on time, expiring
    others, and sending the outbox (the WebSub hub's verifications and deliveries, pings of other hubs, pushes to
    search engines). A serving process does, where the app is
    made in each worker (as ``feeds serve`` does; gunicorn without ``--preload``)."""
    settings = config if isinstance(config, Settings) else load_settings(overrides=config)
    app = Flask(__name__)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    # One byte over the limit: werkzeug stops a body without Content-Length (chunked) at this many bytes without
    # a word, so the API can tell a body over the limit only when it reads a byte more than it allows.
    app.config["MAX_CONTENT_LENGTH"] = settings.api.max_body_bytes + 1
    app.extensions["feeds"] = open_services(settings)

    app.register_blueprint(web.bp)
    app.register_blueprint(hub.bp)
    app.register_blueprint(pages.bp)  # its /feeds/<path>.html outranks web's /feeds/<path> (tests/test_pages.py)
    app.register_blueprint(embed.bp)  # frameable by other sites: no refuse_framing
    app.register_blueprint(api.bp)
    app.register_blueprint(stats.bp)
    app.register_blueprint(sitemaps.bp)
    app.register_blueprint(partners.bp)
    app.jinja_env.globals["feed_url"] = web.feed_url
    services = app.extensions["feeds"]
    app.add_url_rule("/metrics", "metrics", metrics_endpoint(services.store, settings.metrics.allow))
    services.store.time_queries(QUERY_SECONDS.observe)
    if background:
        services.schedule.start()
        services.sender.start()
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
