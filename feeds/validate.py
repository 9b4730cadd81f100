"""Raw input (a JSON object from a file line or an API body) to domain objects, or field errors.

The one place that decides what an acceptable article or read event is; the CLI
and the API both call it, so both give the same message for the same mistake. The
shapes they accept are declared once (``ARTICLE``, ``READ_EVENT``), and the OpenAPI
document's schemas are made from the same declaration (``Shape.json_schema``).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from feeds.config import ApiSettings, Settings
from feeds.dates import DateError, parse_date
from feeds.errors import FieldError, InvalidInput
from feeds.model import Article, Image, ReadEvent, Source
from feeds.text import html_lines, plain, sanitize_html, strip_forbidden, summarize

MAX_ID_CHARS = 200
MAX_URL_CHARS = 2048
MAX_CATEGORY_NAME_CHARS = 100
MAX_CATEGORY_DEPTH = 8
MAX_READS_PER_EVENT = 1_000_000
MAX_PIXELS = 100_000
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


# -- the shapes ----------------------------------------------------------------------
# What the API and an import accept is declared once, below: each object a ``Shape``, each
# field a ``Field`` of a ``Kind``. A kind both reads a value (with the message a person
# sees) and says the same rules as JSON Schema, so the OpenAPI document (``feeds.api``) is
# made from the very declaration that validation follows, limits from config included.

Limit = Callable[[ApiSettings], int]


@dataclass(frozen=True)
class Field:
    """One field of an accepted object: its kind, whether it must be there, its limit, and its
    description and example for the OpenAPI document."""

    name: str
    kind: Kind
    description: str
    example: Any = None
    required: bool = False
    max_length: int | Limit | None = None  # characters

    def limit(self, api: ApiSettings) -> int | None:
        return self.max_length(api) if callable(self.max_length) else self.max_length


@dataclass(frozen=True)
class Shape:
    """An accepted JSON object: its fields, in the order their errors are listed."""

    name: str
    fields: tuple[Field, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(field.name for field in self.fields)

    def read(self, raw: Any, settings: Settings) -> dict[str, Any]:
        """Each field's value (None when absent), or ``InvalidInput`` naming every bad field."""
        reader = _Reader(raw, self.names)
        values = {field.name: field.kind.read(reader, field, settings) for field in self.fields}
        if reader.errors:
            raise InvalidInput(reader.errors)
        return values

    def json_schema(self, api: ApiSettings) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": [field.name for field in self.fields if field.required],
            "properties": {field.name: _described(field, field.kind.schema(field, api)) for field in self.fields},
        }


def _described(field: Field, schema: dict[str, Any]) -> dict[str, Any]:
    described = {**schema, "description": field.description}
    if field.example is not None:
        described["examples"] = [field.example]
    return described


class Kind:
    """How a field of one kind is read, and the same rules as JSON Schema."""

    def read(self, reader: _Reader, field: Field, settings: Settings) -> Any:
        raise NotImplementedError

    def schema(self, field: Field, api: ApiSettings) -> dict[str, Any]:
        raise NotImplementedError


class Identifier(Kind):
    """The publisher's id: a string (a number is taken as one) without spaces or control characters."""

    def read(self, reader: _Reader, field: Field, settings: Settings) -> str | None:
        value = reader.text(field.name, required=True, limit=field.limit(settings.api), numbers=True)
        if value is not None and (_NOT_IN_URLS.search(value) or strip_forbidden(value) != value):
            reader.fail(field.name, f"{field.name}: must not contain spaces or control characters, got {value!r}")
            return None
        return value

    def schema(self, field: Field, api: ApiSettings) -> dict[str, Any]:
        return {"type": ["string", "number"], "minLength": 1, "maxLength": field.limit(api)}


class Text(Kind):
    """A string; a required one must hold more than spaces."""

    def read(self, reader: _Reader, field: Field, settings: Settings) -> str | None:
        return reader.text(field.name, required=field.required, limit=field.limit(settings.api))

    def schema(self, field: Field, api: ApiSettings) -> dict[str, Any]:
        if field.required:
            return {"type": "string", "minLength": 1, "maxLength": field.limit(api)}
        return {"type": ["string", "null"], "maxLength": field.limit(api)}


