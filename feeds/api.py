"""The write API under ``/api``: articles in (upsert, delete), the queue of scheduled and expired
articles out, reads in, and its OpenAPI document.

Routing, HTTP and JSON only. What an acceptable article or read event is, is
decided by ``feeds.validate`` alone; storing is ``feeds.store``'s. Every request
is applied whole or not at all: each item is validated first, and only when
all are good are they stored, in one transaction.

Every answer is JSON; an error is ``{"error": "..."}``, plus ``"errors"``
(one entry per bad field of each rejected item) when items were rejected.
"""
from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from feeds.services import Services
from feeds.config import Settings
from feeds.errors import FieldError, InvalidInput
from feeds.ingest import longest_window, unknown_article
from feeds.metrics import count_imports
from feeds.model import Article, Status
from feeds.validate import ARTICLE, MAX_ID_CHARS, READ_EVENT, BadJSON, article_from_dict, event_from_dict, json_type, parse_json

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger("feeds.api")

QUEUES = ("scheduled", "expired")  # what GET /api/articles lists
QUEUE_LIMIT = 100
MAX_QUEUE_LIMIT = 1000

class ApiError(Exception):
    """An answer other than success: a status, a message, and per-item ``errors`` when items were rejected."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    body: dict[str, Any] = {"error": exc.message}
    if exc.errors is not None:
        body["errors"] = exc.errors
    response = jsonify(body)
    response.status_code = exc.status
    response.headers.update(exc.headers)
    return response


@bp.after_request
def _no_store(response: Response) -> Response:
    response.cache_control.no_store = True
    return response


def services() -> Services:
    return current_app.extensions["feeds"]


# -- authorization -----------------------------------------------------------------


def authorized(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let the request through only with ``Authorization: Bearer <api.token>``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_token(services().settings)
        return view(*args, **kwargs)

    return wrapper


def check_token(settings: Settings) -> None:
    token = settings.api.token
    if not token:
        raise ApiError(403, "The write API is off: no API token is configured (set api.token, or FEEDS_API_TOKEN).")
    header = request.headers.get("Authorization")
    if header is None:
        raise ApiError(401, "This needs the API token: send the header Authorization: Bearer <token>.",
                       headers={"WWW-Authenticate": 'Bearer realm="feeds"'})
    scheme, _, given = header.strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given or any(c.isspace() for c in given):
        raise ApiError(401, 'The Authorization header must read "Bearer <token>".',
                       headers={"WWW-Authenticate": 'Bearer realm="feeds", error="invalid_request"'})
    if not token_matches(given, token):
        raise ApiError(403, "The API token is wrong.")


def token_matches(given: str, token: str) -> bool:
    """Compared as bytes, in constant time: compare_digest refuses a str holding anything but ASCII."""
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


# -- the body ----------------------------------------------------------------------


def json_body() -> Any:
    """The request's JSON, or an ``ApiError`` saying why there is none (415, 413 or 400)."""
    if request.mimetype != "application/json":
        got = request.headers.get("Content-Type") or "no Content-Type"
        raise ApiError(415, f"Send the body as JSON, with Content-Type: application/json (got {got}).")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, f"Send JSON in UTF-8 (the Content-Type names the charset {charset}).")
    try:
        data = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise _too_large() from None
    limit = services().settings.api.max_body_bytes
    if len(data) > limit:  # a body sent without Content-Length
        raise _too_large()
    if not data.strip():
        raise ApiError(400, "The body is empty; send JSON.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"The body is not UTF-8: byte 0x{data[exc.start]:02x} at position {exc.start}.") from None
    try:
        return parse_json(text)
    except BadJSON as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}.") from None


def _too_large() -> ApiError:
    limit = services().settings.api.max_body_bytes
    return ApiError(413, f"The body is larger than the limit of {limit} bytes (api.max_body_bytes); send fewer items per request.")


# -- per-item errors -----------------------------------------------------------------


def _readable_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= MAX_ID_CHARS:
        return value
    return None


def _item_errors(index: int, article_id: str | None, errors: list[FieldError]) -> list[dict[str, Any]]:
    ident = {"id": article_id} if article_id is not None else {}
    return [{"index": index, **ident, "field": error.field, "message": error.message} for error in errors]


def _rejected(errors: list[dict[str, Any]], total: int, noun: str, outcome: str) -> ApiError:
    count = len({error["index"] for error in errors})
    were = "was" if count == 1 else "were"
    nouns = noun if total == 1 else noun + "s"
    return ApiError(422, f"{count} of {total} {nouns} {were} rejected; {outcome}", errors=errors)


# -- endpoints -----------------------------------------------------------------------


