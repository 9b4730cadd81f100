"""The OpenAPI document and the validator agree: every documented field is accepted, every accepted
field is documented, what is required is required, and every documented limit is where the
validator puts it, with limits from config.

The document is read as a client reads it; the validator is asked as the API and the import
ask it. Both are made from one declaration (``feeds.validate``), and these tests are what
keeps that true.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from feeds.api import openapi_document
from feeds.config import load_settings
from feeds.errors import InvalidInput
from feeds.validate import article_from_dict, event_from_dict

SETTINGS = load_settings(overrides={"api": {"max_title_chars": 30, "max_summary_chars": 40, "max_content_chars": 50}}, environ={})
SCHEMAS = openapi_document(SETTINGS)["components"]["schemas"]
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "Article": lambda raw: article_from_dict(raw, SETTINGS),
    "ReadEvent": lambda raw: event_from_dict(raw, SETTINGS, NOW),
}
LIMITS = ("maxLength", "maxItems", "maximum", "minimum")


def problems(shape: str, raw: dict[str, Any]) -> list[tuple[str, str]]:
    """The (field, message) of each error the validator finds; none when it accepts ``raw``."""
    try:
        VALIDATORS[shape](raw)
    except InvalidInput as exc:
        return [(error.field, error.message) for error in exc.errors]
    return []


def example(schema: dict[str, Any]) -> Any:
    assert schema.get("examples"), f"no example documented: {schema}"
    return schema["examples"][0]


def minimal(schema: dict[str, Any]) -> dict[str, Any]:
    """An object of the documented required fields, each its documented example."""
    return {name: example(schema["properties"][name]) for name in schema["required"]}


def places(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]]:
    """Every place a value goes, as (path, the schema of the value there, the object schema holding it);
    "[]" in a path is an item of an array."""
    for name, prop in schema["properties"].items():
        for variant in prop.get("oneOf", [prop]):
            if variant.get("type") == "object":
                yield from places(variant, (*path, name))
            else:
                yield (*path, name), variant, schema
                if "items" in variant:
                    yield (*path, name, "[]"), variant["items"], schema


def placed(shape: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The shape's minimal object with ``value`` at ``path`` (nested objects made minimal too)."""
    raw = minimal(SCHEMAS[shape])
    holder, schema = raw, SCHEMAS[shape]
    *objects, name = [step for step in path if step != "[]"]
    for step in objects:
        nested = next(v for v in schema["properties"][step]["oneOf"] if v.get("type") == "object")
        holder[step] = minimal(nested)
        holder, schema = holder[step], nested
    holder[name] = [value] if path[-1] == "[]" else value
    return raw


def sized(like: Any, length: int) -> str:
    """A string of ``length`` characters in the form of the example ``like`` (a URL stays a URL)."""
    if isinstance(like, str) and like.startswith("http"):
        return like + "?" + "a" * (length - len(like) - 1)
    return "字" * length if isinstance(like, str) and not like.isascii() else "a" * length


def test_every_field_has_an_example_and_objects_take_nothing_else():
    for shape in VALIDATORS:
        for path, _, holder in places(SCHEMAS[shape]):
            assert holder["additionalProperties"] is False
            example(holder["properties"][path[-2] if path[-1] == "[]" else path[-1]])


@pytest.mark.parametrize("shape, name", [(shape, name) for shape in VALIDATORS for name in SCHEMAS[shape]["properties"]])
def test_every_documented_field_is_accepted(shape, name):
    schema = SCHEMAS[shape]
    assert problems(shape, {**minimal(schema), name: example(schema["properties"][name])}) == []


@pytest.mark.parametrize("shape", VALIDATORS)
def test_every_accepted_field_is_documented(shape):
    (field, message), = problems(shape, {**minimal(SCHEMAS[shape]), "no_such_field": 1})
    known = re.search(r"\(known: (.*)\)", message).group(1).split(", ")
    assert field == "no_such_field"
    assert known == list(SCHEMAS[shape]["properties"])


@pytest.mark.parametrize("shape, name", [(shape, name) for shape in VALIDATORS for name in SCHEMAS[shape]["properties"]])
def test_a_field_is_required_exactly_when_documented_so(shape, name):
    schema = SCHEMAS[shape]
    without = {key: value for key, value in minimal(schema).items() if key != name}
    assert (problems(shape, without) == [(name, f"{name} is missing")]) == (name in schema["required"])


def limits() -> list[Any]:
    return list(_limits())


def _limits() -> Iterator[Any]:
    for shape in VALIDATORS:
        for path, schema, _ in places(SCHEMAS[shape]):
            for keyword in LIMITS:
                if keyword in schema:
                    yield pytest.param(shape, path, keyword, schema, id=f"{shape}.{'.'.join(path)}.{keyword}")


@pytest.mark.parametrize("shape, path, keyword, schema", limits())
def test_every_documented_limit_is_the_validators(shape, path, keyword, schema):
    limit = schema[keyword]
    field = ".".join(step for step in path if step != "[]")
    like = schema.get("examples", [None])[0] or "热点"
    if keyword == "maxLength":
        within, beyond = sized(like, limit), sized(like, limit + 1)
    elif keyword == "maxItems":
        within, beyond = ["热点"] * limit, ["热点"] * (limit + 1)
    elif keyword == "maximum":
        within, beyond = limit, limit + 1
    else:
        within, beyond = limit, limit - 1
    assert problems(shape, placed(shape, path, within)) == []
    assert [found for found, _ in problems(shape, placed(shape, path, beyond))] == [field]


def test_the_limits_come_from_config():
    article = SCHEMAS["Article"]["properties"]
    assert article["title"]["maxLength"] == 30 and article["summary"]["maxLength"] == 40
    assert article["content"]["maxLength"] == 50
    assert SCHEMAS["Article"]["properties"]["source"]["oneOf"][1]["properties"]["name"]["maxLength"] == 30


@pytest.mark.parametrize("shape", VALIDATORS)
def test_no_limit_is_left_undocumented(shape):
    """A long value where the document names no length limit is not refused for its length."""
    for path, schema, _ in places(SCHEMAS[shape]):
        types = schema.get("type", [])
        if "string" in types and "array" not in types and "maxLength" not in schema:
            found = problems(shape, placed(shape, path, sized(schema.get("examples", [""])[0], 10_000)))
            assert not [message for _, message in found if "long" in message or "at most" in message], (path, found)
