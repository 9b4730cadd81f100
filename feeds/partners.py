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
are counted apart, as ``partner/<name>/<feed path>``. It is a WebSub topic of the service's own hub like
any feed (``addresses.parse_topic``), so a partner that takes pushes gets every change at once.

``readiness`` checks a partner's feeds against the published rules of its ``profile`` (``profiles.py``):
``feeds partners check`` and ``/admin/partners`` show what it finds.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, Response, abort, request

from feeds.addresses import partner_address, partner_limit, partner_of
from feeds.metrics import PARTNER_POLLS
from feeds.profiles import Problem, check
from feeds.responses import answer, negotiated_encoding
from feeds.services import services
from feeds.web import directory, no_feed, requested_path, requested_variant
from feeds.writers import FORMATS, render

bp = Blueprint("partners", __name__)


@bp.get("/partner/<key>/<path:feed_path>", provide_automatic_options=False)
def keyed_feed(key: str, feed_path: str) -> Response:
    path, dot, extension = feed_path.rpartition(".")
    if not dot or extension not in FORMATS:
        abort(404, description=f"No feed here. Feeds end in {', '.join('.' + e for e in FORMATS)}.")
    svc = services()
    held = partner_of(key, svc.settings)
    path = requested_path(path)
    if held is None or (held[1].feeds and path not in held[1].feeds):
        no_feed(path)  # as for a feed that does not exist: a stranger learns nothing of keys or feeds
    name, partner = held
    try:
        limit = partner_limit(request.environ.get("QUERY_STRING", ""), partner)
    except ValueError as exc:
        abort(400, description=str(exc))
    variant = requested_variant()
    address, query = partner_address(svc.settings, key, path, variant)
    encoding = negotiated_encoding(request.environ.get("HTTP_ACCEPT_ENCODING", ""))
    rendered = svc.feeds.partner(name, partner, key, path, extension, limit, encoding, variant=variant)
    if rendered is None:
        no_feed(path)
    links = [f'<{hub}>; rel="hub"' for hub in svc.catalog.hubs] + [f'<{address}.{extension}{query}>; rel="self"']
    headers = [("Vary", "Accept-Encoding"), ("X-Robots-Tag", "noindex"), ("Link", ", ".join(links))]
    if encoding != "identity":
        headers.append(("Content-Encoding", encoding))
    response = answer(rendered, FORMATS[extension].content_type, svc.settings.feeds.max_age, headers, shared=False)
    svc.stats.record(f"partner/{name}/{path}", request.remote_addr or "", request.user_agent.string, response.status_code)
    PARTNER_POLLS.labels(name, str(response.status_code)).inc()
    return response


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
            feed = svc.catalog.partner_feed(partner, partner.keys[0], path, partner.limit)
            if feed is not None:
                problems += check(partner.profile, feed, render(feed, "rss"), now, svc.settings.site.guid_prefix)
    return found