@bp.post("/articles")
@authorized
def post_articles() -> tuple[Response, int]:
    """Upsert one article (an object) or several (an array), all or none."""
    svc = services()
    body = json_body()
    items = [body] if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise ApiError(400, f"Expected an article object or an array of them, got {json_type(body)}.")
    limit = svc.settings.api.max_articles
    if len(items) > limit:
        raise ApiError(
            413, f"Too many articles: {len(items)} in one request, at most {limit} (api.max_articles); send them in several requests."
        )
    articles = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(items):
        try:
            articles.append(article_from_dict(raw, svc.settings))
        except InvalidInput as exc:
            errors.extend(_item_errors(index, _readable_id(raw), exc.errors))
    if errors:
        count_imports("api", rejected=len({error["index"] for error in errors}))
        raise _rejected(errors, len(items), "article", "nothing was stored")
    now = svc.schedule.clock()
    outcomes = svc.store.articles.upsert(articles, now) if articles else []
    count_imports("api", **{result: outcomes.count(result) for result in ("created", "updated", "unchanged")})
    log.info("api: %d articles stored (%d created, %d updated, %d unchanged)", len(outcomes),
             outcomes.count("created"), outcomes.count("updated"), outcomes.count("unchanged"))
    results = [_result(svc, article, outcome, article.status(now)) for article, outcome in zip(articles, outcomes)]
    return jsonify(results=results), 201 if "created" in outcomes else 200


def _result(svc: Services, article: Article, outcome: str, status: Status) -> dict[str, Any]:
    """What became of one article sent: a stored change to an article whose time has not come is ``scheduled``."""
    result = {"id": article.id, "result": "scheduled" if status == "scheduled" and outcome != "unchanged" else outcome,
              "status": status, "guid": svc.catalog.guid(article.id)}
    if status == "scheduled":
        result["publishes_at"] = article.published.astimezone(svc.settings.tz).isoformat()
    return result


@bp.get("/articles")
@authorized
def queued_articles() -> Response:
    """The articles waiting for their time (``?status=scheduled``, the next first) or gone at theirs
    (``?status=expired``, the latest first), at most ``limit``."""
    svc = services()
    status = request.args.get("status")
    if status not in QUEUES:
        raise ApiError(400, f"status: expected one of {', '.join(QUEUES)}, got {'nothing' if status is None else repr(status)}.")
    limit = request.args.get("limit", str(QUEUE_LIMIT))
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_QUEUE_LIMIT):
        raise ApiError(400, f"limit: expected a whole number from 1 to {MAX_QUEUE_LIMIT}, got {limit!r}.")
    total, found = svc.store.articles.queued(status, int(limit))  # type: ignore[arg-type]
    return jsonify(status=status, total=total, articles=[queued_entry(svc, article) for article in found])


def queued_entry(svc: Services, article: Article) -> dict[str, Any]:
    """One queued article as the API lists it (and ``feeds scheduled`` prints it): its times in the site's timezone."""
    tz = svc.settings.tz
    return {
        "id": article.id,
        "title": article.title,
        "url": article.url,
        "category": "/".join(article.category),
        "published": article.published.astimezone(tz).isoformat(),
        "expires": article.expires.astimezone(tz).isoformat() if article.expires else None,
        "guid": svc.catalog.guid(article.id),
    }


@bp.delete("/articles/<path:article_id>", merge_slashes=False)
@authorized
def delete_article(article_id: str) -> Response:
    """Remove an article from the store and every feed."""
    if not services().store.articles.delete(article_id):
        raise ApiError(404, f'No article "{article_id}" is stored.')
    log.info("api: article %r deleted", article_id)
    return jsonify(id=article_id, result="deleted")


@bp.post("/views")
@authorized
def post_views() -> Response:
    """Record an array of read events, all or none."""
    svc = services()
    body = json_body()
    if not isinstance(body, list):
        raise ApiError(400, f"Expected an array of read events, got {json_type(body)}.")
    now = datetime.now(timezone.utc)
    events = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(body):
        try:
            events.append((index, event_from_dict(raw, svc.settings, now)))
        except InvalidInput as exc:
            errors.extend(_item_errors(index, _readable_id(raw), exc.errors))
    known = svc.store.articles.known_ids({event.article_id for _, event in events}) if events else set()
    errors.extend(_unknown(events, known))
    counted = 0
    if not errors and events:
        try:
            counted = svc.store.reads.record([event for _, event in events], keep=longest_window(svc.settings))
        except KeyError:  # an article was deleted since known_ids looked
            known = svc.store.articles.known_ids({event.article_id for _, event in events})
            errors.extend(_unknown(events, known))
            if not errors:
                raise
    if errors:
        errors.sort(key=lambda error: error["index"])
        raise _rejected(errors, len(body), "read event", "nothing was recorded")
    log.info("api: %d read events recorded, %d of articles not public", counted, len(events) - counted)
    return jsonify(recorded=counted, not_public=len(events) - counted)