class Url(Kind):
    """An absolute http(s) URL; an optional one may be empty."""

    def read(self, reader: _Reader, field: Field, settings: Settings) -> str | None:
        return reader.url(field.name, required=field.required)

    def schema(self, field: Field, api: ApiSettings) -> dict[str, Any]:
        if field.required:
            return {"type": "string", "minLength": 1, "maxLength": MAX_URL_CHARS}
        return {"type": ["string", "null"], "maxLength": MAX_URL_CHARS}


class Date(Kind):
    """A time in any form ``feeds.dates`` reads; one without an offset is in the site's timezone."""

    def read(self, reader: _Reader, field: Field, settings: Settings) -> datetime | None:
        return reader.date(field.name, settings.tz, required=field.required)

    def schema(self, field: Field, api: ApiSettings) -> dict[str, Any]:
        return {"type": ["string", "number"] if field.required else ["string", "number", "null"]}


@dataclass(frozen=True)
class Names(Kind):
    """Names, as a list or as one string split at ``separators``; blank ones dropped.

    A ``path`` (of categories) may also be a breadcrumb whose first crumb is the home page,
    and a name given in a list may not hold a separator. At most ``max_depth`` names of
    ``max_name_chars`` each, when given.
    """

    separators: str
    path: bool = False
    max_depth: int | None = None
    max_name_chars: int | None = None

    def read(self, reader: _Reader, field: Field, settings: Settings) -> tuple[str, ...]:
        name, value = field.name, reader.raw.get(field.name)
        if self.path and isinstance(value, list) and any(isinstance(part, str) and any(c in part for c in self.separators) for part in value):
            reader.fail(name, f"{name}: a name in the list may not hold " + " or ".join(f'"{c}"' for c in self.separators))
            return ()
        if value is None:
            return ()
        if isinstance(value, str):
            value = re.split(f"[{re.escape(self.separators)}]", value)
        if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
            reader.fail(name, f"{name}: expected a string or a list of strings")
            return ()
        names = tuple(part for part in (plain(p) for p in value) if part)
        if self.path and names and names[0] in _ROOT_CRUMBS:
            names = names[1:]
        if self.max_depth is not None and len(names) > self.max_depth:
            reader.fail(name, f"{name}: at most {self.max_depth} levels, got {len(names)}")
            return ()
        for part in names:
            if self.max_name_chars is not None and len(part) > self.max_name_chars:
                reader.fail(name, f"{name}: a name is too long ({len(part)} characters, at most {self.max_name_chars})")
                return ()
        return names

    def schema(self, field: Field, api: ApiSettings) -> dict[str, Any]:
        items: dict[str, Any] = {"type": "string"}
        if self.max_name_chars is not None:
            items["maxLength"] = self.max_name_chars
        schema: dict[str, Any] = {"type": ["string", "array", "null"], "items": items}
        if self.max_depth is not None:
            schema["maxItems"] = self.max_depth
        return schema


@dataclass(frozen=True)
class Count(Kind):
    """A whole number from 1 to ``most``, ``default`` when absent."""

    most: int
    default: int = 1

    def read(self, reader: _Reader, field: Field, settings: Settings) -> int | None:
        name, count = field.name, reader.raw.get(field.name, self.default)
        if isinstance(count, float) and count.is_integer():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int):
            reader.fail(name, f"{name}: expected a whole number, got {json_type(count)}")
        elif count < 1:
            reader.fail(name, f"{name} must be positive, got {count}")
        elif count > self.most:
            reader.fail(name, f"{name} must be at most {self.most} in one event, got {count}")
        else:
            return count
        return None

    def schema(self, field: Field, api: ApiSettings) -> dict[str, Any]:
        return {"type": "integer", "minimum": 1, "maximum": self.most, "default": self.default}


