"""The hot lists, on SQLite and (when configured) PostgreSQL: read events in, rankings out.

Store-level tests pass an explicit ``now``; the HTTP tests record reads relative to the
real current time, as the feeds rank up to the moment of the request.
"""
from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import feedparser
import pytest

from feeds.cache import MemoryCache
import sqlalchemy as sa

from feeds import create_app
from feeds.model import ReadEvent
from feeds.store.rankings import Rankings
from feeds.store.reads import floor
from feeds.store.schema import ranking_states, reads_daily, reads_hourly, reads_minutely
from feeds.validate import article_from_dict
from tests.conftest import article, make_settings

DAY, WEEK = timedelta(hours=24), timedelta(hours=168)
NOW = datetime(2024, 5, 20, 12, 34, 56, tzinfo=timezone.utc)  # not on a minute, hour or day boundary
GUID = "tag:news.example.cn,2024:article:"


@pytest.fixture
def settings(database_url):
    """Every test here runs on SQLite and on PostgreSQL: conftest's app, client, runner and store follow."""
    return make_settings(database_url)


def stored(store, settings, *rows) -> None:
    """Store articles given as changes to the seed article; each needs an ``id``."""
    batch = []
    for number, changes in enumerate(rows):
        changes = {"url": f"https://news.example.cn/{changes['id']}.html", "title": f"标题{changes['id']}",
                   "published": (NOW - timedelta(days=3) + timedelta(minutes=number)).isoformat(), **changes}
        batch.append(article_from_dict(article(**changes), settings))
    store.articles.upsert(batch)


def read(store, now, *events) -> None:
    """Record ``(id, how long before now, count)`` read events."""
    store.reads.record([ReadEvent(article_id, now - ago, count) for article_id, ago, count in events])


def ranked(store, now, window, limit=10, category=None) -> list[tuple[str, int]]:
    found = store.rankings.top(now, window, limit, store.articles.category(category) if category else None)
    return [(entry.article.id, entry.reads) for entry in found]


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# -- the ranking ------------------------------------------------------------------------


@pytest.mark.parametrize("window", [DAY, WEEK])
def test_window_edges_are_exact_to_the_minute(store, settings, window):
    stored(store, settings, {"id": "inside"}, {"id": "outside"}, {"id": "later"})
    read(store, NOW, ("inside", window - minutes(1), 1), ("outside", window + minutes(1), 1), ("later", -minutes(2), 1))
    assert ranked(store, NOW, window) == [("inside", 1)]
    # a minute on, the oldest read has left the window; the read "from the future" has come in
    assert ranked(store, NOW + minutes(2), window) == [("later", 1)]


def test_whole_hours_and_both_ragged_ends_add_up(store, settings):
    stored(store, settings, {"id": "a"})
    # the window (NOW - 24h, NOW] starts and ends inside an hour: minutes at both ends, hours between
    offsets = [minutes(n) for n in (0, 1, 20, 35, 36, 60, 61, 600, 1400, 1439)] + [DAY - minutes(1), DAY + minutes(1)]
    read(store, NOW, *(("a", ago, 1) for ago in offsets))
    assert ranked(store, NOW, DAY) == [("a", 11)]
    # 60 minutes ago falls in the minute the window starts in, so it counts; 61 minutes ago does not
    assert ranked(store, NOW, timedelta(hours=1)) == [("a", 6)]


def test_most_reads_first_then_the_newest(store, settings):
    stored(store, settings,
           {"id": "old", "published": "2024-05-01 08:00:00"},
           {"id": "new", "published": "2024-05-02 08:00:00"},
           {"id": "top", "published": "2024-04-01 08:00:00"},
           {"id": "few", "published": "2024-05-19 08:00:00"})
    read(store, NOW, ("old", minutes(5), 3), ("new", minutes(50), 2), ("new", timedelta(hours=5), 1),
         ("top", minutes(1), 7), ("few", minutes(1), 1))
    assert ranked(store, NOW, DAY) == [("top", 7), ("new", 3), ("old", 3), ("few", 1)]
    assert ranked(store, NOW, DAY, limit=2) == [("top", 7), ("new", 3)]


