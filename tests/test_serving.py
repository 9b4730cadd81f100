"""The polling path: rendered-feed cache and its invalidation, compression, WebSub."""
from __future__ import annotations

import gzip
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import brotli
import feedparser
import pytest
import sqlalchemy as sa
from lxml import etree

from feeds import create_app
from feeds.cache import MemoryCache, Rendered, RedisCache, open_cache
from feeds.serving import feed_paths, scope_of
from feeds.store import Store
from feeds.store.schema import outbox
from tests.conftest import REDIS_URL, article, make_settings


def other(article_id: str, category: str, source: str = "新华社", **changes):
    return article(id=article_id, url=f"https://news.example.cn/{article_id}.html", title=f"标题{article_id}",
                   category=category, source=source, **changes)


@pytest.fixture
def loaded(client):
    response = client.post("/api/articles", json=[other("a", "热点/国内"), other("b", "财经/股票", source="经济日报")],
                           headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 201
    return client


@pytest.fixture
def builds(app, monkeypatch):
    """The paths of the feeds rendered from the database, in order."""
    catalog = app.extensions["feeds"].catalog
    seen: list[str] = []
    original = catalog.build
    monkeypatch.setattr(catalog, "build", lambda spec, limit, now=None, variant=None: seen.append(spec.path) or original(spec, limit, now, variant))
    return seen


@pytest.fixture
def statements(app):
    seen: list[str] = []
    engine = app.extensions["feeds"].store.db.engine
    def listener(conn, cursor, statement, *rest):
        if statement.split()[0] not in ("BEGIN", "COMMIT", "ROLLBACK"):  # transaction control, no query
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listener)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", listener)


def post(client, body, path="/api/articles"):
    return client.post(path, json=body, headers={"Authorization": "Bearer s3cret"})


def test_a_second_poll_renders_nothing_and_asks_the_database_one_thing(app, loaded, builds, statements, monkeypatch):
    store = app.extensions["feeds"].store
    asked = []
    original = store.versions.current
    monkeypatch.setattr(store.versions, "current", lambda scope: asked.append(scope) or original(scope))
    first = loaded.get("/feeds/category/redian.rss")
    assert builds == ["category/redian"]
    statements.clear()
    asked.clear()
    second = loaded.get("/feeds/category/redian.rss")
    assert second.data == first.data and builds == ["category/redian"]
    assert statements == [] and asked == ["category:redian"]
    asked.clear()
    not_modified = loaded.get("/feeds/category/redian.rss", headers={"If-None-Match": first.headers["ETag"]})
    assert not_modified.status_code == 304 and statements == [] and asked == ["category:redian"] and builds == ["category/redian"]


def test_the_version_lookup_reads_what_other_connections_commit(database_url):
    store = Store(database_url)
    store.migrate()
    assert store.versions.current("all") == 0
    with store.db.engine.begin() as conn:  # another writer, e.g. another process
        conn.exec_driver_sql("INSERT INTO feed_versions (scope, version) VALUES ('all', 41)")
    assert store.versions.current("all") == 41
    with store.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE feed_versions SET version = 42 WHERE scope = 'all'")
    assert store.versions.current("all") == 42
    store.close()


def test_a_version_read_is_trusted_for_recheck_seconds_and_the_stores_own_writes_show_at_once(sqlite_url, monkeypatch):
    polls = Store(sqlite_url, recheck_seconds=1)  # the store of one serving process
    polls.migrate()
    elsewhere = Store(sqlite_url)  # another worker process (tests/test_read_your_writes.py), or instance
    settings = make_settings(sqlite_url)
    from feeds.validate import article_from_dict

    def write(store, article_id):
        store.articles.upsert([article_from_dict(other(article_id, "热点/国内"), settings)])

    lookups = []
    original = polls.versions._read
    monkeypatch.setattr(polls.versions, "_read", lambda scope: lookups.append(scope) or original(scope))
    write(elsewhere, "x1")
    assert polls.versions.current("all") == 1 and lookups == ["all"]
    with elsewhere.db.engine.begin() as conn:  # a write through another instance, on another machine
        conn.exec_driver_sql("UPDATE feed_versions SET version = version + 1 WHERE scope = 'all'")
    assert [polls.versions.current("all") for _ in range(5)] == [1] * 5 and lookups == ["all"]  # trusted: no lookup
    time.sleep(1.1)
    assert polls.versions.current("all") == 2 and lookups == ["all", "all"]
    write(polls, "x3")  # through this store: forgotten at once, whatever the period says
    assert polls.versions.current("all") == 3 and polls.versions.current("category:redian") == 2  # x1 and x3
    assert [polls.versions.current("category:nowhere") for _ in range(3)] == [0] * 3
    assert lookups.count("category:nowhere") == 3  # a scope with no row is not kept: URLs are anyone's text
    with elsewhere.db.engine.begin() as conn:  # a row at version 0, as migration 0002 makes for a scope never changed
        conn.exec_driver_sql("INSERT INTO feed_versions (scope, version, articles) VALUES ('source:quiet', 0, 0)")
    assert [polls.versions.current("source:quiet") for _ in range(3)] == [0] * 3 and lookups.count("source:quiet") == 1
    polls.close(), elsewhere.close()


