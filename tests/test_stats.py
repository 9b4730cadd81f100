"""Poll statistics: who polls each feed, per day; /admin/stats, its JSON and `feeds stats`."""
from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from feeds import create_app
from feeds.config import Settings
from feeds.polls import PollCounter, parse_user_agent
from feeds.text import display_width
from feeds.model import FeedDay
from feeds.store.schema import stats_aggregators, stats_clients, stats_daily, stats_pollers, stats_salts
from tests.conftest import REDIS_URL, Runner, article, make_settings

BEIJING = make_settings("sqlite://").tz
DAY = datetime(2024, 4, 4, 12, 0, tzinfo=BEIJING)
FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; {} subscribers; like FeedFetcher-Google)"
READER = "NetNewsWire (RSS Reader; https://netnewswire.com/)"


@pytest.mark.parametrize("user_agent, client, subscribers", [
    ("Feedly/1.0 (+http://www.feedly.com/fetcher.html; 123 subscribers; like FeedFetcher-Google)", "Feedly", 123),
    ("Inoreader/1.0 (+http://www.inoreader.com/feed-fetcher; 45 subscribers; )", "Inoreader", 45),
    ("Mozilla/5.0 (compatible; theoldreader.com; 12 subscribers; feed-id=5f0b0e8a1c2d3e4f)", "theoldreader.com", 12),
    ("NewsBlur Feed Fetcher - 31 subscribers - http://www.newsblur.com/site/6093/ (Mozilla/5.0 (Macintosh))", "NewsBlur", 31),
    ("Feedbin feed-id:1373711 - 42 subscribers", "Feedbin", 42),
    ("Feed Wrangler/1.0 (1 reader; http://feedwrangler.net)", "Feed Wrangler", 1),
    ("Mozilla/5.0 (compatible; Miniflux/2.0.50; +https://miniflux.app)", "Miniflux", None),
    ("NetNewsWire (RSS Reader; https://netnewswire.com/)", "NetNewsWire", None),
    ("newsboat/2.30 (Linux x86_64)", "newsboat", None),
    ("Tiny Tiny RSS/22.08 (Unsupported) (https://tt-rss.org/)", "Tiny Tiny RSS", None),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0", "Thunderbird", None),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "Chrome", None),
    ("", "(none)", None),
])
def test_user_agents(user_agent: str, client: str, subscribers: int | None) -> None:
    assert parse_user_agent(user_agent) == (client, subscribers)


@pytest.fixture
def counter(database_url: str) -> Iterator[PollCounter]:
    app = create_app(make_settings(database_url))
    yield app.extensions["feeds"].stats
    app.extensions["feeds"].store.close()


def days(counter: PollCounter, first: date = DAY.date(), last: date = DAY.date()) -> dict[tuple[date, str], FeedDay]:
    counter.flush(DAY)
    return {(row.day, row.feed): row for row in counter.polls.feed_days(first, last)}


def test_an_aggregator_counts_once_a_day_with_its_largest_report(counter: PollCounter) -> None:
    for count in (100, 123, 110):
        counter.record("all", "192.0.2.1", FEEDLY.format(count), 200, DAY)
    counter.flush(DAY)  # a second flush, as another instance's, merges by the largest too
    counter.record("all", "192.0.2.9", FEEDLY.format(120), 304, DAY)
    counter.record("all", "192.0.2.2", "Inoreader/1.0 (+http://www.inoreader.com/feed-fetcher; 45 subscribers; )", 200, DAY)
    row = days(counter)[DAY.date(), "all"]
    assert (row.reported, row.pollers, row.requests, row.not_modified) == (168, 0, 5, 1)


def test_distinct_pollers_are_address_and_user_agent(counter: PollCounter) -> None:
    counter.record("all", "192.0.2.1", READER, 200, DAY)
    counter.record("all", "192.0.2.1", READER, 304, DAY)  # the same poller again
    counter.record("all", "192.0.2.1", "newsboat/2.30", 200, DAY)  # same address, another reader: another person
    counter.record("all", "192.0.2.2", READER, 200, DAY)
    counter.record("source/xinhuashe", "192.0.2.1", READER, 200, DAY)  # another feed
    found = days(counter)
    assert found[DAY.date(), "all"].pollers == 3
    assert found[DAY.date(), "source/xinhuashe"].pollers == 1


