"""The write API: upserts, deletes and reads, all or nothing; auth; every error as JSON; the OpenAPI document.

Runs on SQLite, and on PostgreSQL too when FEEDS_TEST_DATABASE_URL names one
(the ``settings`` fixture is overridden below to follow ``database_url``).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import feedparser
import hypothesis
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode

from feeds import create_app
from feeds.api import openapi_document
from feeds.validate import MAX_DEPTH
from feeds.config import Settings
from feeds.validate import article_from_dict
from tests.conftest import article, make_settings

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GUID = "tag:news.example.cn,2024:article:"
SEED_ID = "20240404-0001"


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The shared ``settings``, on every configured database: atomicity is a database matter."""
    return make_settings(database_url, api={"token": TOKEN})


@pytest.fixture
def make_app(database_url: str) -> Iterator[Callable[..., Flask]]:
    """Another app on the same database, with other settings: ``make_app(api={...})``."""
    made: list[Flask] = []

    def make(**sections: dict[str, Any]) -> Flask:
        app = create_app(make_settings(database_url, **sections))
        app.config["TESTING"] = True
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["feeds"].store.close()


def post(client, path: str, body: Any, headers: dict[str, str] | None = None):
    return client.post(path, json=body, headers={**AUTH, **(headers or {})})


def post_raw(client, path: str, data: bytes | str, content_type: str | None = "application/json"):
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post(path, data=data, headers=headers)


def other(number: int, **changes: Any) -> dict[str, Any]:
    """A second, third… article, distinct from the seed."""
    fields = {"id": f"a{number}", "url": f"https://news.example.cn/{number}.html", "title": f"第{number}条新闻"}
    return article(**{**fields, **changes})


