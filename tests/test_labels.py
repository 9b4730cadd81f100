"""Tag and author feeds: /feeds/tag/<slug> and /feeds/author/<slug>, kept in the article's own transaction."""
from __future__ import annotations

import json

import feedparser
import pytest
import sqlalchemy as sa
from lxml import etree

from feeds import create_app
from feeds.store import Store
from tests.conftest import article, make_settings, migrated_from

AUTH = {"Authorization": "Bearer s3cret"}
ARTICLES = [
    article(),  # tags 工会, 纺织; author 朱欣; 2024-04-04
    article(id="b", url="https://news.example.cn/b.html", title="全国总工会召开会议", tags=["工会"], author="李明",
            published="2024-04-05 09:00:00"),
    article(id="c", url="https://news.example.cn/c.html", title="纺织业出口增长", tags="纺织、外贸", author="朱欣",
            published="2024-04-03 08:00:00"),
    article(id="d", url="https://news.example.cn/d.html", title="没有标签的文章", tags=None, author=None,
            published="2024-04-06 08:00:00"),
]


@pytest.fixture
def labelled(database_url):
    def make(**sections):
        app = create_app(make_settings(database_url, api={"token": "s3cret"}, **sections))
        app.config["TESTING"] = True
        client = app.test_client()
        for row in ARTICLES:
            assert client.post("/api/articles", json=row, headers=AUTH).status_code == 201
        made.append(app)
        return app, client

    made: list = []
    yield make
    for app in made:
        app.extensions["feeds"].store.close()


def titles(client, path: str) -> list[str]:
    response = client.get(path)
    assert response.status_code == 200, response.data
    parsed = feedparser.parse(response.data)
    assert parsed.bozo == 0
    return [entry.title for entry in parsed.entries]


@pytest.mark.parametrize("extension", ["rss", "atom", "json"])
def test_tag_and_author_feeds_hold_exactly_their_articles_newest_first(labelled, extension):
    _, client = labelled()
    tag = client.get(f"/feeds/tag/gonghui.{extension}")
    author = client.get(f"/feeds/author/zhuxin.{extension}")
    assert tag.status_code == author.status_code == 200
    if extension == "json":
        tag_items, author_items = json.loads(tag.data)["items"], json.loads(author.data)["items"]
        assert [item["title"] for item in tag_items] == ["全国总工会召开会议", ARTICLES[0]["title"]]
        assert [item["title"] for item in author_items] == [ARTICLES[0]["title"], "纺织业出口增长"]
        everything = {item["title"]: item["id"] for item in json.loads(client.get("/feeds/all.json").data)["items"]}
        assert all(everything[item["title"]] == item["id"] for item in tag_items + author_items)  # the same guid everywhere
    else:
        etree.fromstring(tag.data)
        assert titles(client, f"/feeds/tag/gonghui.{extension}") == ["全国总工会召开会议", ARTICLES[0]["title"]]
        assert titles(client, f"/feeds/author/zhuxin.{extension}") == [ARTICLES[0]["title"], "纺织业出口增长"]
        assert feedparser.parse(tag.data).feed.title.endswith("标签:工会")
    assert titles(client, "/feeds/tag/waimao.rss") == ["纺织业出口增长"]  # tags given as one string, split at 、


@pytest.mark.parametrize("path", ["tag/nothing.rss", "author/nobody.rss", "tag/.rss", "tag/gonghui/x.rss",
                                  "archive/tag/gonghui/1.rss", "label/gonghui.rss"])
def test_unknown_labels_are_a_404(labelled, path):
    _, client = labelled()
    assert client.get(f"/feeds/{path}").status_code == 404


def test_slugs_chosen_in_config(labelled):
    _, client = labelled(slugs={"tags": {"工会": "union"}, "authors": {"朱欣": "zhu-xin"}})
    assert titles(client, "/feeds/tag/union.rss")[0] == "全国总工会召开会议"
    assert len(titles(client, "/feeds/author/zhu-xin.rss")) == 2
    assert client.get("/feeds/tag/gonghui.rss").status_code == 404