@dataclass(frozen=True)
class Pixels(Kind):
    """An optional size in pixels: a whole number from 1 to ``MAX_PIXELS``."""

    def read(self, reader: _Reader, field: Field, settings: Settings) -> int | None:
        name, value = field.name, reader.raw.get(field.name)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            reader.fail(name, f"{name}: expected a whole number of pixels, got {json_type(value)}")
        elif not 1 <= value <= MAX_PIXELS:
            reader.fail(name, f"{name}: expected 1 to {MAX_PIXELS} pixels, got {value}")
        else:
            return value
        return None

    def schema(self, field: Field, api: ApiSettings) -> dict[str, Any]:
        return {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_PIXELS}


@dataclass(frozen=True)
class OrObject(Kind):
    """A value of the ``single`` kind (a name, a URL), or an object of ``shape`` whose errors are named
    ``<field>.<its field>``."""

    single: Kind
    shape: Shape

    def read(self, reader: _Reader, field: Field, settings: Settings) -> str | dict[str, Any] | None:
        value = reader.raw.get(field.name)
        if not isinstance(value, dict):
            return self.single.read(reader, field, settings)
        try:
            return self.shape.read(value, settings)
        except InvalidInput as exc:
            for error in exc.errors:
                reader.fail(f"{field.name}.{error.field}", f"{field.name}.{error.message}")
            return None

    def schema(self, field: Field, api: ApiSettings) -> dict[str, Any]:
        single = self.single.schema(field, api)
        if isinstance(field.example, str):  # the field's example is of the single form
            single["examples"] = [field.example]
        return {"oneOf": [single, self.shape.json_schema(api)]}


def _title_chars(api: ApiSettings) -> int:
    return api.max_title_chars


_DATE_FORMS = ('ISO 8601 ("2024-04-04T16:49:39+08:00", "2024-04-04 16:49:39"), RFC 822, Chinese ("2024年4月4日 16:49"), '
               "or Unix seconds; a time without an offset is in the site's timezone.")
_ID = Field("id", Identifier(), "The publisher's own stable id: no spaces or control characters. A number is read as its "
            "decimal text.", example="20240404-0001", required=True, max_length=MAX_ID_CHARS)

SOURCE = Shape("Source", (
    Field("name", Text(), "The source's name.", example="经济日报", required=True, max_length=_title_chars),
    Field("url", Url(), "Its home page: an absolute http(s) URL; empty or null for none.", example="https://www.ce.cn/"),
))

IMAGE = Shape("Image", (
    Field("url", Url(), "The image: an absolute http(s) URL.", example="https://news.example.cn/images/0001.jpg", required=True),
    Field("width", Pixels(), "Its width in pixels.", example=1200),
    Field("height", Pixels(), "Its height in pixels.", example=675),
    Field("caption", Text(), "What it shows (图片说明).", example="联席会议现场", max_length=_title_chars),
    Field("credit", Text(), "Who made it, or holds its rights (摄影).", example="工人日报记者 朱欣", max_length=_title_chars),
))

ARTICLE = Shape("Article", (
    _ID,
    Field("url", Url(), "The article's page: an absolute http(s) URL.",
          example="https://news.example.cn/redian/guonei/2024/0404/0001.html", required=True),
    Field("title", Text(), "The headline; not only spaces.", example="中国纺织工业联合会召开联席会议", required=True,
          max_length=_title_chars),
    Field("summary", Text(), "Plain text or HTML; made from the content when missing.", example="恒生指数收涨。",
          max_length=lambda api: api.max_summary_chars),
    Field("content", Text(), "The body as HTML; sanitised when stored.", example="<p>中工网北京4月2日电……</p>",
          max_length=lambda api: api.max_content_chars),
    Field("author", Text(), "The author's name.", example="朱欣", max_length=_title_chars),
    Field("source", OrObject(Text(), SOURCE), "Where the article comes from (来源): a name, or {name, url}.", example="互联网",
          max_length=_title_chars),
    Field("source_url", Url(), "The source's home page, when `source` is a name: an absolute http(s) URL; empty or null "
          "for none.", example="https://www.ce.cn/"),
    Field("category", Names("/>", path=True, max_depth=MAX_CATEGORY_DEPTH, max_name_chars=MAX_CATEGORY_NAME_CHARS),
          f'The category path, as "热点/国内", a breadcrumb "主页 > 热点 > 国内" or ["热点", "国内"]: at most '
          f"{MAX_CATEGORY_DEPTH} levels of at most {MAX_CATEGORY_NAME_CHARS} characters each.", example="热点/国内"),
    Field("tags", Names(",，、"), "Tags, as a list or one string split at commas and 、.", example=["工会", "纺织"]),
    Field("image", OrObject(Url(), IMAGE), "The lead image: an absolute http(s) URL, or {url, width, height, caption, "
          "credit}; empty or null for none.", example="https://news.example.cn/images/0001.jpg"),
    Field("published", Date(), "When it is public: a time later than now schedules it, and it is in no public output "
          "before then. " + _DATE_FORMS, example="2024-04-04 16:49:39", required=True),
    Field("updated", Date(), "When it last changed (kept only when later than published; a time later than now is "
          "taken as now): " + _DATE_FORMS, example="2024-04-04T17:00:00+08:00"),
    Field("expires", Date(), "When it leaves every public output; later than published. " + _DATE_FORMS,
          example="2024-04-11 00:00:00"),
))

