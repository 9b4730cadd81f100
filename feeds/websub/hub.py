"""The service's own WebSub hub (W3C WebSub Recommendation, 2018): ``POST /hub``.

A subscriber sends ``hub.mode`` (subscribe or unsubscribe), ``hub.topic`` (any feed URL of
this site, in any format, with any ``?limit=``), ``hub.callback``, and optionally
``hub.lease_seconds`` and ``hub.secret``. A good request is kept and answered ``202``; its
callback is then asked to confirm it, from the outbox (``delivery.py``). A bad one is
answered ``400`` naming what is wrong, a topic that is not this site's ``404`` (no callback
is ever called for it), and one past the subscription limits ``429``.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, request

from feeds.addresses import parse_topic
from feeds.config import Settings
from feeds.model import Intent
from feeds.serving import scope_of
from feeds.store.subscriptions import LimitReached
from feeds.outbound import Refused, check_url, networks

bp = Blueprint("hub", __name__)

MAX_REQUEST_BYTES = 16 * 1024
MAX_URL_CHARS = 2048
MAX_SECRET_BYTES = 200


def subscription_key(topic: str, callback: str) -> str:
    return hashlib.sha256(f"{topic}\n{callback}".encode()).hexdigest()


@bp.post("/hub")
def hub() -> tuple[Response, int] | Response:
    services = current_app.extensions["feeds"]  # feeds.services.services(), which this package lies below
    settings = services.settings
    if not settings.websub.hub:
        return _answer(404, "This service runs no WebSub hub (websub.hub is off).")
    request.max_content_length = MAX_REQUEST_BYTES  # a chunked body too is read no further
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return _answer(413, f"A subscription request is at most {MAX_REQUEST_BYTES} bytes.")
    if request.mimetype not in ("", "application/x-www-form-urlencoded"):
        return _answer(415, "Send the request as a form: Content-Type: application/x-www-form-urlencoded.")
    form = request.form
    mode = form.get("hub.mode", "")
    if mode not in ("subscribe", "unsubscribe"):
        if not mode:
            return _answer(400, "hub.mode is missing: subscribe or unsubscribe.")
        if mode == "publish":
            return _answer(400, "This hub learns of its own feeds' changes by itself; hub.mode=publish is not needed.")
        return _answer(400, f"hub.mode must be subscribe or unsubscribe, got {mode[:50]!r}.")
    topic_url, callback = form.get("hub.topic", ""), form.get("hub.callback", "")
    for name, value in (("hub.topic", topic_url), ("hub.callback", callback)):
        if not value:
            return _answer(400, f"{name} is missing.")
        if len(value) > MAX_URL_CHARS:
            return _answer(400, f"{name} is longer than {MAX_URL_CHARS} characters.")
    topic = parse_topic(topic_url, settings)
    if topic is None or services.catalog.resolve(topic.path) is None:
        return _answer(404, f"hub.topic must be a feed URL of this site, such as {settings.base_url}"
                            f"/feeds/all.rss; {topic_url[:200]!r} is not one.")
    try:
        check_url(callback, networks(settings.websub.allow_callbacks))
    except Refused as exc:
        return _answer(400, f"hub.callback: {exc}.")
    if urlsplit(callback).fragment:
        return _answer(400, "hub.callback must not have a fragment (#…).")
    secret = form.get("hub.secret") or None
    if secret is not None and len(secret.encode()) > MAX_SECRET_BYTES:
        return _answer(400, f"hub.secret is longer than {MAX_SECRET_BYTES} bytes.")
    lease = _lease(form.get("hub.lease_seconds"), settings)
    if lease is None:
        return _answer(400, "hub.lease_seconds must be a whole number of seconds.")
    intent = Intent(subscription_key(topic.url, callback), topic.url, callback, urlsplit(callback).hostname or "",
                    topic.feed, scope_of(topic.path), mode, secret, lease)
    try:
        services.store.subscriptions.request(intent, datetime.now(timezone.utc), settings.websub.max_subscriptions,
                                             settings.websub.max_per_host)
    except LimitReached as exc:
        return _answer(429, f"Not taken: {exc}.")
    services.sender.wake()
    return _answer(202, f"Accepted: {callback} will be asked to confirm the {mode} to {topic.url}.")


def _lease(given: str | None, settings: Settings) -> int | None:
    """The lease granted: the one asked for within the configured bounds, else the default."""
    websub = settings.websub
    if given is None or given == "":
        return websub.lease_seconds
    if not (given.isascii() and given.isdigit()):
        return None
    return min(max(int(given), websub.min_lease_seconds), websub.max_lease_seconds)


def _answer(status: int, message: str) -> tuple[Response, int]:
    return Response(message + "\n", mimetype="text/plain"), status