def test_a_category_list_holds_its_descendants_and_nothing_else(store, settings):
    stored(store, settings,
           {"id": "top", "category": "热点"},
           {"id": "child", "category": "热点/国内"},
           {"id": "grandchild", "category": "热点/国内/北京"},
           {"id": "other", "category": "财经"},
           {"id": "none", "category": None})
    read(store, NOW, ("top", minutes(1), 1), ("child", minutes(1), 2), ("grandchild", minutes(1), 3),
         ("other", minutes(1), 10), ("none", minutes(1), 20))
    assert ranked(store, NOW, DAY, category="redian") == [("grandchild", 3), ("child", 2), ("top", 1)]
    assert ranked(store, NOW, DAY, category="redian/guonei") == [("grandchild", 3), ("child", 2)]
    assert ranked(store, NOW, DAY, category="caijing") == [("other", 10)]
    assert [entry[0] for entry in ranked(store, NOW, DAY)] == ["none", "other", "grandchild", "child", "top"]


def test_moved_and_deleted_articles_leave_the_lists(store, settings):
    stored(store, settings, {"id": "moved", "category": "热点"}, {"id": "gone", "category": "热点"}, {"id": "stays", "category": "热点"})
    read(store, NOW, ("moved", minutes(1), 3), ("gone", minutes(1), 2), ("stays", minutes(1), 1))
    stored(store, settings, {"id": "moved", "category": "财经"})
    assert store.articles.delete("gone")
    assert ranked(store, NOW, DAY, category="redian") == [("stays", 1)]
    assert ranked(store, NOW, DAY, category="caijing") == [("moved", 3)]
    assert ranked(store, NOW, WEEK) == [("moved", 3), ("stays", 1)]
    assert counted_rows(store) == {"reads_minutely": 2, "reads_hourly": 2, "reads_daily": 2}


def test_nothing_read_is_an_empty_list(store, settings):
    stored(store, settings, {"id": "a"})
    assert ranked(store, NOW, DAY) == []
    read(store, NOW, ("a", timedelta(days=3), 1))
    assert ranked(store, NOW, DAY) == [] and ranked(store, NOW, WEEK) == [("a", 1)]
    assert store.rankings.top(NOW, DAY, 0) == []
    with pytest.raises(ValueError):
        store.rankings.top(NOW, timedelta(0), 10)