def test_recheck_seconds_zero_looks_up_on_every_poll(sqlite_url):
    polls = Store(sqlite_url, recheck_seconds=0)
    polls.migrate()
    elsewhere = Store(sqlite_url)
    with elsewhere.db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO feed_versions (scope, version) VALUES ('all', 7)")
    assert polls.versions.current("all") == 7
    with elsewhere.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE feed_versions SET version = 8 WHERE scope = 'all'")
    assert polls.versions.current("all") == 8
    polls.close(), elsewhere.close()


def test_a_write_invalidates_exactly_the_feeds_it_touches(loaded, builds):
    paths = ["all", "category/redian", "category/redian/guonei", "category/caijing", "source/xinhuashe", "source/jingjiribao"]
    before = {path: loaded.get(f"/feeds/{path}.rss").data for path in paths}
    builds.clear()
    assert post(loaded, other("c", "热点/国内")).status_code == 201
    after = {path: loaded.get(f"/feeds/{path}.rss").data for path in paths}
    assert sorted(builds) == ["all", "category/redian", "category/redian/guonei", "source/xinhuashe"]
    assert {path for path in paths if after[path] != before[path]} == set(builds)


def test_moving_an_article_invalidates_old_and_new_places(loaded, builds):
    for path in ("category/redian/guonei", "category/caijing", "source/xinhuashe", "source/renminwang"):
        loaded.get(f"/feeds/{path}.rss")
    builds.clear()
    assert post(loaded, other("a", "财经", source="人民网")).status_code == 200
    for path in ("category/redian/guonei", "category/caijing", "source/xinhuashe", "source/renminwang"):
        loaded.get(f"/feeds/{path}.rss")
    assert builds == ["category/redian/guonei", "category/caijing", "source/xinhuashe", "source/renminwang"]
    assert feedparser.parse(loaded.get("/feeds/source/xinhuashe.rss").data).entries == []


def test_an_unchanged_upsert_invalidates_nothing(loaded, builds):
    loaded.get("/feeds/all.rss")
    builds.clear()
    assert post(loaded, other("a", "热点/国内")).json["results"][0]["result"] == "unchanged"
    loaded.get("/feeds/all.rss")
    assert builds == []


