"""Faults of a multi-instance site: an instance killed mid-write, Redis away, PostgreSQL away.

Outages are played with a ``Proxy`` between the instances and the real servers; the
servers themselves are never stopped (others' tests use them).
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from feeds.store import Store
from tests.conftest import POSTGRES_URL
from tests.test_cluster import (
    RECHECK, Instance, Proxy, guid, guids, just_now, needs_services, news, own_database, own_redis, within,
    within_recheck,
)

# The tests share the instances and proxies the module's fixture starts: they run in one worker, which starts them once.
pytestmark = pytest.mark.xdist_group("faults")

RECOVERY = 30  # seconds within which the service recovers from an outage by itself


def eventually(check, what: str):
    """``check()``'s first truthy answer, within RECOVERY seconds."""
    return within(RECOVERY, check, what)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[dict]:
    """A database and Redis database of this module's own, each behind a proxy."""
    needs_services()
    with own_database("faults") as database, own_redis(2) as (redis_client, redis_url):
        postgres = urlsplit(POSTGRES_URL)
        redis = urlsplit(redis_url)
        database_proxy = Proxy(postgres.hostname or "127.0.0.1", postgres.port or 5432)
        redis_proxy = Proxy(redis.hostname or "127.0.0.1", redis.port or 6379)
        try:
            yield {
                "direct_url": database.render_as_string(hide_password=False),
                "database_url": database.set(host="127.0.0.1", port=database_proxy.port).render_as_string(hide_password=False),
                "redis_url": f"redis://127.0.0.1:{redis_proxy.port}{redis.path}",
                "redis": redis_client,
                "database_proxy": database_proxy,
                "redis_proxy": redis_proxy,
                "folder": tmp_path_factory.mktemp("faults"),
            }
        finally:
            database_proxy.close()
            redis_proxy.close()


@pytest.fixture
def instances(servers) -> Iterator[list[Instance]]:
    """Two instances through both proxies; Redis is retried 1 s after it fails."""
    servers["database_proxy"].restore()
    servers["redis_proxy"].restore()
    started = [Instance(servers["folder"], servers["database_url"], servers["redis_url"], retry_after=1).start() for _ in range(2)]
    try:
        for instance in started:
            instance.wait_until_up()
        yield started
    finally:
        servers["database_proxy"].restore()
        servers["redis_proxy"].restore()
        for instance in started:
            instance.stop()


