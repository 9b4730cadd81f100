"""One place decides what a good article is; every error names its field."""
from __future__ import annotations

import pytest

from feeds.config import load_settings
from feeds.errors import InvalidInput
from feeds.model import Source
from feeds.validate import article_from_dict
from tests.conftest import article

SETTINGS = load_settings(overrides={"api": {"max_title_chars": 50}}, environ={})


def errors(raw) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        article_from_dict(raw, SETTINGS)
    return [(e.field, e.message) for e in caught.value.errors]


def test_the_seed_article():
    parsed = article_from_dict(article(), SETTINGS)
    assert parsed.category == ("热点", "国内")
    assert parsed.source == Source("互联网")
    assert parsed.summary.startswith("中工网北京4月2日电") and len(parsed.summary) <= 144
    assert parsed.published.utcoffset().total_seconds() == 8 * 3600


@pytest.mark.parametrize("category, expected", [
    ("热点/国内", ("热点", "国内")), (["热点", "国内"], ("热点", "国内")), ("主页 > 热点 > 国内", ("热点", "国内")),
    (" 热点 / 国内 ", ("热点", "国内")), ("热点", ("热点",)), (None, ()),
])
def test_category_forms(category, expected):
    assert article_from_dict(article(category=category), SETTINGS).category == expected


def test_source_forms():
    assert article_from_dict(article(source={"name": "新华社", "url": "https://www.news.cn/"}), SETTINGS).source == Source(
        "新华社", url="https://www.news.cn/")
    assert article_from_dict(article(source="新华社", source_url="https://www.news.cn/"), SETTINGS).source.url == "https://www.news.cn/"
    assert errors(article(source={"url": "x"})) == [
        ("source.name", "source.name is missing"), ("source.url", 'source.url: expected an absolute http(s) URL, got "x"')]


def test_every_bad_field_is_named():
    raw = article(id="", url="not-a-url", title="   ", published="not a date", updated="2024-99-01", image="javascript:x",
                  tags=[1], summary=5, extra=True)
    assert errors(raw) == [
        ("extra", "extra: unknown field (known: id, url, title, summary, content, author, source, source_url, category, tags, "
                  "image, published, updated, expires)"),
        ("id", "id is empty"),
        ("url", 'url: expected an absolute http(s) URL, got "not-a-url"'),
        ("title", "title is empty"),
        ("summary", "summary: expected a string, got a number"),
        ("tags", "tags: expected a string or a list of strings"),
        ("image", 'image: expected an absolute http(s) URL, got "javascript:x"'),
        ("published", 'published: cannot read "not a date"'),
        ("updated", 'updated: cannot read "2024-99-01"'),
    ]


def test_limits_come_from_the_settings():
    assert errors(article(title="长" * 51)) == [("title", "title is too long (51 characters, at most 50)")]


def test_missing_required_fields():
    assert errors({}) == [("id", "id is missing"), ("url", "url is missing"), ("title", "title is missing"),
                          ("published", "published is missing")]


def test_ids_with_spaces_are_rejected_and_numbers_accepted():
    assert errors(article(id="a b"))[0][0] == "id"
    assert article_from_dict(article(id=123), SETTINGS).id == "123"


def test_text_is_cleaned_at_the_door():
    parsed = article_from_dict(article(title="标题\x00\x1f 😀𠀀", content="<p>正文\x0b<script>x</script></p>", tags="工会,纺织、劳模"),
                               SETTINGS)
    assert parsed.title == "标题 😀𠀀"
    assert parsed.content == "<p>正文</p>"
    assert parsed.tags == ("工会", "纺织", "劳模")


def test_an_updated_time_before_publication_is_dropped():
    assert article_from_dict(article(updated="2024-01-01 00:00:00"), SETTINGS).updated is None