def test_delete_and_reads_invalidate(loaded, builds):
    loaded.get("/feeds/all.rss")
    loaded.get("/feeds/hot/daily.rss")
    builds.clear()
    assert loaded.delete("/api/articles/a", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert "标题a" not in loaded.get("/feeds/all.rss").get_data(as_text=True)
    assert post(loaded, [{"id": "b", "count": 3}], "/api/views").status_code == 200
    assert "1. 标题b" in loaded.get("/feeds/hot/daily.rss").get_data(as_text=True)
    assert builds == ["all", "hot/daily"]


def test_a_write_through_another_instance_is_seen_within_recheck_seconds(loaded, app, settings):
    loaded.get("/feeds/all.rss")
    elsewhere = create_app(settings)  # another process's app on the same database
    try:
        elsewhere.test_client().post("/api/articles", json=other("z", "体育"), headers={"Authorization": "Bearer s3cret"})
    finally:
        elsewhere.extensions["feeds"].store.close()
    deadline = time.monotonic() + settings.cache.recheck_seconds + 0.5
    while "标题z" not in loaded.get("/feeds/all.rss").get_data(as_text=True):
        assert time.monotonic() < deadline, "not seen within cache.recheck_seconds"
        time.sleep(0.05)


@pytest.mark.parametrize("encoding, decode", [("gzip", gzip.decompress), ("br", brotli.decompress)])
def test_compression(loaded, builds, encoding, decode):
    plain = loaded.get("/feeds/all.atom")
    packed = loaded.get("/feeds/all.atom", headers={"Accept-Encoding": f"{encoding}, identity;q=0.5"})
    assert packed.headers["Content-Encoding"] == encoding
    assert packed.headers["Vary"] == "Accept-Encoding" and plain.headers["Vary"] == "Accept-Encoding"
    assert decode(packed.data) == plain.data
    assert packed.headers["ETag"] != plain.headers["ETag"]
    assert packed.headers["ETag"].startswith(plain.headers["ETag"][:-1])
    repeat = loaded.get("/feeds/all.atom", headers={"Accept-Encoding": encoding, "If-None-Match": packed.headers["ETag"]})
    assert repeat.status_code == 304
    assert builds == ["all"]  # the compressed bytes came from the plain ones, and then from the cache


def test_no_accept_encoding_or_refused_encodings_get_plain_bytes(loaded):
    assert "Content-Encoding" not in loaded.get("/feeds/all.rss").headers
    assert "Content-Encoding" not in loaded.get("/feeds/all.rss", headers={"Accept-Encoding": "gzip;q=0, br;q=0"}).headers


def test_compressed_bytes_are_the_same_on_every_instance(loaded, settings):
    first = loaded.get("/feeds/all.rss", headers={"Accept-Encoding": "gzip"})
    elsewhere = create_app(settings)
    try:
        second = elsewhere.test_client().get("/feeds/all.rss", headers={"Accept-Encoding": "gzip"})
    finally:
        elsewhere.extensions["feeds"].store.close()
    assert first.data == second.data and first.headers["ETag"] == second.headers["ETag"]


def test_scopes_and_paths():
    assert scope_of("all") == "all"
    assert scope_of("category/redian/guonei") == "category:redian/guonei"
    assert scope_of("source/xinhuashe") == "source:xinhuashe"
    assert scope_of("hot/daily/category/redian") == "hot"
    assert feed_paths(["all", "category:redian", "hot"], ["daily", "weekly"]) == ["all", "category/redian", "hot/daily", "hot/weekly"]


def test_memory_cache_is_a_bounded_lru():
    cache = MemoryCache(max_bytes=10)
    for key in "abc":
        cache.set(key, Rendered(b"1234", key, None), ttl=60)
    assert cache.get("a") is None and cache.get("b") is not None and cache.get("c") is not None
    cache.set("d", Rendered(b"x" * 11, "d", None), ttl=60)
    assert cache.get("d") is None
    cache.set("e", Rendered(b"1", "e", None), ttl=0)
    assert cache.get("e") is None


def test_rendered_round_trips():
    for value in (Rendered(b"<rss/>", "abc-gzip", 1712220579.0), Rendered(b"", "x", None)):
        assert Rendered.loads(value.dumps()) == value


@pytest.mark.skipif(not REDIS_URL, reason="FEEDS_TEST_REDIS_URL is not set; the Redis cache tests need it")
def test_redis_cache_shares_renders_between_instances(sqlite_url):
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = make_settings(sqlite_url, api={"token": "s3cret"}, cache={"url": REDIS_URL})
    first, second = create_app(settings), create_app(settings)
    try:
        assert isinstance(first.extensions["feeds"].feeds.cache, RedisCache)
        post(first.test_client(), other("a", "热点/国内"))
        rendered = first.test_client().get("/feeds/all.rss")
        calls = []
        second.extensions["feeds"].catalog.build = lambda *args, **kwargs: calls.append(args)
        again = second.test_client().get("/feeds/all.rss")
        assert again.data == rendered.data and calls == []
    finally:
        for app in (first, second):
            app.extensions["feeds"].store.close()


def test_a_down_redis_means_rendering_from_the_database(sqlite_url, caplog):
    settings = make_settings(sqlite_url, api={"token": "s3cret"}, cache={"url": "redis://127.0.0.1:1/0"})
    app = create_app(settings)
    try:
        client = app.test_client()
        assert post(client, other("a", "热点/国内")).status_code == 201
        for _ in range(3):
            response = client.get("/feeds/all.rss")
            assert response.status_code == 200 and "标题a" in response.get_data(as_text=True)
        assert sum("redis cache unavailable" in record.message for record in caplog.records) == 1
        for article_id in ("b", "c"):  # the change news cannot go out either: the writes do not mind
            assert post(client, other(article_id, "热点/国内")).status_code == 201
        assert "标题c" in client.get("/feeds/all.rss").get_data(as_text=True)
        assert sum("unavailable for change news" in record.message for record in caplog.records) == 1  # then left alone
    finally:
        app.extensions["feeds"].store.close()


def test_open_cache():
    assert isinstance(open_cache(""), MemoryCache)
    assert isinstance(open_cache("memory://"), MemoryCache)
    assert isinstance(open_cache("redis://127.0.0.1:6379/0"), RedisCache)


# -- WebSub -------------------------------------------------------------------------------


class Hub:
    """A local WebSub hub that records the pings it gets; ``delay`` makes it slow."""

    def __init__(self, status: int = 204, delay: float = 0.0):
        self.status = status
        self.pings: list[dict[str, str]] = []
        self.got = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                time.sleep(delay)
                hub.pings.append(dict(urllib.parse.parse_qsl(body)))
                hub.got.set()
                self.send_response(hub.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def hub():
    hub = Hub()
    yield hub
    hub.close()


def hub_app(sqlite_url, *hubs):
    """Pinging other hubs alone: the service's own hub is off (tests/test_hub.py has it)."""
    return create_app(make_settings(sqlite_url, api={"token": "s3cret"}, websub={"hubs": list(hubs), "hub": False}))


def ping(app, later: float = 0) -> None:
    """Send the pings the outbox holds that are due ``later`` seconds from now (the hot lists' are at the end of
    their minute)."""
    while app.extensions["feeds"].sender.work_once(datetime.now(timezone.utc) + timedelta(seconds=later)):
        pass


def queued_pings(app) -> list:
    with app.extensions["feeds"].store.db.engine.connect() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.channel == "ping")).all()