def feed_guids(client) -> list[str]:
    response = client.get("/feeds/all.rss")
    assert response.status_code == 200
    parsed = feedparser.parse(response.data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return [entry.id for entry in parsed.entries]


# -- POST /api/articles ------------------------------------------------------------------


def test_one_article_is_created(client, store):
    response = post(client, "/api/articles", article())
    assert response.status_code == 201
    assert response.json == {"results": [{"id": SEED_ID, "result": "created", "status": "published", "guid": GUID + SEED_ID}]}
    stored = store.articles.get(SEED_ID)
    assert stored.title == article()["title"]
    assert stored.category == ("热点", "国内")
    assert stored.published == datetime(2024, 4, 4, 8, 49, 39, tzinfo=timezone.utc)
    assert stored.updated is None
    assert [a.id for a in store.articles.newest(10)] == [SEED_ID]


def test_the_same_article_again_is_unchanged_then_an_edit_is_an_update(client, store):
    assert post(client, "/api/articles", article()).status_code == 201
    again = post(client, "/api/articles", [article()])
    assert again.status_code == 200
    assert again.json["results"] == [{"id": SEED_ID, "result": "unchanged", "status": "published", "guid": GUID + SEED_ID}]
    assert store.articles.get(SEED_ID).updated is None

    edited = post(client, "/api/articles", article(title="新标题"))
    assert edited.status_code == 200
    assert edited.json["results"] == [{"id": SEED_ID, "result": "updated", "status": "published", "guid": GUID + SEED_ID}]
    stored = store.articles.get(SEED_ID)
    assert stored.title == "新标题"
    assert stored.updated is not None and stored.updated > stored.published


def test_a_batch_answers_per_article_in_order_and_201_when_any_is_new(client, store):
    post(client, "/api/articles", article())
    response = post(client, "/api/articles", [other(2), article(), other(3, category="财经")])
    assert response.status_code == 201
    assert [(r["id"], r["result"]) for r in response.json["results"]] == [
        ("a2", "created"), (SEED_ID, "unchanged"), ("a3", "created")]
    assert [r["guid"] for r in response.json["results"]] == [GUID + "a2", GUID + SEED_ID, GUID + "a3"]
    assert {a.id for a in store.articles.newest(10)} == {SEED_ID, "a2", "a3"}
    assert store.articles.get("a3").category == ("财经",)


def test_a_numeric_id_is_read_as_text_and_the_guid_is_quoted(client, store):
    response = post(client, "/api/articles", [other(1, id=42), other(2, id="2024/04 04")])
    assert response.status_code == 422  # a space is not allowed in an id
    response = post(client, "/api/articles", [other(1, id=42), other(2, id="2024/04/04")])
    assert response.status_code == 201
    assert response.json["results"] == [
        {"id": "42", "result": "created", "status": "published", "guid": GUID + "42"},
        {"id": "2024/04/04", "result": "created", "status": "published", "guid": GUID + "2024%2F04%2F04"},
    ]
    assert store.articles.get("42") is not None


def test_an_empty_array_stores_nothing(client, store):
    response = post(client, "/api/articles", [])
    assert response.status_code == 200 and response.json == {"results": []}
    assert store.articles.count() == 0


def test_a_batch_with_bad_articles_stores_none_and_names_each_error(client, store):
    post(client, "/api/articles", article())
    batch = [
        other(2),
        other(3, title="   "),
        article(title="这次编辑不能生效"),
        other(4, published="not a date"),
        "not an article",
        {"url": "https://news.example.cn/5.html", "title": "无编号", "published": "2024-04-04"},
    ]
    response = post(client, "/api/articles", batch)
    assert response.status_code == 422
    assert response.json == {
        "error": "4 of 6 articles were rejected; nothing was stored",
        "errors": [
            {"index": 1, "id": "a3", "field": "title", "message": "title is empty"},
            {"index": 3, "id": "a4", "field": "published", "message": 'published: cannot read "not a date"'},
            {"index": 4, "field": "", "message": "expected a JSON object, got a string"},
            {"index": 5, "field": "id", "message": "id is missing"},
        ],
    }
    # Nothing of the batch was stored: not the new good article, not the edit of the known one.
    assert [a.id for a in store.articles.newest(10)] == [SEED_ID]
    assert store.articles.get("a2") is None
    assert store.articles.get(SEED_ID).title == article()["title"]


def test_every_bad_field_of_one_article_is_listed(client, store):
    response = post(client, "/api/articles", article(url="ftp://x", title="", extra=1))
    assert response.status_code == 422
    assert response.json["error"] == "1 of 1 article was rejected; nothing was stored"
    assert [(e["index"], e["id"], e["field"]) for e in response.json["errors"]] == [
        (0, SEED_ID, "extra"), (0, SEED_ID, "url"), (0, SEED_ID, "title")]
    assert response.json["errors"][1]["message"] == 'url: expected an absolute http(s) URL, got "ftp://x"'
    assert store.articles.count() == 0


def test_too_many_articles(make_app):
    app = make_app(api={"token": TOKEN, "max_articles": 2})
    response = post(app.test_client(), "/api/articles", [other(1), other(2), other(3)])
    assert response.status_code == 413
    assert "at most 2" in response.json["error"] and "3" in response.json["error"]
    assert app.extensions["feeds"].store.articles.count() == 0
    assert post(app.test_client(), "/api/articles", [other(1), other(2)]).status_code == 201


def test_a_body_past_the_byte_limit_is_413_json(make_app):
    app = make_app(api={"token": TOKEN, "max_body_bytes": 2000})
    response = post(app.test_client(), "/api/articles", other(1, content="<p>" + "长" * 2000 + "</p>"))
    assert response.status_code == 413
    assert response.is_json
    assert "2000 bytes" in response.json["error"]
    assert app.extensions["feeds"].store.articles.count() == 0
    assert post(app.test_client(), "/api/articles", other(1)).status_code == 201


# -- bodies that are not what the API reads ---------------------------------------------------


def test_not_json_is_400_with_the_position(client):
    response = post_raw(client, "/api/articles", '{"id": "x",, }')
    assert response.status_code == 400
    assert response.json["error"].startswith("The body is not valid JSON: ")
    assert "at column 12" in response.json["error"]


@pytest.mark.parametrize("data, words", [
    ("", "empty"),
    ("  \n", "empty"),
    (b"\xff\xfe[]", "not UTF-8"),
    ('[{"id": NaN}]', "NaN"),
    ('{"id": "a", "id": "b"}', 'the key "id" appears twice'),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nests deeper"),
    ("[" * 5000 + "]" * 5000, "nests deeper"),
    ('[{"id": 9007199254740993}]', "beyond"),
    ('[{"id": 1e400}]', "too large"),
    ('[{"id": "\\ud800"}]', "U+D800"),
])
def test_unreadable_bodies_are_400(client, store, data, words):
    response = post_raw(client, "/api/articles", data)
    assert response.status_code == 400, response.json
    assert words in response.json["error"]
    assert store.articles.count() == 0


@pytest.mark.parametrize("path, body, words", [
    ("/api/articles", '"an article"', "got a string"),
    ("/api/articles", "42", "got a number"),
    ("/api/articles", "null", "got null"),
    ("/api/views", '{"id": "x"}', "Expected an array of read events, got an object"),
])
def test_the_wrong_top_level_type_is_400(client, path, body, words):
    response = post_raw(client, path, body)
    assert response.status_code == 400
    assert words in response.json["error"]


def test_a_utf8_byte_order_mark_and_a_charset_are_fine(client):
    body = ("\ufeff" + json.dumps(article(), ensure_ascii=False)).encode("utf-8")
    assert post_raw(client, "/api/articles", body, "application/json; charset=UTF-8").status_code == 201


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/json-seq",
                                          "application/json; charset=latin-1"])