def test_migrating_at_once_creates_the_schema_once():
    """Instances starting together on an empty database (each `feeds serve` migrates first)."""
    needs_services()
    with own_database("migrate") as database:
        stores = [Store(database.render_as_string(hide_password=False)) for _ in range(4)]
        start = threading.Barrier(len(stores))
        failures: list[Exception] = []

        def migrate(store: Store) -> None:
            start.wait()
            try:
                store.migrate()
            except Exception as exc:  # noqa: BLE001 - collected and shown below
                failures.append(exc)

        threads = [threading.Thread(target=migrate, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for store in stores:
            store.close()
        assert failures == []


def test_a_killed_instance_loses_no_acknowledged_article(instances, servers):
    a, b = instances
    seed = random.randrange(1_000_000)
    kill_after = random.Random(seed).randrange(5, 60)  # acknowledgements before the kill, printed on failure
    acknowledged: list[str] = []
    enough = threading.Event()
    stopped = threading.Event()

    def write() -> None:
        for n in range(1000):
            article_id = f"k{seed}-{n}"
            try:
                answer = a.request("POST", "/api/articles", news(article_id, published=just_now(1000 - n)),
                                   timeout=10)
            except OSError:
                break  # A died under this request: not acknowledged
            if 200 <= answer.status < 300:
                acknowledged.append(article_id)
            if len(acknowledged) >= kill_after:
                enough.set()
        stopped.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert enough.wait(120), f"seed {seed}: only {len(acknowledged)} writes acknowledged"
    a.kill()
    assert stopped.wait(60), f"seed {seed}: the writer did not notice the kill"
    assert len(acknowledged) >= kill_after
    store = Store(servers["direct_url"])
    try:
        missing_in_store = [i for i in acknowledged if store.articles.get(i) is None]
    finally:
        store.close()
    assert missing_in_store == [], f"seed {seed}"
    newest = {guid(i) for i in acknowledged[-100:]}  # the newest 100: the longest feed
    within_recheck(lambda: newest <= set(guids(b.get("/feeds/all.json?limit=100"))), f"seed {seed}: the newest on B")


@pytest.mark.parametrize("outage", ["cut", "stall"])
def test_redis_away_means_feeds_from_postgresql_and_it_is_used_again_when_back(instances, servers, outage):
    a, b = instances
    redis, proxy = servers["redis"], servers["redis_proxy"]
    assert a.request("POST", "/api/articles", news(f"r1-{outage}", f"体育/{outage}")).status == 201
    warm = b.get(f"/feeds/category/tiyu/{outage}.rss")
    assert warm.status == 200 and f"标题r1-{outage}" in warm.body.decode()
    assert redis.dbsize() > 0

    getattr(proxy, outage)()
    redis.flushdb()  # directly, not through the proxy: any key from now on was written after Redis came back
    for path in (f"/feeds/category/tiyu/{outage}.rss", f"/feeds/category/tiyu/{outage}.rss", "/feeds/all.json", "/feeds/hot/daily.atom"):
        for instance in (a, b):
            answer = instance.get(path, Accept_Encoding="gzip")
            assert answer.status == 200, (path, answer.status, answer.body[:200])
    again = b.get(f"/feeds/category/tiyu/{outage}.rss")
    assert again.body == warm.body and again.headers["ETag"] == warm.headers["ETag"]
    assert a.request("POST", "/api/articles", news(f"r2-{outage}", f"体育/{outage}", published=just_now())).status == 201
    within_recheck(lambda: guids(b.get(f"/feeds/category/tiyu/{outage}.json"))[0] == guid(f"r2-{outage}"),
                   "written and read with Redis away: still fresh")
    assert redis.dbsize() == 0

    proxy.restore()
    # Each time a URL B has not answered yet: one it has, it answers from its kept answer while the content
    # holds still, without asking Redis (so the outage cost no renders past the first).
    urls = iter(f"/feeds/category/tiyu/{outage}.{extension}?limit={limit}" for limit in range(1, 101) for extension in ("rss", "atom", "json"))
    eventually(lambda: b.get(next(urls)).status == 200 and redis.dbsize() > 0, "B stores renders in Redis again after cache.retry_after")
    eventually(lambda: a.get("/feeds/source/xinhuashe.rss").status == 200 and any(b"source/xinhuashe" in key for key in redis.keys()),
               "A stores renders in Redis again after cache.retry_after")
    assert guids(a.get(f"/feeds/category/tiyu/{outage}.json"))[0] == guid(f"r2-{outage}")


@pytest.mark.parametrize("outage", ["cut", "stall"])
def test_postgresql_away_is_503_with_retry_after_and_recovers_by_itself(instances, servers, outage):
    a, b = instances
    proxy = servers["database_proxy"]
    assert a.request("POST", "/api/articles", news(f"p-{outage}", f"科技/{outage}")).status == 201
    warm = {path: b.get(path) for path in ("/feeds/all.rss", f"/feeds/category/keji/{outage}.json")}  # in Redis now
    assert all(answer.status == 200 for answer in warm.values())

    getattr(proxy, outage)()  # cut: refused, as a restarting server; stall: never answers, as an unreachable host
    time.sleep(RECHECK + 0.2)  # the versions read before are trusted that long; past it, every poll asks the database
    requests = [
        ("GET", "/feeds/all.rss", None, {}),
        ("GET", "/feeds/all.rss", None, {"If-None-Match": warm["/feeds/all.rss"].headers["ETag"]}),
        ("GET", f"/feeds/category/keji/{outage}.json", None, {"Accept-Encoding": "gzip"}),
        ("GET", "/healthz", None, {}),
        ("POST", "/api/articles", news(f"p-{outage}-lost", f"科技/{outage}"), {}),
    ]
    # Cut: twice on both, the first meeting pooled connections just dropped, the second a fresh connect.
    # Stall: each request waits out the connect timeout, so fewer of them.
    rounds = [(a, b), (a, b)] if outage == "cut" else [(a,)]
    for instances_now in rounds:
        for instance in instances_now:
            for method, path, body, headers in requests if outage == "cut" else requests[::2]:
                answer = instance.request(method, path, body, headers, timeout=30)  # a hang fails here
                assert answer.status == 503, (outage, method, path, answer.status, answer.body[:300])
                assert answer.headers["Retry-After"] == "5", path

    proxy.restore()
    eventually(lambda: a.get("/healthz").status == 200 and b.get("/healthz").status == 200, "both answer again")
    for path, before in warm.items():
        answer = a.get(path)
        assert answer.status == 200 and answer.body == before.body, path
    assert a.request("POST", "/api/articles", news(f"p-{outage}-after", f"科技/{outage}", published=just_now())).status == 201
    within_recheck(lambda: guids(b.get(f"/feeds/category/keji/{outage}.json")) == [guid(f"p-{outage}-after"), guid(f"p-{outage}")],
                   "the write after the outage, on the other instance")