def test_ranking_matches_a_brute_force_count(store, settings, monkeypatch):
    """Random reads with a long tail, random windows, categories and list lengths: the ranking
    equals a count of every event, whether it sums only the articles that can make the list
    or every article (both ways are taken)."""
    rng = random.Random(7)
    paths = ["热点", "热点/国内", "热点/国内/北京", "财经", "财经/股票", "体育"]
    rows = [{"id": f"n{n}", "category": rng.choice(paths),
             "published": (NOW - timedelta(days=10) + timedelta(hours=rng.randrange(240))).isoformat()} for n in range(60)]
    stored(store, settings, *rows)
    published = {entry["id"]: datetime.fromisoformat(entry["published"]).replace(tzinfo=settings.tz) for entry in rows}
    weights = [1 / (rank + 1) for rank in range(60)]
    events = [
        ReadEvent(f"n{rng.choices(range(60), weights)[0]}", NOW - timedelta(seconds=rng.randrange(9 * 86400)),
                  rng.choice([1, 1, 1, 2, 5]))
        for _ in range(3000)
    ]
    for start in range(0, len(events), 500):
        store.reads.record(events[start:start + 500])
    members = {slug: {entry["id"] for entry in rows if entry["category"].startswith(path)}
               for slug, path in (("redian", "热点"), ("redian/guonei", "热点/国内"), ("caijing", "财经"), ("tiyu", "体育"))}

    taken = {"bounded": 0, "everything": 0}
    bounded = Rankings._top_by_threshold

    def spy(self, *args):
        found = bounded(self, *args)
        taken["everything" if found is None else "bounded"] += 1
        return found

    monkeypatch.setattr(Rankings, "_top_by_threshold", spy)
    for _ in range(40):
        now = NOW - timedelta(seconds=rng.randrange(2 * 86400))
        window = rng.choice([timedelta(hours=1), timedelta(hours=5), DAY, DAY, WEEK, WEEK])
        limit = rng.choice([1, 3, 10])
        category = rng.choice([None, None, "redian", "redian/guonei", "caijing", "tiyu"])
        first, last = floor(now - window, minutes(1)), floor(now, minutes(1))
        counts: dict[str, int] = {}
        for event in events:
            if first <= floor(event.at, minutes(1)) <= last and (
                category is None or event.article_id in members[category]
            ):
                counts[event.article_id] = counts.get(event.article_id, 0) + event.count
        expected = sorted(counts.items(), key=lambda item: (item[1], published[item[0]], int(item[0][1:])), reverse=True)
        assert ranked(store, now, window, limit, category) == expected[:limit], (now, window, limit, category)
    assert taken["bounded"] and taken["everything"], taken


def test_any_reads_since(store, settings):
    stored(store, settings, {"id": "a"})
    read(store, NOW, ("a", minutes(30), 1))
    assert store.reads.any_since(NOW - minutes(31)) and store.reads.any_since(NOW - minutes(30))
    assert not store.reads.any_since(NOW - minutes(28))


# -- recording and pruning ---------------------------------------------------------------


def test_an_unknown_article_records_nothing(store, settings):
    stored(store, settings, {"id": "a"})
    with pytest.raises(KeyError, match="ghost"):
        read(store, NOW, ("a", minutes(1), 1), ("ghost", minutes(1), 1))
    assert ranked(store, NOW, DAY) == []


def counted_rows(store) -> dict[str, int]:
    with store.db.engine.connect() as conn:
        return {table.name: conn.scalar(sa.select(sa.func.count()).select_from(table))
                for table in (reads_minutely, reads_hourly, reads_daily)}


def test_pruning_keeps_every_window_exact(store, settings):
    stored(store, settings, {"id": "a"}, {"id": "b"})
    agos = [WEEK + timedelta(days=2), WEEK + timedelta(hours=2), WEEK + minutes(1), WEEK - minutes(1), WEEK - minutes(30),
            timedelta(days=3), DAY + minutes(1), DAY - minutes(1), minutes(1)]
    read(store, NOW, *(("a", ago, 1) for ago in agos), *(("b", ago, 2) for ago in agos[:3]))
    before = {window: ranked(store, NOW, window) for window in (DAY, WEEK)}
    assert before == {DAY: [("a", 2)], WEEK: [("a", 6)]}
    assert store.reads.prune(NOW - WEEK) > 0
    assert {window: ranked(store, NOW, window) for window in (DAY, WEEK)} == before
    assert store.reads.prune(NOW - WEEK) == 0
    with store.db.engine.connect() as conn:  # nothing left that ends before the longest window starts
        for table, width in ((reads_minutely, minutes(1)), (reads_hourly, timedelta(hours=1)), (reads_daily, DAY)):
            oldest = conn.scalar(sa.select(sa.func.min(table.c.bucket)))
            oldest = oldest if isinstance(oldest, datetime) else datetime.fromisoformat(oldest)
            assert oldest.replace(tzinfo=timezone.utc) + width > NOW - WEEK