READ_EVENT = Shape("ReadEvent", (
    Field("id", Identifier(), "The id of a stored article.", example="20240404-0001", required=True, max_length=MAX_ID_CHARS),
    Field("count", Count(MAX_READS_PER_EVENT), "How many reads.", example=3),
    Field("at", Date(), "When (default: now): " + _DATE_FORMS, example="2024-04-04 17:00:00"),
))


def article_from_dict(raw: Any, settings: Settings) -> Article:
    """Validate one article object; raise ``InvalidInput`` listing every bad field."""
    values = ARTICLE.read(raw, settings)
    title, url, published, updated = plain(values["title"]), values["url"], values["published"], values["updated"]
    expires = values["expires"]
    if expires is not None and expires <= published:
        raise InvalidInput([FieldError("expires", f"expires: {expires.isoformat()} is not later than published "
                                                  f"({published.isoformat()}); an article must be public before it expires")])
    content_html = sanitize_html(values["content"], url) if values["content"] else ""
    if values["summary"]:
        summary = summarize(title, html_lines(values["summary"]))
    else:
        summary = summarize(title, html_lines(content_html), settings.feeds.summary_length)
    return Article(
        id=values["id"],
        url=url,
        title=title,
        summary=summary,
        content=content_html,
        author=plain(values["author"] or "") or None,
        source=_source(values["source"], values["source_url"]),
        category=values["category"],
        tags=values["tags"],
        image=_image(values["image"]),
        published=published,
        updated=updated if updated and updated > published else None,
        expires=expires,
    )


def event_from_dict(raw: Any, settings: Settings, now: datetime) -> ReadEvent:
    """Validate one read event ``{"id", "count"=1, "at"=now}``."""
    values = READ_EVENT.read(raw, settings)
    return ReadEvent(article_id=values["id"], at=values["at"] or now, count=values["count"])


def _image(given: str | dict[str, Any] | None) -> Image | None:
    if isinstance(given, dict):
        return Image(given["url"], given["width"], given["height"], plain(given["caption"] or "") or None,
                     plain(given["credit"] or "") or None)
    return Image(given) if given else None


def _source(given: str | dict[str, Any] | None, source_url: str | None) -> Source | None:
    if isinstance(given, dict):
        name, url = given["name"], given["url"] or source_url
    else:
        name, url = given, source_url
    name = plain(name) if name else ""
    return Source(name=name, url=url) if name else None


class _Reader:
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

    def text(self, name: str, *, required: bool = False, limit: int | None = None, numbers: bool = False) -> str | None:
        """The string, or with ``numbers`` a number's decimal text."""
        value = self.raw.get(name)
        if value is None:
            if required:
                self.fail(name, f"{name} is missing")
            return None
        if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
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
        value = self.text(name, required=required, limit=MAX_URL_CHARS)
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

    def date(self, name: str, tz: Any, *, required: bool = False) -> datetime | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self.fail(name, f"{name} is missing")
            return None
        try:
            return parse_date(value, tz)
        except DateError as exc:
            self.fail(name, f"{name}: {exc}")
            return None


def json_type(value: Any) -> str:
    """How a JSON value's type reads in a message: "an object", "a string", "null"..."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