def test_an_edit_or_deletion_shows_at_once(labelled):
    _, client = labelled()
    before = client.get("/feeds/tag/gonghui.rss")
    edited = {**ARTICLES[1], "tags": ["纺织"], "author": "朱欣"}
    assert client.post("/api/articles", json=edited, headers=AUTH).status_code == 200
    after = client.get("/feeds/tag/gonghui.rss", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert [e.title for e in feedparser.parse(after.data).entries] == [ARTICLES[0]["title"]]
    assert titles(client, "/feeds/author/zhuxin.rss")[0] == "全国总工会召开会议"
    assert client.get("/feeds/author/liming.rss").status_code == 200  # the label stays, with no articles
    assert titles(client, "/feeds/author/liming.rss") == []
    assert client.delete(f"/api/articles/{ARTICLES[0]['id']}", headers=AUTH).status_code == 200
    assert titles(client, "/feeds/tag/gonghui.rss") == []
    assert titles(client, "/feeds/author/zhuxin.rss") == ["全国总工会召开会议", "纺织业出口增长"]


def test_stored_listing_matches_the_articles_after_edits(labelled):
    app, client = labelled()
    edits = [{**ARTICLES[0], "tags": ["外贸"], "published": "2024-04-07 10:00:00"}, {**ARTICLES[2], "author": None},
             {**ARTICLES[3], "tags": ["工会", "工会"], "author": "李明"}]
    for row in edits:
        assert client.post("/api/articles", json=row, headers=AUTH).status_code == 200
    store: Store = app.extensions["feeds"].store
    with store.db.read() as conn:
        listed = set(conn.execute(sa.text(
            "SELECT l.kind, l.name, a.id, al.published = a.published FROM article_labels al "
            "JOIN labels l ON l.id = al.label_id JOIN articles a ON a.pk = al.article_pk")).all())
        stored = conn.execute(sa.text("SELECT id, tags, author FROM articles")).all()
    expected = {("tag", tag, id_, True) for id_, tags, _ in stored for tag in json.loads(tags)}
    expected |= {("author", author, id_, True) for id_, _, author in stored if author}
    assert listed == expected


def test_preview_index_and_opml(labelled):
    _, client = labelled(labels={"opml": True, "index_tags": 1})
    preview = client.get("/feeds/tag/gonghui.html")
    assert preview.status_code == 200 and "工会" in preview.get_data(as_text=True)
    index = etree.HTML(client.get("/").data)
    tags = index.xpath('//section[@id="tags"]//h3/a/text()')
    authors = index.xpath('//section[@id="authors"]//h3/a/text()')
    assert tags == ["纺织"]  # index_tags = 1: the most used (工会 has 2 too; fangzhi sorts first)
    assert authors == ["朱欣", "李明"]
    opml = etree.fromstring(client.get("/feeds.opml").data)
    groups = {group.get("text"): [o.get("xmlUrl") for o in group.iter("outline") if o.get("xmlUrl")] for group in opml.find("body")}
    assert groups["标签"] == ["http://feeds.test/feeds/tag/fangzhi.rss"]
    assert groups["作者"] == ["http://feeds.test/feeds/author/zhuxin.rss", "http://feeds.test/feeds/author/liming.rss"]


def test_opml_leaves_labels_out_unless_asked(labelled):
    _, client = labelled()
    opml = etree.fromstring(client.get("/feeds.opml").data)
    assert {group.get("text") for group in opml.find("body")} == {"全部文章", "栏目", "来源", "热门文章"}


def test_migration_lists_the_articles_already_stored(database_url):
    store = Store(database_url)
    store.migrate()
    from feeds.validate import article_from_dict

    settings = make_settings(database_url)
    store.articles.upsert([article_from_dict(row, settings) for row in ARTICLES])
    store = migrated_from(store, "0003", "article_labels", "labels", "article_search")
    try:
        assert [(label.slug, used) for label, used in store.labels.most_used("tag")] == [("fangzhi", 2), ("gonghui", 2), ("waimao", 1)]
        assert [(label.name, used) for label, used in store.labels.most_used("author")] == [("朱欣", 2), ("李明", 1)]
        zhuxin = store.labels.get("author", "zhuxin")
        assert [a.id for a in store.articles.newest(10, label=zhuxin)] == [ARTICLES[0]["id"], "c"]
    finally:
        store.close()