def test_feeds_announce_their_hubs(sqlite_url, hub):
    app = hub_app(sqlite_url, hub.url)
    try:
        client = app.test_client()
        response = client.get("/feeds/category/redian.rss")
        assert response.status_code == 404  # nothing stored yet
        post(client, other("a", "热点/国内"))
        response = client.get("/feeds/category/redian.rss")
        assert response.headers["Link"] == f'<{hub.url}>; rel="hub", <http://feeds.test/feeds/category/redian.rss>; rel="self"'
        atom = "{http://www.w3.org/2005/Atom}link"
        rss_links = {link.get("rel"): link.get("href") for link in etree.fromstring(response.data).find("channel").iter(atom)}
        assert rss_links == {"self": "http://feeds.test/feeds/category/redian.rss", "hub": hub.url}
        assert etree.fromstring(response.data).findtext("channel/link") == "https://news.example.cn/"
        tags = [child.tag for child in etree.fromstring(response.data).find("channel")]
        assert tags[tags.index("item"):] == ["item"] * tags.count("item")  # no channel element after an item
        atom_links = {link.get("rel"): link.get("href") for link in etree.fromstring(client.get("/feeds/all.atom").data).findall(atom)}
        assert atom_links["hub"] == hub.url
        assert client.get("/feeds/all.json").json["hubs"] == [{"type": "WebSub", "url": hub.url}]
        assert feedparser.parse(response.data).bozo == 0
    finally:
        app.extensions["feeds"].store.close()


def test_a_change_pings_the_hub_for_every_changed_feed(sqlite_url, hub):
    app = hub_app(sqlite_url, hub.url)
    try:
        assert post(app.test_client(), other("a", "热点/国内")).status_code == 201
        ping(app)
        assert "http://feeds.test/feeds/hot/daily.rss" not in {ping["hub.url"] for ping in hub.pings}  # at the minute's end
        ping(app, later=60)
        pinged = {ping["hub.url"] for ping in hub.pings}
        assert {ping["hub.mode"] for ping in hub.pings} == {"publish"}
        base = "http://feeds.test/feeds/"
        expected = {base + path + "." + ext for path in ("all", "category/redian", "category/redian/guonei", "source/xinhuashe",
                                                         "tag/gonghui", "tag/fangzhi", "author/zhuxin",
                                                         "hot/daily", "hot/weekly") for ext in ("rss", "atom", "json")}
        assert pinged == expected
    finally:
        app.extensions["feeds"].store.close()


