"""What every answer over HTTP shares: conditional GET (validators, 304), content negotiation,
CORS for the public documents, and the framing policy of the HTML pages. Used by the feeds,
the pages, the boxes and the admin pages alike; knows nothing of what a feed holds.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from flask import Response, request
from werkzeug.http import http_date, parse_accept_header, parse_date, parse_etags

from feeds.cache import Rendered
from feeds.config import Settings
from feeds.serving import ENCODINGS


# Feeds and the OPML may be read by scripts on other sites (CORS), credentials never: they are
# public documents, and a script polling politely needs to see the validators and the hub.
CORS_EXPOSED = "ETag, Last-Modified, Link"
CORS_PREFLIGHT = [("Access-Control-Allow-Methods", "GET, HEAD"),
                  ("Access-Control-Allow-Headers", "If-None-Match, If-Modified-Since"), ("Access-Control-Max-Age", "86400")]


_CORS_ANYONE = (("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", CORS_EXPOSED))


def cors_headers(environ: dict[str, str], site: Settings) -> Sequence[tuple[str, str]]:
    """Who may read a feed or the OPML from another origin: anyone (``*``), or the configured origins."""
    allowed = site.cors.allow_origins
    if "*" in allowed:
        return _CORS_ANYONE
    origin = environ.get("HTTP_ORIGIN")
    if origin in allowed:
        return [("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", CORS_EXPOSED), ("Vary", "Origin")]
    return [("Vary", "Origin")] if allowed else []


def refuse_framing(response: Response) -> Response:
    """For the blueprints that make HTML pages: none may be framed by another site (clickjacking)."""
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def answer(rendered: Rendered, content_type: str, max_age: int, headers: list[tuple[str, str]] | None = None,
           shared: bool = True) -> Response:
    """A 200 with validators, or a 304 when the client already has these bytes; ``headers`` are added to either.
    Not ``shared``: only the client may keep it (``Cache-Control: private``), not a proxy or CDN on the way."""
    headers = [*(headers or ()), ("ETag", f'"{rendered.etag}"'), ("Cache-Control", f"{'public' if shared else 'private'}, max-age={max_age}")]
    if rendered.last_modified is not None:
        headers.append(("Last-Modified", http_date_of(rendered.last_modified)))
    if client_has(rendered.etag, rendered.last_modified, request.environ):
        return Response(status=304, headers=headers)
    return Response(rendered.body, headers=headers, content_type=content_type)


def client_has(etag: str, last_modified: float | None, environ: dict[str, str]) -> bool:
    """Whether the client's validators say it has the bytes of this ``etag`` and ``last_modified`` already.

    When a client sends both validators, If-None-Match decides (RFC 9110 §13.2.2). Most
    pollers send back exactly the ETag they were given, which needs no parsing.
    """
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match:
        return if_none_match == f'"{etag}"' or parse_etags(if_none_match).contains_weak(etag)
    since = parse_date(environ.get("HTTP_IF_MODIFIED_SINCE"))
    return since is not None and last_modified is not None and int(last_modified) <= since.timestamp()


@lru_cache(maxsize=64)  # polls repeat a handful of Accept-Encoding values all day
def negotiated_encoding(accept_encoding: str) -> str:
    """The best of ``ENCODINGS`` the client accepts, else identity."""
    return parse_accept_header(accept_encoding).best_match(ENCODINGS) or "identity"


@lru_cache(maxsize=1024)  # each feed version has one time; polls ask for it over and over
def http_date_of(stamp: float) -> str:
    return http_date(stamp)
