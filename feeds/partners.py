"""Partner feeds: a distribution partner (MSN, Flipboard, SmartNews…) reads feeds the public does not
get, behind a key of its own: ``/partner/<key>/<feed path>.<rss|atom|json>``.

Each partner is a table of config (``[partners.<name>]``): its keys (two while one is being
replaced), the feeds it may read (empty: every feed), how many items they hold, and whether items
carry their full text. A key nobody has, or a feed its partner may not read, is the same 404 as a
feed that does not exist, and keys are compared in constant time. A partner feed is the public
feed's content, scheduled and expired articles left out as everywhere, with its own URL as self
link; it is cached per content version like a feed, carries ETags and answers 304, but only the
partner may keep it (``Cache-Control: private``) and search engines must not list it
(``X-Robots-Tag: noindex``). It is never linked from the index, the OPML or the sitemaps. Its polls
are counted apart, as ``partner/<name>/<feed path>``. It is not a WebSub topic yet: it names no hub.

``readiness`` checks a partner's feeds against the published rules of its ``profile`` (``profiles.py``):
``feeds partners check`` and ``/admin/partners`` show what it finds.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import datetime, timezone

from flask import Blueprint, Response, abort, request

from feeds.addresses import public_path
from feeds.config import PartnerSettings
from feeds.model import Feed
from feeds.profiles import Problem, check
from feeds.responses import answer, negotiated_encoding
from feeds.serving import scope_of
from feeds.services import services
from feeds.web import directory, no_feed, requested_path, requested_variant
from feeds.writers import FORMATS, render

bp = Blueprint("partners", __name__)


def partner_of(key: str) -> tuple[str, PartnerSettings] | None:
    """The partner holding ``key``, every key compared in constant time."""
    found = None
    for name, partner in services().settings.partners.items():
        for known in partner.keys:
            if hmac.compare_digest(key.encode(), known.encode()):
                found = (name, partner)
    return found


@bp.get("/partner/<key>/<path:feed_path>", provide_automatic_options=False)
def keyed_feed(key: str, feed_path: str) -> Response:
    path, dot, extension = feed_path.rpartition(".")
    if not dot or extension not in FORMATS:
        abort(404, description=f"No feed here. Feeds end in {', '.join('.' + e for e in FORMATS)}.")
    held = partner_of(key)
    path = requested_path(path)
    if held is None or (held[1].feeds and path not in held[1].feeds):
        no_feed(path)  # as for a feed that does not exist: a stranger learns nothing of keys or feeds
    name, partner = held
    limit = _limit(partner)
    variant = requested_variant()
    svc = services()
    published_path, query = public_path(path, variant)
    address = f"{svc.settings.base_url}/partner/{key}/{published_path}"  # the feed's self link, as partner_feed makes it

    def make() -> tuple[bytes, float] | None:
        feed = partner_feed(partner, key, path, limit, variant)
        return None if feed is None else (render(feed, extension), feed.updated.timestamp())

    encoding = negotiated_encoding(request.environ.get("HTTP_ACCEPT_ENCODING", ""))
    keyed = hashlib.sha256(key.encode()).hexdigest()[:16]  # the key is in the bytes (the self link), never in a cache's key names
    rendered = svc.feeds.made(f"partner/{name}/{keyed}/{path}.{extension}?{limit}~{variant or ''}", scope_of(path), make, encoding)
    if rendered is None:
        no_feed(path)
    headers = [("Vary", "Accept-Encoding"), ("X-Robots-Tag", "noindex"), ("Link", f'<{address}.{extension}{query}>; rel="self"')]
    if encoding != "identity":
        headers.append(("Content-Encoding", encoding))
    response = answer(rendered, FORMATS[extension].content_type, svc.settings.feeds.max_age, headers, shared=False)
    svc.stats.record(f"partner/{name}/{path}", request.remote_addr or "", request.user_agent.string, response.status_code)
    return response


def partner_feed(partner: PartnerSettings, key: str, path: str, limit: int, variant: str | None = None) -> Feed | None:
    """The feed at ``path`` as ``partner`` gets it through ``key``: its own self link, text or not, ``limit`` items."""
    svc = services()
    spec = svc.catalog.resolve(path)
    if spec is None:
        return None
    feed = svc.catalog.build(spec, limit, variant=variant)
    items = feed.items if partner.content == "full" else tuple(replace(item, content_html="") for item in feed.items)
    published_path, query = public_path(path, variant)
    # Not a WebSub topic yet: the hub is not named, so no reader subscribes to what the hub would refuse.
    return replace(feed, address=f"{svc.settings.base_url}/partner/{key}/{published_path}", query=query, items=items, hubs=())


def readiness(only: str | None = None, now: datetime | None = None) -> dict[str, list[Problem]]:
    """For each partner with a profile (or only the one named): every rule of its profile that one of the feeds it
    may read, or an article among their newest ``limit``, breaks. Within an app context."""
    svc = services()
    now = now or datetime.now(timezone.utc)
    found: dict[str, list[Problem]] = {}
    for name, partner in svc.settings.partners.items():
        if not partner.profile or (only is not None and name != only):
            continue
        paths = partner.feeds or [spec.path for spec in directory().all_specs()]
        problems = found.setdefault(name, [])
        for path in paths:
            feed = partner_feed(partner, partner.keys[0], path, partner.limit)
            if feed is not None:
                problems += check(partner.profile, feed, render(feed, "rss"), now, svc.settings.site.guid_prefix)
    return found


def _limit(partner: PartnerSettings) -> int:
    """``?limit=`` up to the partner's own limit, which is also the default."""
    raw = request.args.get("limit")
    if raw is None:
        return partner.limit
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= partner.limit:
        abort(400, description=f"limit: expected a whole number from 1 to {partner.limit}, got {raw[:20]!r}.")
    return int(raw)