def test_a_body_that_is_not_declared_json_is_415(client, store, content_type):
    response = post_raw(client, "/api/articles", json.dumps(article()), content_type)
    assert response.status_code == 415
    assert "application/json" in response.json["error"] or "UTF-8" in response.json["error"]
    assert store.articles.count() == 0


def test_unknown_methods_and_paths_answer_json(client):
    response = client.put("/api/articles", headers=AUTH)
    assert response.status_code == 405 and response.is_json and {"GET", "POST"} <= set(response.headers["Allow"].split(", "))
    response = client.get("/api/nothing-here", headers=AUTH)
    assert response.status_code == 404 and response.is_json


def test_answers_are_not_cached(client):
    assert client.get("/api/openapi.json").headers["Cache-Control"] == "no-store"
    assert post(client, "/api/articles", article()).headers["Cache-Control"] == "no-store"


# -- authorization ---------------------------------------------------------------------------

WRITES = [
    ("post", "/api/articles", [article()]),
    ("post", "/api/views", [{"id": SEED_ID}]),
    ("delete", f"/api/articles/{SEED_ID}", None),
]


def send(client, method: str, path: str, body: Any, headers: dict[str, str]):
    return client.open(path, method=method.upper(), json=body, headers=headers)


@pytest.mark.parametrize("method, path, body", WRITES)
@pytest.mark.parametrize("header", [None, "s3cret", "Basic czNjcmV0", "Bearer", "Bearer ", "Bearer s3cret extra"])
def test_a_missing_or_malformed_authorization_is_401(client, store, method, path, body, header):
    store.articles.upsert([article_from_dict(article(), client.application.extensions["feeds"].settings)])
    response = send(client, method, path, body, {"Authorization": header} if header is not None else {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json["error"]
    assert store.articles.count() == 1 and store.rankings.top(datetime.now(timezone.utc), timedelta(hours=1), 10) == []


@pytest.mark.parametrize("method, path, body", WRITES)
@pytest.mark.parametrize("token", ["wrong", "s3cre", "s3cret2", "S3CRET", "s3crét"])
def test_a_wrong_token_is_403(client, store, method, path, body, token):
    store.articles.upsert([article_from_dict(article(), client.application.extensions["feeds"].settings)])
    response = send(client, method, path, body, {"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.json == {"error": "The API token is wrong."}
    assert store.articles.count() == 1 and store.rankings.top(datetime.now(timezone.utc), timedelta(hours=1), 10) == []


def test_the_scheme_is_case_insensitive(client):
    assert post(client, "/api/articles", article(), {"Authorization": f"bearer {TOKEN}"}).status_code == 201


def test_authorization_comes_before_reading_the_body(client):
    response = client.post("/api/articles", data="{not json", headers={"Content-Type": "text/plain"})
    assert response.status_code == 401


@pytest.mark.parametrize("method, path, body", WRITES)
def test_without_a_configured_token_the_write_api_is_off(make_app, method, path, body):
    client = make_app().test_client()  # make_settings gives no api.token
    for headers in ({}, AUTH, {"Authorization": "Bearer "}):
        response = send(client, method, path, body, headers)
        assert response.status_code == 403
        assert "write API is off" in response.json["error"]
    assert client.get("/api/openapi.json").status_code == 200


# -- DELETE /api/articles/<id> ---------------------------------------------------------------


def test_delete_removes_the_article_from_the_store_and_the_feeds(client, store):
    post(client, "/api/articles", [article(), other(2)])
    assert set(feed_guids(client)) == {GUID + SEED_ID, GUID + "a2"}

    response = client.delete(f"/api/articles/{SEED_ID}", headers=AUTH)
    assert response.status_code == 200
    assert response.json == {"id": SEED_ID, "result": "deleted"}
    assert store.articles.get(SEED_ID) is None
    assert feed_guids(client) == [GUID + "a2"]

    again = client.delete(f"/api/articles/{SEED_ID}", headers=AUTH)
    assert again.status_code == 404
    assert again.json == {"error": f'No article "{SEED_ID}" is stored.'}


def test_delete_removes_the_reads_too(client, store):
    post(client, "/api/articles", [article(), other(2)])
    assert post(client, "/api/views", [{"id": SEED_ID, "count": 5}, {"id": "a2"}]).status_code == 200
    assert client.delete(f"/api/articles/{SEED_ID}", headers=AUTH).status_code == 200
    ranked = store.rankings.top(datetime.now(timezone.utc), timedelta(hours=24), 10)
    assert [(r.article.id, r.reads) for r in ranked] == [("a2", 1)]


@pytest.mark.parametrize("article_id, path", [
    ("2024/04/0001", "2024/04/0001"),
    ("2024/04/0001", "2024%2F04%2F0001"),
    ("https://old.example.cn//1", "https://old.example.cn//1"),
    ("新闻-1", "%E6%96%B0%E9%97%BB-1"),
])
def test_delete_takes_ids_with_slashes_and_any_script(client, store, article_id, path):
    assert post(client, "/api/articles", other(1, id=article_id)).status_code == 201
    response = client.delete(f"/api/articles/{path}", headers=AUTH)
    assert response.status_code == 200, response.json
    assert response.json["id"] == article_id
    assert store.articles.count() == 0


def test_delete_of_an_unknown_id_is_404(client):
    response = client.delete("/api/articles/nothing", headers=AUTH)
    assert response.status_code == 404 and response.is_json


# -- POST /api/views -------------------------------------------------------------------------


def reads(store, window: timedelta = timedelta(hours=24)) -> list[tuple[str, int]]:
    return [(r.article.id, r.reads) for r in store.rankings.top(datetime.now(timezone.utc), window, 10)]


def test_views_are_recorded(client, store):
    post(client, "/api/articles", [article(), other(2)])
    two_hours_ago = (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat()
    two_days_ago = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
    events = [
        {"id": SEED_ID},
        {"id": SEED_ID, "count": 3},
        {"id": "a2", "count": 2, "at": two_hours_ago},
        {"id": "a2", "count": 100, "at": two_days_ago},
    ]
    response = post(client, "/api/views", events)
    assert response.status_code == 200
    assert response.json == {"recorded": 4, "not_public": 0}
    assert reads(store) == [(SEED_ID, 4), ("a2", 2)]
    assert reads(store, timedelta(hours=1)) == [(SEED_ID, 4)]
    assert reads(store, timedelta(days=7)) == [("a2", 102), (SEED_ID, 4)]


def test_an_empty_array_of_views_records_nothing(client, store):
    response = post(client, "/api/views", [])
    assert response.status_code == 200 and response.json == {"recorded": 0, "not_public": 0}


@pytest.mark.parametrize("event, field, message", [
    ({"id": "nope"}, "id", 'id: no article "nope" is stored'),
    ({"id": SEED_ID, "count": 0}, "count", "count must be positive, got 0"),
    ({"id": SEED_ID, "count": -3}, "count", "count must be positive, got -3"),
    ({"id": SEED_ID, "count": 1.5}, "count", "count: expected a whole number"),
    ({"id": SEED_ID, "count": "3"}, "count", "count: expected a whole number"),
    ({"id": SEED_ID, "count": True}, "count", "count: expected a whole number"),
    ({"id": SEED_ID, "count": None}, "count", "count: expected a whole number"),
    ({"id": SEED_ID, "at": "yesterday-ish"}, "at", 'at: cannot read "yesterday-ish"'),
    ({"count": 2}, "id", "id is missing"),
    ({"id": SEED_ID, "when": "now"}, "when", "when: unknown field"),
])
def test_a_bad_event_rejects_the_whole_request(client, store, event, field, message):
    post(client, "/api/articles", article())
    response = post(client, "/api/views", [{"id": SEED_ID, "count": 7}, event, {"id": SEED_ID}])
    assert response.status_code == 422
    assert response.json["error"] == "1 of 3 read events was rejected; nothing was recorded"
    [error] = response.json["errors"]
    assert error["index"] == 1 and error["field"] == field
    assert error["message"].startswith(message)
    assert error.get("id") == event.get("id")
    assert reads(store) == []


def test_every_bad_event_is_listed_in_order(client, store):
    post(client, "/api/articles", article())
    response = post(client, "/api/views", [{"id": "gone"}, {"id": SEED_ID}, {"id": SEED_ID, "count": 0}, 5])
    assert response.status_code == 422
    assert response.json == {
        "error": "3 of 4 read events were rejected; nothing was recorded",
        "errors": [
            {"index": 0, "id": "gone", "field": "id", "message": 'id: no article "gone" is stored'},
            {"index": 2, "id": SEED_ID, "field": "count", "message": "count must be positive, got 0"},
            {"index": 3, "field": "", "message": "expected a JSON object, got a number"},
        ],
    }
    assert reads(store) == []


# -- values the store or a feed could not keep: rejected at the door -------------------------


@pytest.mark.parametrize("field", ["url", "image", "source_url"])
def test_control_characters_in_a_url_are_rejected(client, store, field):
    response = post(client, "/api/articles", article(**{field: "https://news.example.cn/a\x00b\x01c.html"}))
    assert response.status_code == 422
    assert response.json["errors"][0]["message"] == f"{field}: must not contain spaces or control characters"
    assert client.get("/feeds/all.rss").status_code == 200 and store.articles.count() == 0


def test_a_category_name_holding_a_slash_is_rejected(client, store):
    response = post(client, "/api/articles", article(category=["外汇/期货"]))
    assert response.status_code == 422
    assert response.json["errors"][0] == {"index": 0, "id": SEED_ID, "field": "category",
                                          "message": 'category: a name in the list may not hold "/" or ">"'}


def test_huge_read_counts_are_rejected(client, store):
    post(client, "/api/articles", article())
    response = post(client, "/api/views", [{"id": SEED_ID, "count": 2**53 - 1}] * 1100)
    assert response.status_code == 422
    assert response.json["errors"][0]["message"] == f"count must be at most 1000000 in one event, got {2**53 - 1}"
    assert reads(store) == []


def test_an_overlong_category_is_rejected(client, store):
    response = post(client, "/api/articles", article(category="长" * 1200))
    assert response.status_code == 422
    assert response.json["errors"][0]["message"] == "category: a name is too long (1200 characters, at most 100)"


def test_ids_holding_nul_are_never_a_500(client, store):
    response = post(client, "/api/views", [{"id": "a\x00b"}])
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "id"
    assert client.delete("/api/articles/a%00b", headers=AUTH).status_code == 404


# -- GET /api/openapi.json ----------------------------------------------------------------


def test_the_openapi_document_needs_no_token(client, settings):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.is_json
    document = response.json
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearerAuth"]["description"]}
    assert document["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/api/openapi.json"]["get"]["security"] == []
    batch = document["paths"]["/api/articles"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
    assert batch["maxItems"] == settings.api.max_articles
    assert document == openapi_document(settings)


def test_the_openapi_document_is_valid_openapi_3_1(settings):
    schemathesis.openapi.from_dict(openapi_document(settings)).validate()  # against the OpenAPI 3.1 meta-schema


def test_every_api_route_is_documented(app):
    documented = {
        (path, method.upper())
        for path, operations in openapi_document(app.extensions["feeds"].settings)["paths"].items()
        for method in operations
    }
    routed = {
        (rule.rule.replace("<path:article_id>", "{id}"), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routed == documented


def test_the_documented_examples_are_accepted(client, settings):
    document = openapi_document(settings)
    content = document["paths"]["/api/articles"]["post"]["requestBody"]["content"]["application/json"]
    for example in content["examples"].values():
        assert post(client, "/api/articles", example["value"]).status_code in (200, 201)
    views = document["paths"]["/api/views"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert post(client, "/api/views", views).status_code == 200


# -- the API against its own OpenAPI document (schemathesis) ---------------------------------

OPERATIONS = [
    ("/api/articles", "POST", GenerationMode.POSITIVE),
    ("/api/articles", "POST", GenerationMode.NEGATIVE),
    ("/api/articles/{id}", "DELETE", GenerationMode.POSITIVE),
    ("/api/articles/{id}", "DELETE", GenerationMode.NEGATIVE),
    ("/api/views", "POST", GenerationMode.POSITIVE),
    ("/api/views", "POST", GenerationMode.NEGATIVE),
    ("/api/openapi.json", "GET", GenerationMode.POSITIVE),
]
# Every built-in check but positive_data_acceptance: JSON Schema cannot say which date
# texts are readable, so schema-valid articles may rightly be rejected (422).
FUZZ_CONFIG = {
    "checks": {
        "positive_data_acceptance": {"enabled": False},
        "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "405", "413", "415", "422"]},
    },
}


@pytest.fixture
def fuzz_app(sqlite_url: str) -> Iterator[Flask]:
    """An app on SQLite holding the seed article, so deletes and reads can succeed."""
    app = create_app(make_settings(sqlite_url, api={"token": TOKEN}))
    services = app.extensions["feeds"]
    services.store.articles.upsert([article_from_dict(article(), services.settings)])
    yield app
    services.store.close()


@pytest.mark.parametrize("path, method, mode", OPERATIONS, ids=lambda v: getattr(v, "value", v))
def test_the_api_keeps_to_its_openapi_document(fuzz_app, path, method, mode):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app, config=schemathesis.Config.from_dict(FUZZ_CONFIG))
    operation = schema[path][method]
    seen: set[int] = set()

    @hypothesis.settings(max_examples=40, derandomize=True, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=AUTH)
        seen.add(response.status_code)

    check()
    assert seen and max(seen) < 500
