"""Raw input (a JSON object from a file line or an API body) to domain objects, or field errors.

The one place that decides what an acceptable article or read event is; the CLI
and the API both call it, so both give the same message for the same mistake.
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from feeds.config import Settings
from feeds.dates import DateError, parse_date
from feeds.errors import FieldError, InvalidInput
from feeds.model import Article, ReadEvent, Source
from feeds.text import html_lines, plain, sanitize_html, strip_forbidden, summarize

ARTICLE_FIELDS = (
    "id", "url", "title", "summary", "content", "author", "source", "source_url",
    "category", "tags", "image", "published", "updated",
)
EVENT_FIELDS = ("id", "count", "at")
MAX_ID_CHARS = 200
MAX_CATEGORY_NAME_CHARS = 100
MAX_CATEGORY_DEPTH = 8
MAX_READS_PER_EVENT = 1_000_000
_ROOT_CRUMBS = {"主页", "首页", "Home", "home"}
_NOT_IN_URLS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")

# Limits on the JSON itself, before any field is looked at (RFC 7493, I-JSON):
# no article nests more than a few levels, numbers must fit a double exactly,
# and text must be Unicode the store can encode.
MAX_DEPTH = 16
MAX_SAFE_INTEGER = 2**53 - 1
_NOT_UNICODE = re.compile(
    "[\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17))
    + "]"
)


class BadJSON(ValueError):
    """Text that is not JSON, or JSON this service cannot keep; the message says where or what."""


def parse_json(text: str) -> Any:
    """Parse one JSON document (an API body or an import line), refusing what JSON
    allows but the service cannot keep: NaN, repeated keys, deep nesting, numbers
    beyond a double's exact range, lone surrogates and noncharacters."""
    try:
        value = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}" if "\n" in text.rstrip() else f"column {exc.colno}"
        raise BadJSON(f"{exc.msg} at {where}") from None
    except RecursionError:
        raise BadJSON(f"it nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # from the hooks below, or an integer too long to convert
        raise BadJSON(str(exc)) from None
    _check_json(value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f'the key "{key}" appears twice in one object')
            seen.add(key)
    return found


def _check_json(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadJSON(f"it nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((part, depth + 1) for part in item.keys())
            stack.extend((part, depth + 1) for part in item.values())
        elif isinstance(item, list):
            stack.extend((part, depth + 1) for part in item)
        elif isinstance(item, str):
            bad = _NOT_UNICODE.search(item)
            if bad:
                raise BadJSON(f"it holds U+{ord(bad.group()):04X}, which is not a Unicode character")
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int) and abs(item) > MAX_SAFE_INTEGER:
            raise BadJSON(f"the number {item} is beyond ±{MAX_SAFE_INTEGER}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadJSON("a number is too large")


class _Fields:
    """Reads one raw object field by field, collecting every error rather than stopping at the first."""

    def __init__(self, raw: Any, known: tuple[str, ...]):
        self.errors: list[FieldError] = []
        if not isinstance(raw, dict):
            raise InvalidInput([FieldError("", f"expected a JSON object, got {json_type(raw)}")])
        self.raw: dict[str, Any] = raw
        for key in raw:
            if key not in known:
                self.fail(str(key), f"{key}: unknown field (known: {', '.join(known)})")

    def fail(self, field: str, message: str) -> None:
        self.errors.append(FieldError(field, message))

    def text(self, name: str, *, required: bool = False, limit: int | None = None) -> str | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self.fail(name, f"{name} is missing")
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name == "id":
            value = str(value)
        if not isinstance(value, str):
            self.fail(name, f"{name}: expected a string, got {json_type(value)}")
            return None
        if limit is not None and len(value) > limit:
            self.fail(name, f"{name} is too long ({len(value)} characters, at most {limit})")
            return None
        if required and not plain(value):
            self.fail(name, f"{name} is empty")
            return None
        return value

    def url(self, name: str, *, required: bool = False) -> str | None:
        value = self.text(name, required=required, limit=2048)
        if value is None:
            return None
        value = value.strip()
        if not value and not required:
            return None
        if _NOT_IN_URLS.search(value):
            self.fail(name, f"{name}: must not contain spaces or control characters")
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.fail(name, f'{name}: expected an absolute http(s) URL, got "{value}"')
            return None
        return value

    def identifier(self) -> str | None:
        """The publisher's id: a string (a number is taken as one) without spaces or control characters."""
        value = self.text("id", required=True, limit=MAX_ID_CHARS)
        if value is not None and (_NOT_IN_URLS.search(value) or strip_forbidden(value) != value):
            self.fail("id", f"id: must not contain spaces or control characters, got {value!r}")
            return None
        return value

    def date(self, name: str, tz: Any, *, required: bool = False, default: datetime | None = None) -> datetime | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self.fail(name, f"{name} is missing")
            return default
        try:
            return parse_date(value, tz)
        except DateError as exc:
            self.fail(name, f"{name}: {exc}")
            return None

    def names(self, name: str, split: Callable[[str], list[str]]) -> tuple[str, ...]:
        value = self.raw.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            value = split(value)
        if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
            self.fail(name, f"{name}: expected a string or a list of strings")
            return ()
        return tuple(part for part in (plain(p) for p in value) if part)


def article_from_dict(raw: Any, settings: Settings) -> Article:
    """Validate one article object; raise ``InvalidInput`` listing every bad field."""
    limits = settings.api
    fields = _Fields(raw, ARTICLE_FIELDS)
    article_id = fields.identifier()
    url = fields.url("url", required=True)
    title = fields.text("title", required=True, limit=limits.max_title_chars)
    summary = fields.text("summary", limit=limits.max_summary_chars)
    content = fields.text("content", limit=limits.max_content_chars)
    author = fields.text("author", limit=limits.max_title_chars)
    source = _source(fields, limits.max_title_chars)
    category = _category(fields)
    tags = fields.names("tags", _split_tags)
    image = fields.url("image")
    published = fields.date("published", settings.tz, required=True)
    updated = fields.date("updated", settings.tz)
    if fields.errors:
        raise InvalidInput(fields.errors)
    assert article_id and url and title and published
    title = plain(title)
    content_html = sanitize_html(content, url) if content else ""
    if summary:
        summary = summarize(title, html_lines(summary))
    else:
        summary = summarize(title, html_lines(content_html), settings.feeds.summary_length)
    return Article(
        id=article_id,
        url=url,
        title=title,
        summary=summary,
        content=content_html,
        author=plain(author or "") or None,
        source=source,
        category=category,
        tags=tags,
        image=image,
        published=published,
        updated=updated if updated and updated > published else None,
    )


def event_from_dict(raw: Any, settings: Settings, now: datetime) -> ReadEvent:
    """Validate one read event ``{"id", "count"=1, "at"=now}``."""
    fields = _Fields(raw, EVENT_FIELDS)
    article_id = fields.identifier()
    count = fields.raw.get("count", 1)
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int):
        fields.fail("count", f"count: expected a whole number, got {json_type(count)}")
    elif count < 1:
        fields.fail("count", f"count must be positive, got {count}")
    elif count > MAX_READS_PER_EVENT:
        fields.fail("count", f"count must be at most {MAX_READS_PER_EVENT} in one event, got {count}")
    at = fields.date("at", settings.tz, default=now)
    if fields.errors:
        raise InvalidInput(fields.errors)
    assert article_id and at
    return ReadEvent(article_id=article_id, at=at, count=count)


def _source(fields: _Fields, limit: int) -> Source | None:
    value = fields.raw.get("source")
    url = fields.url("source_url")
    if isinstance(value, dict):
        nested = _Fields(value, ("name", "url"))
        name = nested.text("name", required=True, limit=limit)
        url = nested.url("url") or url
        fields.errors.extend(FieldError(f"source.{e.field}", f"source.{e.message}") for e in nested.errors)
        if nested.errors:
            return None
    else:
        name = fields.text("source", limit=limit)
    name = plain(name) if name else ""
    return Source(name=name, url=url) if name else None


def _category(fields: _Fields) -> tuple[str, ...]:
    """A path: "热点/国内", "主页 > 热点 > 国内" (a breadcrumb) or ["热点", "国内"]."""
    value = fields.raw.get("category")
    if isinstance(value, list) and any(isinstance(name, str) and ("/" in name or ">" in name) for name in value):
        fields.fail("category", 'category: a name in the list may not hold "/" or ">"')
        return ()
    names = fields.names("category", lambda path: re.split(r"[/>]", path))
    if names and names[0] in _ROOT_CRUMBS:
        names = names[1:]
    if len(names) > MAX_CATEGORY_DEPTH:
        fields.fail("category", f"category: at most {MAX_CATEGORY_DEPTH} levels, got {len(names)}")
        return ()
    for name in names:
        if len(name) > MAX_CATEGORY_NAME_CHARS:
            fields.fail("category", f"category: a name is too long ({len(name)} characters, at most {MAX_CATEGORY_NAME_CHARS})")
            return ()
    return names


def _split_tags(text: str) -> list[str]:
    return text.replace("，", ",").replace("、", ",").split(",")


def json_type(value: Any) -> str:
    """How a JSON value's type reads in a message: "an object", "a string", "null"..."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
