"""The store, on SQLite and (when configured) PostgreSQL: upserts, the category tree, slugs, schema."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from feeds.config import load_settings
from feeds.model import Article, Source
from feeds.store import Store
from feeds.store.schema import metadata
from feeds.validate import article_from_dict
from tests.conftest import article

SETTINGS = load_settings(environ={})
BEIJING = SETTINGS.tz


def make(article_id: str, published: datetime, category: str = "热点/国内", source: str | None = "新华社", **changes) -> Article:
    fields = {"url": f"https://news.example.cn/{article_id}.html", "title": f"标题{article_id}", "category": category,
              "source": source, "published": published.isoformat(), **changes}
    raw = article(id=article_id, **fields)
    return article_from_dict(raw, SETTINGS)


@pytest.fixture
def store(database_url):
    store = Store(database_url, {"体育": "sports"}, {"经济日报": "jingji"})
    store.migrate()
    yield store
    store.close()


def test_upsert_is_idempotent(store):
    batch = [make("a", datetime(2024, 4, 4, 16, 49, 39, tzinfo=BEIJING)), make("b", datetime(2024, 4, 5, tzinfo=BEIJING))]
    assert store.articles.upsert(batch) == ["created", "created"]
    assert store.articles.upsert(batch) == ["unchanged", "unchanged"]
    assert store.articles.count() == 2


def test_round_trip_keeps_every_field_and_the_instant(store):
    original = make("a", datetime(2024, 4, 4, 16, 49, 39, tzinfo=BEIJING), updated="2024-04-05 10:00:00")
    store.articles.upsert([original])
    stored = store.articles.get("a")
    assert stored.published == datetime(2024, 4, 4, 8, 49, 39, tzinfo=timezone.utc)
    assert stored.updated == datetime(2024, 4, 5, 2, 0, tzinfo=timezone.utc)
    assert replace(stored, source=replace(stored.source, slug="")) == original


def test_edit_is_an_update_stamped_when_no_time_is_given(store):
    store.articles.upsert([make("a", datetime(2024, 4, 4, tzinfo=BEIJING))])
    now = datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert store.articles.upsert([make("a", datetime(2024, 4, 4, tzinfo=BEIJING), title="新标题")], now=now) == ["updated"]
    stored = store.articles.get("a")
    assert stored.title == "新标题" and stored.updated == now
    # the same edit again changes nothing, and keeps the stamp
    assert store.articles.upsert([make("a", datetime(2024, 4, 4, tzinfo=BEIJING), title="新标题")]) == ["unchanged"]
    assert store.articles.get("a").updated == now


def test_duplicate_ids_in_one_batch(store):
    first = make("a", datetime(2024, 4, 4, tzinfo=BEIJING))
    second = make("a", datetime(2024, 4, 4, tzinfo=BEIJING), title="改过")
    assert store.articles.upsert([first, second]) == ["created", "updated"]
    assert store.articles.get("a").title == "改过" and store.articles.count() == 1


def test_newest_in_a_category_includes_descendants(store):
    day = datetime(2024, 4, 1, tzinfo=BEIJING)
    store.articles.upsert([
        make("top", day, category="热点"),
        make("child", day + timedelta(hours=1), category="热点/国内"),
        make("grandchild", day + timedelta(hours=2), category="热点/国内/北京"),
        make("other", day + timedelta(hours=3), category="财经"),
        make("none", day + timedelta(hours=4), category=None),
    ])
    category = store.articles.category("redian")
    assert [a.id for a in store.articles.newest(10, category=category)] == ["grandchild", "child", "top"]
    assert [a.id for a in store.articles.newest(10, category=store.articles.category("redian/guonei"))] == ["grandchild", "child"]
    assert [a.id for a in store.articles.newest(2)] == ["none", "other"]
    assert [c.slug_path for c in store.articles.categories()] == ["caijing", "redian", "redian/guonei", "redian/guonei/beijing"]


def test_moving_an_article_to_another_category(store):
    day = datetime(2024, 4, 1, tzinfo=BEIJING)
    store.articles.upsert([make("a", day, category="热点/国内")])
    store.articles.upsert([make("a", day, category="财经")])
    assert store.articles.newest(10, category=store.articles.category("redian")) == []
    assert [a.id for a in store.articles.newest(10, category=store.articles.category("caijing"))] == ["a"]


def test_changing_the_publication_time_reorders(store):
    day = datetime(2024, 4, 1, tzinfo=BEIJING)
    store.articles.upsert([make("a", day), make("b", day + timedelta(hours=1))])
    store.articles.upsert([make("a", day + timedelta(hours=2))])
    assert [a.id for a in store.articles.newest(10, category=store.articles.category("redian"))] == ["a", "b"]


def test_sources_and_slugs(store):
    day = datetime(2024, 4, 1, tzinfo=BEIJING)
    store.articles.upsert([
        make("a", day, source="新华社"), make("b", day, source="经济日报"), make("c", day, category="体育", source=None),
        make("d", day, source="新華社"),  # traditional characters: same pinyin, a different source
    ])
    assert {s.name: s.slug for s in store.articles.sources()} == {"新华社": "xinhuashe", "新華社": "xinhuashe-2", "经济日报": "jingji"}
    assert [a.id for a in store.articles.newest(10, source=store.articles.source("xinhuashe"))] == ["a"]
    assert store.articles.category("sports") is not None


def test_source_url_is_kept_when_a_later_article_omits_it(store):
    day = datetime(2024, 4, 1, tzinfo=BEIJING)
    store.articles.upsert([make("a", day, source_url="https://www.news.cn/")])
    store.articles.upsert([make("b", day)])
    assert store.articles.source("xinhuashe") == Source("新华社", "xinhuashe", "https://www.news.cn/")


def test_delete(store):
    store.articles.upsert([make("a", datetime(2024, 4, 1, tzinfo=BEIJING))])
    assert store.articles.delete("a") is True
    assert store.articles.delete("a") is False
    assert store.articles.newest(10) == [] and store.articles.newest(10, category=store.articles.category("redian")) == []


def test_migrations_build_the_same_schema_as_the_metadata(database_url):
    engine = sa.create_engine(database_url)
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parents[1] / "feeds" / "store" / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    def described(name: str | None, type_: str, parent: object) -> bool:
        # The search index is made by statements of its own, not from the metadata (schema.SEARCH_TABLES).
        return not (type_ == "table" and name is not None and name.startswith("article_search"))

    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"include_name": described}), metadata)
        searched = sorted(name for name in sa.inspect(conn).get_table_names() if name.startswith("article_search"))
    engine.dispose()
    assert differences == []
    assert searched == (["article_search"] if "postgresql" in database_url else
                        ["article_search", "article_search_config", "article_search_data", "article_search_docsize", "article_search_idx"])


def test_migrate_twice_is_harmless(store):
    store.articles.upsert([make("a", datetime(2024, 4, 1, tzinfo=BEIJING))])
    store.migrate()
    assert store.articles.count() == 1


@pytest.mark.parametrize("feed", ["all", "category", "source"])
def test_newest_queries_use_an_index_not_a_sort(sqlite_url, feed):
    store = Store(sqlite_url)
    store.migrate()
    day = datetime(2024, 4, 1, tzinfo=BEIJING)
    store.articles.upsert([make(str(n), day + timedelta(minutes=n)) for n in range(50)])

    captured = []
    sa.event.listen(store.db.engine, "before_cursor_execute", lambda conn, cursor, statement, params, *a: captured.append((statement, params)))
    store.articles.newest(10, category=store.articles.category("redian") if feed == "category" else None,
                 source=store.articles.source("xinhuashe") if feed == "source" else None)
    statement, params = captured[-1]
    with store.db.engine.connect() as conn:
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params))
    store.close()
    assert not re.search(r"SCAN (articles|article_categories)(?! USING (COVERING )?INDEX)", plan), plan
    if feed != "category":  # there, only the `limit` rows found through the index are put in order
        assert "TEMP B-TREE" not in plan, plan
    index = {"all": "ix_articles_published", "category": "sqlite_autoindex_article_categories_1",
             "source": "ix_articles_source_published"}[feed]
    assert index in plan, plan


def feed_sizes(store: Store) -> dict[str, int]:
    """What ``archive`` says each feed holds, from the kept counts."""
    sizes = {"all": store.articles.archive(10, None)[0]}
    sizes |= {f"category:{c.slug_path}": store.articles.archive(10, None, category=c)[0] for c in store.articles.categories()}
    sizes |= {f"source:{s.slug}": store.articles.archive(10, None, source=s)[0] for s in store.articles.sources()}
    return sizes


def counted_sizes(store: Store) -> dict[str, int]:
    """The same, counted article by article from what the feeds hold."""
    sizes = {"all": len(store.articles.newest(10_000))}
    sizes |= {f"category:{c.slug_path}": len(store.articles.newest(10_000, category=c)) for c in store.articles.categories()}
    sizes |= {f"source:{s.slug}": len(store.articles.newest(10_000, source=s)) for s in store.articles.sources()}
    return sizes


def test_feed_sizes_follow_every_kind_of_write(store):
    """Creates, edits, moves between categories and sources (and out of them), re-imports
    and deletes, in batches with repeats: the kept counts always equal a fresh count."""
    import random

    rng = random.Random(5005)
    day = datetime(2024, 4, 1, tzinfo=BEIJING)
    categories = ["热点/国内", "热点/国内/北京", "热点/国际", "财经", "财经/股票", ""]
    sources = ["新华社", "经济日报", None]
    for step in range(40):
        if rng.random() < 0.2:
            store.articles.delete(f"a{rng.randrange(30)}")
        else:
            batch = [make(f"a{rng.randrange(30)}", day + timedelta(minutes=rng.randrange(600)),
                          category=rng.choice(categories), source=rng.choice(sources)) for _ in range(rng.randint(1, 6))]
            store.articles.upsert(batch)
        assert feed_sizes(store) == counted_sizes(store), step
    assert 0 < feed_sizes(store)["all"] < 30


def test_migration_0002_counts_the_articles_already_stored(database_url):
    """A database from before the counts were kept: the upgrade counts what it holds."""
    from alembic import command
    from alembic.config import Config

    store = Store(database_url)
    store.migrate()
    day = datetime(2024, 4, 1, tzinfo=BEIJING)
    store.articles.upsert([make("a", day), make("b", day, category="热点/国内/北京", source="经济日报"),
                           make("c", day, category="财经", source=None), make("d", day, category="")])
    expected = counted_sizes(store)
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parents[1] / "feeds" / "store" / "migrations"))
    with store.db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
        conn.execute(sa.text("DELETE FROM feed_versions WHERE scope = 'source:jingjiribao'"))  # as if never bumped
    store.migrate()
    assert feed_sizes(store) == expected
    assert expected["all"] == 4 and expected["category:redian"] == 2 and expected["source:jingjiribao"] == 1
    store.close()
