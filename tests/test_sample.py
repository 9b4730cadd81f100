"""The bundled sample, and `feeds serve --demo` loading it into an empty database."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import feedparser
import pytest

from feeds.ingest import load_sample


@pytest.fixture
def sample(app, store, settings):
    articles, reads = load_sample(store, settings)
    return articles, reads


def test_the_sample_loads_without_a_rejection(sample):
    articles, reads = sample
    assert articles.rejected == [] and reads.rejected == []
    assert articles.created >= 200 and reads.recorded >= 1000


def test_the_sample_has_what_the_product_shows(sample, store):
    stored = store.articles.newest(1000)
    assert len(stored) >= 200
    assert len({a.source.name for a in stored if a.source}) >= 6
    assert max(len(a.category) for a in stored) >= 3
    days = {a.published.astimezone(timezone(timedelta(hours=8))).date() for a in stored}
    assert max(days) - min(days) >= timedelta(days=28)
    assert sum(1 for a in stored if a.image) > 50 and all(a.summary for a in stored)
    assert Counter(a.category[0] for a in stored if a.category).most_common(1)[0][1] < len(stored) / 2


@pytest.mark.parametrize("window", ["daily", "weekly"])
def test_the_demo_hot_lists_are_full_right_after_loading(sample, client, window):
    parsed = feedparser.parse(client.get(f"/feeds/hot/{window}.rss").data)
    assert parsed.bozo == 0
    assert len(parsed.entries) == 10
    assert [e.title.split(". ", 1)[0] for e in parsed.entries] == [str(n) for n in range(1, 11)]


def test_daily_and_weekly_lists_differ(sample, client):
    titles = {window: [e.title.split(". ", 1)[1] for e in feedparser.parse(client.get(f"/feeds/hot/{window}.rss").data).entries]
              for window in ("daily", "weekly")}
    assert titles["daily"] != titles["weekly"]


def test_demo_loads_an_empty_database_once(runner, store):
    from feeds.cli import _load_demo

    settings = runner.app.extensions["feeds"].settings
    _load_demo(store, settings)
    count = store.articles.count()
    assert count >= 200
    _load_demo(store, settings)
    assert store.articles.count() == count
    assert store.reads.any_since(datetime.now(timezone.utc) - timedelta(hours=24))