def test_recording_prunes_what_no_window_reaches_once_an_hour(store, settings):
    stored(store, settings, {"id": "a"})
    read(store, NOW, ("a", timedelta(days=30), 1), ("a", timedelta(days=9), 1), ("a", DAY, 1))
    assert counted_rows(store) == {"reads_minutely": 3, "reads_hourly": 3, "reads_daily": 3}
    store.reads.record([ReadEvent("a", NOW, 1)], keep=WEEK, now=NOW)
    assert counted_rows(store) == {"reads_minutely": 2, "reads_hourly": 2, "reads_daily": 2}
    read(store, NOW, ("a", timedelta(days=20), 1))
    store.reads.record([ReadEvent("a", NOW - minutes(3), 1)], keep=WEEK, now=NOW + minutes(10))  # the same hour: not again
    assert counted_rows(store)["reads_minutely"] == 4
    store.reads.record([], keep=WEEK, now=NOW + timedelta(hours=1))
    assert counted_rows(store)["reads_minutely"] == 3
    assert ranked(store, NOW, WEEK) == [("a", 3)]


def test_concurrent_recording_adds_up(store, settings):
    stored(store, settings, *({"id": f"c{n}"} for n in range(20)))
    batches = [[ReadEvent(f"c{(n * 7 + i) % 20}", NOW - minutes(i % 90), 1) for i in range(200)] for n in range(6)]
    threads = [threading.Thread(target=store.reads.record, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(reads for _, reads in ranked(store, NOW, DAY, limit=20)) == 1200


# -- when a list last changed --------------------------------------------------------------


def test_the_ranking_change_time_moves_only_with_the_signature(store):
    first = store.rankings.changed("hot/daily", "A", NOW)
    assert first == NOW
    assert store.rankings.changed("hot/daily", "A", NOW + minutes(5)) == NOW
    assert store.rankings.changed("hot/daily", "B", NOW + minutes(6)) == NOW + minutes(6)
    assert store.rankings.changed("hot/weekly", "B", NOW + minutes(7)) == NOW + minutes(7)  # one state per feed
    # a request that computed its list before the last change was stored never moves the time back
    assert store.rankings.changed("hot/daily", "C", NOW) == NOW + minutes(6)
    assert store.rankings.changed("hot/daily", "C", NOW + minutes(9)) == NOW + minutes(6)


@pytest.mark.parametrize("previous", [None, "A"])
def test_concurrent_requests_that_see_the_same_change_agree(store, previous):
    if previous:
        store.rankings.changed("hot/daily", previous, NOW)
    barrier = threading.Barrier(8)
    answers: list[datetime] = []

    def request(number: int) -> None:
        barrier.wait()
        answers.append(store.rankings.changed("hot/daily", "B", NOW + timedelta(seconds=number + 1)))

    threads = [threading.Thread(target=request, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 8 and len(set(answers)) == 1
    with store.db.engine.connect() as conn:
        row = conn.execute(sa.select(ranking_states.c.signature, ranking_states.c.changed)).one()
    assert row.signature == "B" and row.changed.replace(tzinfo=timezone.utc) == answers[0]


# -- `feeds views` ---------------------------------------------------------------------------


def test_views_rejects_bad_lines_by_number_and_keeps_the_good_ones(runner, store, settings, write_jsonl):
    stored(store, settings, {"id": "a"}, {"id": "b"})
    at = (datetime.now(timezone.utc) - minutes(5)).isoformat()
    rows = [
        {"id": "a", "count": 2, "at": at},
        {"id": "ghost", "count": 1, "at": at},
        {"id": "a", "count": 0, "at": at},
        {"id": "a", "count": -3, "at": at},
        {"id": "a", "count": 1.5, "at": at},
        {"id": "a", "count": "2", "at": at},
        {"id": "b", "at": at},
        {"id": "a", "count": True, "at": at},
        {"id": "a", "count": 3, "at": at},
    ]
    result = runner.invoke("views", write_jsonl(rows))
    assert result.exit_code == 1
    rejected = [line.split(": ", 1) for line in result.stderr.splitlines()]
    assert [number for number, _ in rejected] == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 8"]
    assert rejected[0][1] == 'id: no article "ghost" is stored'
    assert all(reason.startswith("count") for _, reason in rejected[1:]), rejected
    assert result.stdout.strip() == "3 read events recorded, 6 rejected"
    assert ranked(store, datetime.now(timezone.utc), DAY) == [("a", 5), ("b", 1)]


def test_views_add_up_across_imports(runner, store, settings, write_jsonl):
    stored(store, settings, {"id": "a"}, {"id": "b"})
    now = datetime.now(timezone.utc)
    for number, count in enumerate((1, 4, 10)):
        rows = [{"id": "a", "count": count, "at": (now - timedelta(hours=number)).isoformat()}, {"id": "b", "count": 2}]
        result = runner.invoke("views", write_jsonl(rows, f"views{number}.jsonl"))
        assert result.exit_code == 0, result.output
    assert ranked(store, datetime.now(timezone.utc), DAY) == [("a", 15), ("b", 6)]


# -- the feeds -------------------------------------------------------------------------------


@pytest.fixture
def newsroom(runner, store, write_jsonl):
    """Twelve articles, more than a hot list holds: n0..n9 in 热点/国内, n10 in 热点, n11 in 财经."""
    rows = [article(id=f"n{n}", url=f"https://news.example.cn/n{n}.html", title=f"新闻{n}",
                    category="热点" if n == 10 else "财经" if n == 11 else "热点/国内",
                    published=f"2024-05-{n + 1:02d} 08:00:00") for n in range(12)]
    assert runner.invoke("import", write_jsonl(rows, "articles.jsonl")).exit_code == 0
    return store


def read_now(store, *events) -> None:
    now = datetime.now(timezone.utc)
    read(store, now, *((article_id, minutes(ago), count) for article_id, ago, count in events))


def entries(client, path):
    response = client.get(path)
    assert response.status_code == 200, response.data
    parsed = feedparser.parse(response.data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def test_hot_list_holds_hot_size_items_with_rank_prefixes(newsroom, client):
    read_now(newsroom, *((f"n{n}", 5, 100 - n) for n in range(12)))  # n0 most read ... n11 least
    for query in ("", "?limit=3", "?limit=50"):
        parsed = entries(client, f"/feeds/hot/daily.rss{query}")
        assert [e.title for e in parsed.entries] == [f"{rank + 1}. 新闻{rank}" for rank in range(10)]
    document = client.get("/feeds/hot/weekly.json").get_json()
    assert [item["title"] for item in document["items"]][:2] == ["1. 新闻0", "2. 新闻1"]
    atom = entries(client, "/feeds/hot/weekly.atom")
    assert atom.entries[0].title == "1. 新闻0" and len(atom.entries) == 10


def test_a_custom_hot_size(database_url):
    app = create_app(make_settings(database_url, hot={"size": 3}))
    try:
        store = app.extensions["feeds"].store
        stored(store, app.extensions["feeds"].settings, *({"id": f"s{n}"} for n in range(5)))
        read_now(store, *((f"s{n}", 1, n + 1) for n in range(5)))
        parsed = entries(app.test_client(), "/feeds/hot/daily.rss")
        assert [e.title for e in parsed.entries] == ["1. 标题s4", "2. 标题s3", "3. 标题s2"]
    finally:
        app.extensions["feeds"].store.close()


def test_hot_items_keep_the_guid_of_the_category_feed(newsroom, client):
    read_now(newsroom, ("n3", 5, 9), ("n10", 5, 4), ("n11", 5, 7))
    hot = entries(client, "/feeds/hot/daily.rss")
    assert [e.id for e in hot.entries] == [f"{GUID}n3", f"{GUID}n11", f"{GUID}n10"]
    category = entries(client, "/feeds/category/redian/guonei.rss")
    assert f"{GUID}n3" in {e.id for e in category.entries}
    hot_atom = entries(client, "/feeds/hot/daily.atom")
    assert hot_atom.entries[0].id == next(e.id for e in entries(client, "/feeds/category/redian.atom").entries if e.id.endswith(":n3"))
    assert hot_atom.entries[0].link == "https://news.example.cn/n3.html"


def test_category_hot_feeds_include_descendants(newsroom, client):
    read_now(newsroom, ("n3", 5, 9), ("n10", 5, 4), ("n11", 5, 7))
    assert [e.title for e in entries(client, "/feeds/hot/daily/category/redian.rss").entries] == ["1. 新闻3", "2. 新闻10"]
    assert [e.title for e in entries(client, "/feeds/hot/weekly/category/redian/guonei.atom").entries] == ["1. 新闻3"]
    assert [e.title for e in entries(client, "/feeds/hot/daily/category/caijing.rss").entries] == ["1. 新闻11"]
    assert client.get("/feeds/hot/daily/category/nowhere.rss").status_code == 404
    assert client.get("/feeds/hot/daily/source/xinhuashe.rss").status_code == 404


def test_validators_change_when_and_only_when_the_list_does(newsroom, client, store):
    read_now(newsroom, ("n1", 5, 5), ("n2", 5, 3), ("n3", 5, 1))
    client.get("/feeds/hot/daily.rss")
    with store.db.engine.begin() as conn:  # as if the list had looked like this for an hour already
        conn.execute(ranking_states.update().values(changed=datetime.now(timezone.utc) - timedelta(hours=1)))
    client.application.extensions["feeds"].feeds.cache = MemoryCache()  # forget the render of before that change
    client.application.wsgi_app._answers.clear()  # and the fast path's answer made of it
    first = client.get("/feeds/hot/daily.rss")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert datetime.now(timezone.utc) - parsedate_to_datetime(modified) > minutes(59)

    read_now(newsroom, ("n1", 1, 10), ("n3", 2, 1))  # more reads, the same order
    same = client.get("/feeds/hot/daily.rss")
    assert same.data == first.data
    assert (same.headers["ETag"], same.headers["Last-Modified"]) == (etag, modified)
    unchanged = client.get("/feeds/hot/daily.rss", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.data == b""

    read_now(newsroom, ("n3", 1, 20))  # n3 goes first
    changed = client.get("/feeds/hot/daily.rss", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert parsedate_to_datetime(changed.headers["Last-Modified"]) > parsedate_to_datetime(modified)
    assert entries(client, "/feeds/hot/daily.rss").entries[0].title == "1. 新闻3"
    assert client.get("/feeds/hot/daily.rss", headers={"If-None-Match": changed.headers["ETag"]}).status_code == 304
    # the feed's own date is the time of the change, not of the request
    assert entries(client, "/feeds/hot/daily.rss").feed.updated_parsed[:6] == \
        parsedate_to_datetime(changed.headers["Last-Modified"]).utctimetuple()[:6]


def test_an_edited_article_changes_the_list(newsroom, client, runner, write_jsonl):
    read_now(newsroom, ("n1", 5, 5), ("n2", 5, 3))
    etag = client.get("/feeds/hot/daily.json").headers["ETag"]
    edited = article(id="n2", url="https://news.example.cn/n2.html", title="新闻2(更新)", category="热点/国内",
                     published="2024-05-03 08:00:00")
    assert runner.invoke("import", write_jsonl([edited], "edit.jsonl")).exit_code == 0
    response = client.get("/feeds/hot/daily.json", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert [item["title"] for item in response.get_json()["items"]] == ["1. 新闻1", "2. 新闻2(更新)"]


def test_empty_hot_feeds_are_valid(client):
    for extension in ("rss", "atom"):
        assert entries(client, f"/feeds/hot/weekly.{extension}").entries == []
    assert client.get("/feeds/hot/daily.json").get_json()["items"] == []