def test_days_are_the_sites(counter: PollCounter) -> None:
    last_second = datetime(2024, 4, 4, 15, 59, 59, tzinfo=timezone.utc)  # 23:59:59 in Beijing
    counter.record("all", "192.0.2.1", READER, 200, last_second)
    counter.record("all", "192.0.2.1", READER, 200, last_second + timedelta(seconds=1))
    counter.record("all", "192.0.2.1", READER, 200, datetime(2024, 4, 5, 15, 59, tzinfo=timezone.utc))
    found = days(counter, date(2024, 4, 4), date(2024, 4, 5))
    assert {day: row.requests for (day, _), row in found.items()} == {date(2024, 4, 4): 1, date(2024, 4, 5): 2}


def all_rows(counter: PollCounter) -> list[tuple[Any, ...]]:
    with counter.polls.db.engine.connect() as conn:
        return [tuple(row) for table in (stats_daily, stats_pollers, stats_aggregators, stats_clients)
                for row in conn.execute(sa.select(table))]


def test_no_address_is_stored(counter: PollCounter) -> None:
    for address in ("203.0.113.77", "2001:db8::77"):
        counter.record("all", address, READER, 200, DAY)
    counter.flush(DAY)
    rows = all_rows(counter)
    assert any(row for row in rows)
    stored = " ".join(str(value) for row in rows for value in row)
    assert "203.0.113" not in stored and "2001:db8" not in stored and "RSS Reader" not in stored


def test_finished_days_keep_a_count_not_hashes_and_old_days_go(counter: PollCounter) -> None:
    counter.record("all", "192.0.2.1", READER, 200, DAY)
    counter.record("all", "192.0.2.2", READER, 200, DAY)
    counter.flush(DAY)
    counter.record("all", "192.0.2.1", READER, 200, DAY + timedelta(days=2))
    counter.flush(DAY + timedelta(days=2))  # DAY is two days ago now: its hashes become a count
    with counter.polls.db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(stats_pollers).where(stats_pollers.c.day == DAY.date())) == 0
    assert days(counter)[DAY.date(), "all"].pollers == 2
    later = DAY + timedelta(days=2 + counter.settings.stats.retention_days)  # DAY + 2 is the oldest day too old
    counter.record("all", "192.0.2.1", READER, 200, later)
    counter.flush(later)
    assert {row[0] for row in all_rows(counter)} == {later.date()}


def test_counts_survive_a_flush_and_a_new_app(settings: Settings, app: Flask) -> None:
    client = app.test_client()
    client.post("/api/articles", json=article(), headers={"Authorization": "Bearer s3cret"})
    first = client.get("/feeds/all.rss", headers={"User-Agent": READER})
    client.get("/feeds/all.atom", headers={"User-Agent": READER, "If-None-Match": first.headers["ETag"]})  # another etag: 200
    client.get("/feeds/all.rss", headers={"User-Agent": READER, "If-None-Match": first.headers["ETag"]})
    client.get("/feeds/nothing.rss", headers={"User-Agent": READER})  # no such feed: not counted
    app.extensions["feeds"].stats.close()
    again = create_app(settings)
    body = again.test_client().get("/admin/stats.json", headers={"Authorization": "Bearer s3cret"}).get_json()
    again.extensions["feeds"].store.close()
    (feed,) = body["feeds"]
    assert (feed["feed"], feed["requests"], feed["not_modified"], feed["subscribers"]) == ("all", 3, 1, 1)
    assert feed["not_modified_share"] == pytest.approx(1 / 3, abs=1e-3)


def polled_by_two_instances(database_url: str, cache_url: str) -> int:
    apps = [create_app(make_settings(database_url, cache={"url": cache_url})) for _ in range(2)]
    for app in apps:
        app.extensions["feeds"].stats.record("all", "192.0.2.1", READER, 200)
        app.extensions["feeds"].stats.record("all", "192.0.2.2", READER, 200)
        app.extensions["feeds"].stats.flush()
    today = datetime.now(BEIJING).date()
    (row,) = apps[1].extensions["feeds"].stats.polls.feed_days(today, today)
    for app in apps:
        app.extensions["feeds"].store.close()
    return row.pollers


