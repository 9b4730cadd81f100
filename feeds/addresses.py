"""Where feeds live: a feed's URL made from its path, and a feed's path, item count and variant read
back from a URL. One module both ways, so that what the service writes into a feed (its self and
hub links, the OPML) is what the fast path, Flask's view and the hub read back.

A feed's path is its URL below ``/feeds/`` without the format: ``category/redian/guonei``,
``search/工会 职工`` for the keyword feed published at ``/feeds/search.rss?q=工会+职工``.
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit

from feeds.config import PartnerSettings, Settings
from feeds.text import VARIANTS
from feeds.writers import FORMATS

MAX_QUERY_CHARS = 100
MAX_TERMS = 10


def feed_address(settings: Settings, path: str) -> str:
    """The canonical URL of the feed at ``path``, without extension: the base URL + ``/feeds/<path>``."""
    return f"{settings.base_url}/feeds/{path}"


def feed_url(settings: Settings, path: str, extension: str, variant: str | None = None) -> str:
    """The URL of the feed at ``path`` (a keyword feed's terms included) in one format and variant."""
    published_path, query = public_path(path, variant)
    return f"{feed_address(settings, published_path)}.{extension}{query}"


def public_path(path: str, variant: str | None = None) -> tuple[str, str]:
    """Where the feed at ``path`` is published below ``/feeds/`` and its query string ("" or "?…"):
    a keyword feed ``search/工会 职工`` is ``search`` with ``?q=工会+职工``."""
    query = {}
    if path.startswith("search/"):
        path, query["q"] = "search", path.removeprefix("search/")
    if variant:
        query["variant"] = variant
    return path, "?" + urlencode(query) if query else ""


def search_terms(raw: str) -> tuple[str, ...]:
    """The terms of a keyword query: split at whitespace, lower-cased, characters that cannot be
    in a text dropped; ValueError saying what is wrong. The query is text, never syntax."""
    if len(raw) > MAX_QUERY_CHARS:
        raise ValueError(f"q is at most {MAX_QUERY_CHARS} characters, got {len(raw)}.")
    terms = tuple(dict.fromkeys(term for term in ("".join(c for c in word if c.isprintable()).lower()
                                                  for word in raw.split()) if term))
    if not terms:
        raise ValueError("q is empty: give one or more words to search for, separated by spaces.")
    if len(terms) > MAX_TERMS:
        raise ValueError(f"q has at most {MAX_TERMS} words, got {len(terms)}.")
    return terms


def hub_address(settings: Settings) -> str:
    """The URL of the service's own WebSub hub."""
    return f"{settings.base_url}/hub"


def feed_path_of(path: str, query_string: str) -> str | None:
    """The catalog's path of the feed at ``/feeds/<path>.<ext>?<query_string>``, None for a path that is
    no feed's; ValueError for a bad ``q``."""
    if path.startswith("search/"):  # keyword feeds have one URL, with ?q=
        return None
    if path != "search":
        return path
    raw = query_value(query_string, "q")
    if raw is None:
        raise ValueError("q is missing: /feeds/search.rss?q=工会 gives the newest articles with 工会 in them.")
    return "search/" + " ".join(search_terms(raw))


def variant_of(query_string: str) -> str | None:
    """The Traditional Chinese variant a query string asks for; ValueError naming those there are."""
    raw = query_value(query_string, "variant")
    if raw is None:
        return None
    for variant in VARIANTS:  # language tags are case-insensitive (BCP 47 §2.1.1)
        if raw.lower() == variant.lower():
            return variant
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {raw[:40]!r}.")


def limit_of(path: str, query_string: str, site: Settings) -> int:
    """The number of items the query string asks of the feed at ``path``; ValueError saying what is allowed."""
    raw = query_value(query_string, "limit")
    feeds = site.feeds
    if raw is None:
        return site.hot.size if path.startswith("hot/") else feeds.default_limit
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= feeds.max_limit:
        raise ValueError(f"limit must be a whole number from 1 to {feeds.max_limit}, got {raw!r}.")
    return int(raw)


@lru_cache(maxsize=256)  # pollers ask with the same few query strings all day
def query_value(query_string: str, wanted: str) -> str | None:
    """The first ``wanted`` of a WSGI query string, as ``request.args`` would give it."""
    text = query_string.encode("latin-1", "replace").decode("utf-8", "replace")  # WSGI hands bytes as latin-1
    return next((value for name, value in parse_qsl(text, keep_blank_values=True, errors="replace") if name == wanted), None)


def partner_address(settings: Settings, key: str, path: str, variant: str | None = None) -> tuple[str, str]:
    """Where the partner holding ``key`` reads the feed at ``path``, without extension, and its query string:
    ``<base URL>/partner/<key>/<published path>``."""
    published_path, query = public_path(path, variant)
    return f"{settings.base_url}/partner/{key}/{published_path}", query


def partner_of(key: str, settings: Settings) -> tuple[str, PartnerSettings] | None:
    """The partner (its name and settings) whose key ``key`` is, every key compared in constant time."""
    found = None
    for name, partner in settings.partners.items():
        for known in partner.keys:
            if hmac.compare_digest(key.encode(), known.encode()):
                found = (name, partner)
    return found


def partner_limit(query_string: str, partner: PartnerSettings) -> int:
    """``?limit=`` of a partner feed: up to the partner's own limit, which is also the default."""
    raw = query_value(query_string, "limit")
    if raw is None:
        return partner.limit
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= partner.limit:
        raise ValueError(f"limit: expected a whole number from 1 to {partner.limit}, got {raw[:20]!r}.")
    return int(raw)


@dataclass(frozen=True)
class Topic:
    """A feed URL of this site as a subscriber names it: a public feed, or a partner's (``partners.py``)."""

    url: str
    path: str  # e.g. category/redian
    extension: str
    limit: int
    variant: str | None = None
    partner: str | None = None  # the partner's name, and the key its URL holds
    key: str | None = None

    @property
    def feed(self) -> str:
        """What poll and hub statistics call it."""
        return f"partner/{self.partner}/{self.path}" if self.partner else self.path


def parse_topic(url: str, settings: Settings) -> Topic | None:
    """The feed ``url`` names when it is one of this site's feed URLs (archive pages hold still:
    there is nothing to subscribe to), else None. Whether such a feed exists is the catalog's to say."""
    parts, base = urlsplit(url), urlsplit(settings.base_url)
    prefix, partners = base.path.rstrip("/") + "/feeds/", base.path.rstrip("/") + "/partner/"
    if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or parts.fragment:
        return None
    held = None
    if parts.path.startswith(partners):
        key, _, rest = parts.path[len(partners):].partition("/")
        held = partner_of(key, settings)
        if held is None:
            return None
        prefix = f"{partners}{key}/"
    elif not parts.path.startswith(prefix):
        return None
    path, dot, extension = parts.path[len(prefix):].rpartition(".")
    if not dot or extension not in FORMATS or not path or path.startswith("archive/"):
        return None
    if any(name not in ("limit", "variant", "q") for name, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return None
    try:
        path = feed_path_of(path, parts.query)
        if path is None:
            return None
        if held is None:
            return Topic(url, path, extension, limit_of(path, parts.query, settings), variant_of(parts.query))
        name, partner = held
        if partner.feeds and path not in partner.feeds:
            return None
        return Topic(url, path, extension, partner_limit(parts.query, partner), variant_of(parts.query), name, key)
    except ValueError:
        return None