def _unknown(events: list[tuple[int, Any]], known: set[str]) -> list[dict[str, Any]]:
    return [
        error
        for index, event in events
        if event.article_id not in known
        for error in _item_errors(index, event.article_id, [unknown_article(event.article_id)])
    ]


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API described as OpenAPI 3.1; needs no token."""
    return jsonify(openapi_document(services().settings))


# -- the OpenAPI document ------------------------------------------------------------


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The write API as OpenAPI 3.1, with this server's limits filled in.

    The schemas of what is accepted come from the declaration that validation follows
    (``feeds.validate``); a few rules that JSON Schema cannot say (which date forms are
    read, that a title is more than spaces) are in the descriptions, and breaking them
    is a 422.
    """
    api = settings.api
    example = {
        "id": "20240404-0001",
        "url": "https://news.example.cn/redian/guonei/2024/0404/0001.html",
        "title": "中国纺织工业联合会召开联席会议",
        "content": "<p>中工网北京4月2日电……</p>",
        "author": "朱欣",
        "source": "互联网",
        "category": "热点/国内",
        "tags": ["工会", "纺织"],
        "published": "2024-04-04 16:49:39",
    }
    second = {
        "id": "20240404-0002",
        "url": "https://news.example.cn/caijing/2024/0404/0002.html",
        "title": "港股收盘",
        "summary": "恒生指数收涨。",
        "source": {"name": "经济日报", "url": "https://www.ce.cn/"},
        "category": ["财经", "股票", "港股"],
        "published": "2024年4月4日 16:10",
        "updated": "2024-04-04T17:00:00+08:00",
    }

    error_response = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

    def answer(description: str) -> dict[str, Any]:
        return {"description": description, "content": error_response}

    unauthorized = {
        "description": "No token, or an Authorization header that is not \"Bearer <token>\".",
        "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}, "description": 'Bearer realm="feeds"'}},
        "content": error_response,
    }
    common = {
        "401": unauthorized,
        "403": answer("The token is wrong, or the write API is off (no api.token configured)."),
        "503": answer("The database is unavailable; try again shortly (see Retry-After)."),
    }
    with_body = {
        **common,
        "400": answer("The body is not JSON (the message gives the position), not acceptable JSON (nested too deep, "
                      "a number beyond ±2^53, a lone surrogate, a repeated key), or of the wrong top-level type."),
        "413": answer(f"The body is larger than {api.max_body_bytes} bytes (api.max_body_bytes), "
                      f"or holds more than {api.max_articles} articles (api.max_articles)."),
        "415": answer("The Content-Type is not application/json (in UTF-8)."),
        "422": {
            "description": "Some items were rejected; nothing was stored. `errors` names each bad field of each rejected item.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rejected"}}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{settings.site.title} feeds: write API",
            "version": "1",
            "description": (
                "Upsert and delete articles, list those scheduled or expired, and record reads, for the feeds published by "
                "this service. An article whose published time is later than now is scheduled: it is in no public output "
                "until then. "
                "Every request is applied whole or not at all. Every answer is JSON; an error is "
                '{"error": "..."}, with "errors" listing each bad field when items were rejected.'
            ),
        },
        "security": [{"bearerAuth": []}],
        "paths": {
            "/api/articles": {
                "post": {
                    "operationId": "upsertArticles",
                    "summary": "Create or update articles, matched by id",
                    "description": (
                        f"One article object, or an array of at most {api.max_articles}. All are validated first; if any "
                        "is rejected the answer is 422 and nothing is stored. Otherwise all are stored in one transaction: "
                        "201 when any article was new, else 200."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {
                            "schema": {"oneOf": [
                                {"$ref": "#/components/schemas/Article"},
                                {"type": "array", "maxItems": api.max_articles, "items": {"$ref": "#/components/schemas/Article"}},
                            ]},
                            "examples": {"one": {"value": example}, "several": {"value": [example, second]}},
                        }},
                    },
                    "responses": {
                        "201": {"description": "Stored; at least one article was new.",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Results"}}}},
                        "200": {"description": "Stored; every article was already known (updated or unchanged).",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Results"}}}},
                        **with_body,
                    },
                },
                "get": {
                    "operationId": "queuedArticles",
                    "summary": "The articles scheduled for later, or expired",
                    "description": "Scheduled articles (published later than now) are in no public output until their time; "
                                   "expired ones left every public output at theirs. Listed the next to be published first, "
                                   "or the latest to have expired first.",
                    "parameters": [
                        {"name": "status", "in": "query", "required": True, "schema": {"enum": list(QUEUES)}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_QUEUE_LIMIT, "default": QUEUE_LIMIT}},
                    ],
                    "responses": {
                        "200": {"description": "How many there are, and the first `limit` of them.",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Queued"}}}},
                        "400": answer("`status` is missing or not one of those listed, or `limit` is out of range."),
                        **common,
                    },
                },
            },
            "/api/articles/{id}": {
                "delete": {
                    "operationId": "deleteArticle",
                    "summary": "Remove an article from the store and every feed",
                    "parameters": [{
                        "name": "id", "in": "path", "required": True,
                        "schema": {"type": "string", "minLength": 1},
                        "example": example["id"],
                        "description": "The article's id (percent-encoded in the URL).",
                    }],
                    "responses": {
                        "200": {"description": "Deleted.",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Deleted"}}}},
                        "404": answer("No article has this id."),
                        **common,
                    },
                },
            },
            "/api/views": {
                "post": {
                    "operationId": "recordViews",
                    "summary": "Record reads of articles, for the hot lists",
                    "description": "All events are validated first, and every id must name a stored article; "
                                   "if any event is rejected the answer is 422 and nothing is recorded.",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {
                            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/ReadEvent"}},
                            "example": [{"id": example["id"], "count": 3}, {"id": example["id"], "at": "2024-04-04 17:00:00"}],
                        }},
                    },
                    "responses": {
                        "200": {"description": "Recorded.",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Recorded"}}}},
                        **with_body,
                        "413": answer(f"The body is larger than {api.max_body_bytes} bytes (api.max_body_bytes)."),
                    },
                },
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "The OpenAPI document.",
                                          "content": {"application/json": {"schema": {"type": "object"}}}}},
                },
            },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "The token configured as api.token (or FEEDS_API_TOKEN)."},
            },
            "schemas": {
                "Article": {**ARTICLE.json_schema(api), "example": example},
                "ReadEvent": READ_EVENT.json_schema(api),
                "Results": {
                    "type": "object",
                    "required": ["results"],
                    "properties": {
                        "results": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id", "result", "status", "guid"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "result": {"enum": ["created", "updated", "unchanged", "scheduled"],
                                               "description": "scheduled: stored, new or changed, and public at publishes_at."},
                                    "status": {"enum": ["published", "scheduled", "expired"],
                                               "description": "Whether it is in the public outputs now, waits for its "
                                                              "time, or is past its expires."},
                                    "publishes_at": {"type": "string", "format": "date-time",
                                                     "description": "When a scheduled article becomes public."},
                                    "guid": {"type": "string", "description": "The article's guid in every feed."},
                                },
                            },
                            "description": "One entry per article, in the order sent.",
                        },
                    },
                },
                "Deleted": {
                    "type": "object",
                    "required": ["id", "result"],
                    "properties": {"id": {"type": "string"}, "result": {"const": "deleted"}},
                },
                "Recorded": {
                    "type": "object",
                    "required": ["recorded", "not_public"],
                    "properties": {
                        "recorded": {"type": "integer", "minimum": 0, "description": "Events recorded."},
                        "not_public": {"type": "integer", "minimum": 0,
                                       "description": "Events of articles not public (scheduled or expired): not counted, "
                                                      "a hot list never ranks such an article."},
                    },
                },
                "Queued": {
                    "type": "object",
                    "required": ["status", "total", "articles"],
                    "properties": {
                        "status": {"enum": list(QUEUES)},
                        "total": {"type": "integer", "minimum": 0, "description": "How many articles have this status."},
                        "articles": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id", "title", "url", "category", "published", "expires", "guid"],
                                "properties": {
                                    "id": {"type": "string"}, "title": {"type": "string"}, "url": {"type": "string"},
                                    "category": {"type": "string"},
                                    "published": {"type": "string", "format": "date-time"},
                                    "expires": {"type": ["string", "null"], "format": "date-time"},
                                    "guid": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Rejected": {
                    "type": "object",
                    "required": ["error", "errors"],
                    "properties": {
                        "error": {"type": "string", "examples": ["2 of 3 articles were rejected; nothing was stored"]},
                        "errors": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["index", "field", "message"],
                                "properties": {
                                    "index": {"type": "integer", "minimum": 0,
                                              "description": "The item's place in the array sent (0 for a single object)."},
                                    "id": {"type": "string", "description": "The item's id, when it has a readable one."},
                                    "field": {"type": "string", "description": 'The field, e.g. "title" or "source.name"; "" for the whole item.'},
                                    "message": {"type": "string", "examples": ["title is empty", 'published: cannot read "not a date"']},
                                },
                            },
                        },
                    },
                },
            },
        },
    }