@pytest.mark.parametrize("with_redis", [False, pytest.param(True, marks=pytest.mark.skipif(
    not REDIS_URL, reason="FEEDS_TEST_REDIS_URL is not set; the Redis tests need it"))])
def test_instances_hash_a_poller_alike_with_or_without_redis(database_url: str, with_redis: bool) -> None:
    assert polled_by_two_instances(database_url, REDIS_URL if with_redis else "") == 2  # the day's salt is in the database


def test_a_days_salt_goes_when_the_day_is_closed(store) -> None:
    today = datetime.now(BEIJING).date()
    old, yesterday = today - timedelta(days=2), today - timedelta(days=1)
    salts = {day: store.polls.salt(day) for day in (old, yesterday, today)}
    assert len(set(salts.values())) == 3 and store.polls.salt(today) == salts[today]
    store.polls.add([], keep_from=today - timedelta(days=90), open_from=yesterday)
    with store.db.engine.connect() as conn:
        kept = {row.day for row in conn.execute(sa.select(stats_salts))}
    assert kept == {yesterday, today}


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"editor:{password}".encode()).decode()}


@pytest.mark.parametrize("path", ["/admin/stats", "/admin/stats.json"])
def test_stats_need_the_token(client, path: str) -> None:
    refused = client.get(path)
    assert refused.status_code == 401
    assert any(value.startswith("Basic ") for value in refused.headers.getlist("WWW-Authenticate"))
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get(path, headers=basic("wrong")).status_code == 403
    assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    accepted = client.get(path, headers=basic("s3cret"))
    assert accepted.status_code == 200 and "no-store" in accepted.headers["Cache-Control"]


def test_stats_are_off_without_a_token(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url))
    assert app.test_client().get("/admin/stats", headers=basic("")).status_code == 403
    app.extensions["feeds"].store.close()


@pytest.fixture
def polled(app: Flask) -> Flask:
    client = app.test_client()
    client.post("/api/articles", json=[article(), article(id="2", url="https://news.example.cn/2.html", source="新华社")],
                headers={"Authorization": "Bearer s3cret"})
    for user_agent in (FEEDLY.format(7), READER, "newsboat/2.30", "newsboat/2.30"):
        client.get("/feeds/all.rss", headers={"User-Agent": user_agent})
    client.get("/feeds/source/xinhuashe.json", headers={"User-Agent": READER})
    return app


def test_json_shape(polled: Flask) -> None:
    body = polled.test_client().get("/admin/stats.json", headers={"Authorization": "Bearer s3cret"}).get_json()
    assert body["today"] == datetime.now(BEIJING).date().isoformat() and body["timezone"] == "Asia/Shanghai"
    everything, source = body["feeds"]
    assert everything == {
        "feed": "all", "title": "融易新闻 · 全部文章", "subscribers": 9, "trend": [0] * 29 + [9], "requests": 4,
        "not_modified": 0, "not_modified_share": 0.0,
        "clients": [{"client": "newsboat", "requests": 2}, {"client": "Feedly", "requests": 1},
                    {"client": "NetNewsWire", "requests": 1}],
        "services": [{"service": "Feedly", "subscribers": 7}, {"service": "direct pollers", "subscribers": 2}],
        "websub": {"active": 0, "pending": 0, "failing": 0, "delivered": 0, "failed": 0},
    }
    assert (source["feed"], source["title"], source["subscribers"]) == ("source/xinhuashe", "融易新闻 · 来源:新华社", 1)


def test_page_has_a_sparkline_per_feed(polled: Flask) -> None:
    page = polled.test_client().get("/admin/stats", headers=basic("s3cret")).get_data(as_text=True)
    assert page.count('<svg class="sparkline"') == 2 and "融易新闻 · 来源:新华社" in page


def test_cli_table_aligns_chinese(polled: Flask) -> None:
    output = Runner(polled).invoke("stats").output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 3 and "融易新闻 · 全部文章" in lines[1] and "newsboat 2" in lines[1]
    # each row's path column starts at the same terminal column, though the titles differ in width
    starts = {display_width(line[: re.search(r"  (路径|all|source/xinhuashe)\b", line).start() + 2]) for line in lines}
    assert len(starts) == 1
