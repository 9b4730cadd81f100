"""Raw input (a JSON object from a file line or an API body) to domain objects, or field errors.

The one place that decides what an acceptable article or read event is; the CLI
and the API both call it, so both give the same message for the same mistake.
"""
from __future__ import annotations

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
_ROOT_CRUMBS = {"主页", "首页", "Home", "home"}


class _Fields:
    """Reads one raw object field by field, collecting every error rather than stopping at the first."""

    def __init__(self, raw: Any, known: tuple[str, ...]):
        self.errors: list[FieldError] = []
        if not isinstance(raw, dict):
            raise InvalidInput([FieldError("", f"expected a JSON object, got {_json_type(raw)}")])
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
            self.fail(name, f"{name}: expected a string, got {_json_type(value)}")
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
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
            self.fail(name, f'{name}: expected an absolute http(s) URL, got "{value}"')
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
    article_id = fields.text("id", required=True, limit=MAX_ID_CHARS)
    if article_id is not None and (any(c.isspace() for c in article_id) or strip_forbidden(article_id) != article_id):
        fields.fail("id", f'id: must not contain spaces or control characters, got "{article_id}"')
    url = fields.url("url", required=True)
    title = fields.text("title", required=True, limit=limits.max_title_chars)
    summary = fields.text("summary", limit=limits.max_summary_chars)
    content = fields.text("content", limit=limits.max_content_chars)
    author = fields.text("author", limit=limits.max_title_chars)
    source = _source(fields, limits.max_title_chars)
    category = fields.names("category", _split_category)
    if category and category[0] in _ROOT_CRUMBS:
        category = category[1:]
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
    article_id = fields.text("id", required=True, limit=MAX_ID_CHARS)
    count = fields.raw.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        fields.fail("count", f"count: expected a whole number, got {count!r}")
    elif count < 1:
        fields.fail("count", f"count must be positive, got {count}")
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


def _split_category(path: str) -> list[str]:
    separator = ">" if ">" in path else "/"
    return path.split(separator)


def _split_tags(text: str) -> list[str]:
    return text.replace("，", ",").replace("、", ",").split(",")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