def test_a_slow_or_down_hub_never_holds_up_a_write(sqlite_url, caplog):
    slow = Hub(delay=0.2)
    try:
        app = hub_app(sqlite_url, slow.url, "http://127.0.0.1:1/")
        response = post(app.test_client(), other("a", "热点/国内"))
        assert response.status_code == 201
        assert not slow.got.is_set()  # the answer came before the hub had even been told
        assert len(queued_pings(app)) == 16  # 8 scopes (the seed's 2 tags and author among them) × 2 hubs
        ping(app, later=60)
        assert len(slow.pings) == 27  # 9 feeds (the hot lists are 2) × 3 formats
        down = queued_pings(app)  # the down hub's: tried again later
        assert len(down) == 8 and {row.target for row in down} == {"http://127.0.0.1:1/"}
        assert all(row.attempts >= 1 and row.failing_since is not None for row in down)
        app.extensions["feeds"].store.close()
    finally:
        slow.close()


def test_a_failing_hub_is_retried(sqlite_url):
    failing = Hub(status=503)
    try:
        app = hub_app(sqlite_url, failing.url)
        post(app.test_client(), other("a", "热点/国内"))
        ping(app, later=60)
        assert len(failing.pings) == 8  # the first request of each scope failed: the rest wait
        ping(app, later=61)  # the pause of 2 seconds is not over
        assert len(failing.pings) == 8
        failing.status = 204
        ping(app, later=63)
        assert len(failing.pings) == 8 + 27 and queued_pings(app) == []
        app.extensions["feeds"].store.close()
    finally:
        failing.close()


def test_import_pings_too(sqlite_url, hub, runner, write_jsonl, tmp_path):
    from click.testing import CliRunner

    from feeds.cli import main

    app = hub_app(sqlite_url, hub.url)
    try:
        result = CliRunner().invoke(main, ["import", write_jsonl([other("a", "体育")])], obj=app)
        assert result.exit_code == 0
        assert "http://feeds.test/feeds/category/tiyu.atom" in {ping["hub.url"] for ping in hub.pings}
    finally:
        app.extensions["feeds"].store.close()


def test_a_batch_with_unchanged_articles_invalidates_only_what_changed(loaded, builds):
    paths = ["all", "category/redian/guonei", "category/caijing", "source/xinhuashe", "source/jingjiribao"]
    for path in paths:
        loaded.get(f"/feeds/{path}.rss")
    builds.clear()
    unchanged = other("b", "财经/股票", source="经济日报")  # as the fixture stored it
    assert [r["result"] for r in post(loaded, [unchanged, other("c", "热点/国内")]).json["results"]] == ["unchanged", "created"]
    for path in paths:
        loaded.get(f"/feeds/{path}.rss")
    assert sorted(builds) == ["all", "category/redian/guonei", "source/xinhuashe"]


@pytest.mark.skipif(not REDIS_URL, reason="FEEDS_TEST_REDIS_URL is not set; the change news tests need Redis")
def test_change_news_shows_a_write_on_another_instance_at_once(sqlite_url):
    """With Redis, a process forgets the versions a write elsewhere moved as soon as it hears of
    it: the other instance shows the write at its next poll, long before recheck_seconds."""
    import redis

    settings = make_settings(sqlite_url, api={"token": "s3cret"}, cache={"url": REDIS_URL, "recheck_seconds": 600})
    writer, reader = create_app(settings), create_app(settings)
    news = reader.extensions["feeds"].feeds.news
    try:
        assert post(writer.test_client(), other("a", "热点/国内")).status_code == 201
        polls = reader.test_client()
        polls.get("/feeds/all.rss")  # the reader's first poll starts its listener
        listeners = redis.Redis.from_url(REDIS_URL)
        deadline = time.monotonic() + 5
        while dict(listeners.pubsub_numsub(news.channel))[news.channel.encode()] < 1:
            assert time.monotonic() < deadline, "the reader never subscribed"
            time.sleep(0.02)
        time.sleep(0.2)  # past the listener's forgetting of all it trusted before subscribing
        assert "标题a" in polls.get("/feeds/all.rss").get_data(as_text=True)  # read now, trusted for 600 s
        assert post(writer.test_client(), other("b", "热点/国内")).status_code == 201
        deadline = time.monotonic() + 5
        while "标题b" not in polls.get("/feeds/all.rss").get_data(as_text=True):
            assert time.monotonic() < deadline, "the reader went on trusting the version from before the write"
            time.sleep(0.02)
        assert "标题b" in polls.get("/feeds/category/redian.rss").get_data(as_text=True)
    finally:
        for app in (writer, reader):
            app.extensions["feeds"].store.close()
