"""Keyword feeds: /feeds/search.{rss,atom,json}?q=, checked against a brute-force scan of every article."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import feedparser
import lxml.html
import pytest
import sqlalchemy as sa

from feeds import create_app
from feeds.text import html_lines, spellings
from feeds.websub.hub import parse_topic
from tests.conftest import article, make_settings, migrated_from

AUTH = {"Authorization": "Bearer s3cret"}
WORDS = ["全国总工会", "工会", "西藏工匠", "工匠精神", "纺织", "经济", "国内", "国际", "市场", "新华社", "记者", "发布",
         "会议", "中国", "上海", "香港", "台湾", "软件", "AI", "Apple", "iPhone", "GDP", "5G", "100%", "C++", "a_b"]


def generated(count: int, seed: int = 7, days: int = 30) -> list[dict]:
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, 8, 0, 0)

    def text(n: int) -> str:
        return "".join(rng.choice(WORDS) + rng.choice(["", "，", "。", " ", "的"]) for _ in range(n))

    return [
        article(id=f"g{i}", url=f"https://news.example.cn/g{i}.html", title=text(4), summary=text(6),
                content=f"<p>{text(10)}</p><p>{text(8)}</p>", tags=None, author=None,
                published=(start + timedelta(minutes=rng.randrange(60 * 24 * days))).strftime("%Y-%m-%d %H:%M:%S"))
        for i in range(count)
    ]


@pytest.fixture
def searched(database_url):
    app = create_app(make_settings(database_url, api={"token": "s3cret"}))
    app.config["TESTING"] = True
    client = app.test_client()
    response = client.post("/api/articles", json=generated(300), headers=AUTH)
    assert response.status_code in (200, 201), response.data
    yield app, client
    app.extensions["feeds"].store.close()


def brute_force(app, terms: list[str], limit: int) -> list[str]:
    """The ids a reader expects: every term (case aside for Latin letters), as typed or in Simplified
    Chinese, in the title, summary or text."""
    everything = app.extensions["feeds"].store.articles.newest(100_000)
    found = []
    for a in everything:
        fields = [a.title.lower(), a.summary.lower(), "\n".join(html_lines(a.content)).lower()]
        if all(any(spelling in field for field in fields for spelling in spellings(term.lower())) for term in terms):
            found.append(a.id)
    return found[:limit]


def search_ids(client, query: str, limit: int = 100) -> list[str]:
    response = client.get("/feeds/search.json", query_string={"q": query, "limit": limit})
    assert response.status_code == 200, response.data
    guid_prefix = client.application.extensions["feeds"].settings.site.guid_prefix
    return [item["id"].removeprefix(guid_prefix) for item in json.loads(response.data)["items"]]


def test_every_query_finds_exactly_what_a_scan_finds(searched):
    app, client = searched
    rng = random.Random(11)
    queries = ["工会", "工匠", "全国总工会", "会议 工会", "藏工", "apple", "IPHONE gdp", "会", "国", "5g 100%", "c++", "a_b",
               "工会的", "。", "不存在的词"]
    for _ in range(40):  # substrings of words, and across neighbouring words
        terms = []
        for _ in range(rng.choice([1, 2, 2, 3])):
            word = "".join(rng.sample(WORDS, 2))
            start = rng.randrange(len(word))
            terms.append(word[start:start + rng.choice([1, 2, 3, 4])])
        queries.append(" ".join(terms))
    for query in queries:
        assert search_ids(client, query) == brute_force(app, query.split(), 100), query


def test_a_search_reaches_back_week_by_week_to_the_oldest_article(database_url):
    """Three years of articles, thinning out into the past: each query asks the newest week, then
    ever more weeks before it; whatever the limit, it finds what a scan finds, in the same order."""
    app = create_app(make_settings(database_url, api={"token": "s3cret"}))
    client = app.test_client()
    rows = generated(150, seed=21, days=1100) + generated(150, seed=22, days=20)
    rows = [{**row, "id": f"{row['id']}-{n}"} for n, row in enumerate(rows)]
    rows[0] = {**rows[0], "title": "独一无二的标题", "published": "2021-03-01 10:00:00"}  # older than the rest, alone
    try:
        assert client.post("/api/articles", json=rows, headers=AUTH).status_code in (200, 201)
        for query in ["工会", "西藏工匠 纺织", "独一无二", "二的标", "apple 国际 经济", "不存在的词"]:
            for limit in (1, 3, 20, 100):
                assert search_ids(client, query, limit) == brute_force(app, query.split(), limit), (query, limit)
        moved = {**rows[0], "published": "2024-06-01 09:00:00"}  # edited into another week: indexed under it alone
        assert client.post("/api/articles", json=[moved], headers=AUTH).status_code in (200, 201)
        assert search_ids(client, "独一无二") == [moved["id"]]
        assert search_ids(client, "独一无二 工会") == brute_force(app, ["独一无二", "工会"], 100)
    finally:
        app.extensions["feeds"].store.close()


def test_traditional_characters_and_taiwan_words_find_the_simplified_text(searched):
    app, client = searched
    assert spellings("工會") == ("工會", "工会") and "软件" in spellings("軟體") and spellings("工会") == ("工会",)
    for query in ["工會", "全國總工會", "軟體", "台灣 會議", "西藏工匠 軟體", "香港"]:
        expected = brute_force(app, query.split(), 100)
        assert expected and search_ids(client, query) == expected, query
    assert search_ids(client, "工會") == search_ids(client, "工会")
    assert set(search_ids(client, "軟體")) >= set(search_ids(client, "软件"))
    taiwan = feedparser.parse(client.get("/feeds/search.rss", query_string={"q": "工會", "variant": "zh-TW"}).data)
    assert taiwan.feed.language == "zh-TW" and taiwan.feed.title.endswith("搜尋:工會")
    assert [entry.id for entry in taiwan.entries] == [entry.id for entry in feedparser.parse(client.get("/feeds/search.rss?q=工会").data).entries]
    assert all("会" not in entry.title for entry in taiwan.entries) and any("會" in entry.title for entry in taiwan.entries)


def test_every_page_offers_a_keyword_search_in_its_own_variant(searched):
    _, client = searched
    page = lxml.html.fromstring(client.get("/feeds/search.html?q=工會&variant=zh-TW").data)
    form = page.xpath("//form[@role='search' and .//input[@name='q']]")[0]
    assert form.xpath(".//input[@name='q']/@value") == ["工會"]
    assert form.xpath(".//input[@name='variant']/@value") == ["zh-TW"]
    assert form.get("action") == "/feeds/search.html"
    for url in ["/", "/?variant=zh-HK", "/feeds/all.html", "/feeds/all.html?variant=zh-HK"]:
        page = lxml.html.fromstring(client.get(url).data)
        form = page.xpath("//form[@role='search' and .//input[@name='q']]")[0]
        assert form.xpath(".//input[@name='variant']/@value") == (["zh-HK"] if "zh-HK" in url else []), url
        assert form.xpath(".//input[@name='q']/@value") == [""], url


@pytest.mark.parametrize("query", ['"工会"', "工会 OR 纺织", "工会 NEAR 纺织", "工*", "%", "_", "\\", "工会\\", "(工会)",
                                   "工会)", "'; DROP TABLE articles; --", "工\x00会", "NOT 工会", "^工会", "工会:纺织", "{工会}"])
def test_a_query_is_text_never_syntax(searched, query):
    app, client = searched
    response = client.get("/feeds/search.rss", query_string={"q": query})
    assert response.status_code == 200, response.data
    assert feedparser.parse(response.data).bozo == 0
    cleaned = ["".join(c for c in word if c.isprintable()) for word in query.split()]
    assert search_ids(client, query) == brute_force(app, [t for t in cleaned if t], 100)


@pytest.mark.parametrize("query, message", [("", "q is empty"), ("   ", "q is empty"), ("\x00", "q is empty"),
                                            ("工" * 101, "at most 100 characters"), (" ".join("abcdefghijk"), "at most 10 words")])
def test_an_empty_or_overlong_query_is_a_400(searched, query, message):
    _, client = searched
    response = client.get("/feeds/search.atom", query_string={"q": query})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_no_query_and_other_paths(searched):
    _, client = searched
    assert client.get("/feeds/search.rss").status_code == 400
    assert client.get("/feeds/search/工会.rss").status_code == 404
    assert client.get("/feeds/archive/search/1.rss?q=工会").status_code == 404


def test_the_keyword_feed_in_every_format_and_page(searched):
    _, client = searched
    rss = client.get("/feeds/search.rss?q=工会 会议&limit=5")
    parsed = feedparser.parse(rss.data)
    assert parsed.bozo == 0 and len(parsed.entries) == 5
    assert parsed.feed.title.endswith("搜索:工会 会议")
    self_link = next(link.href for link in parsed.feed.links if link.rel == "self")
    assert self_link == "http://feeds.test/feeds/search.rss?q=%E5%B7%A5%E4%BC%9A+%E4%BC%9A%E8%AE%AE"
    assert f"<{self_link}>; rel=\"self\"" in rss.headers["Link"]
    atom = feedparser.parse(client.get("/feeds/search.atom?q=工会").data)
    assert atom.bozo == 0 and atom.entries
    preview = client.get("/feeds/search.html?q=工会")
    assert preview.status_code == 200 and "工会" in preview.get_data(as_text=True)
    taiwan = feedparser.parse(client.get("/feeds/search.rss?q=工会&variant=zh-TW").data)
    assert taiwan.feed.language == "zh-TW" and "工會" in taiwan.entries[0].title


def test_cached_like_every_feed_and_a_write_shows_at_once(searched):
    _, client = searched
    first = client.get("/feeds/search.rss?q=独一无二")
    assert feedparser.parse(first.data).entries == []
    assert client.get("/feeds/search.rss?q=独一无二", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    new = article(id="new", url="https://news.example.cn/new.html", title="独一无二的新闻", published="2024-03-01 08:00:00")
    assert client.post("/api/articles", json=new, headers=AUTH).status_code == 201
    after = client.get("/feeds/search.rss?q=独一无二", headers={"If-None-Match": first.headers["ETag"]})
    assert after.status_code == 200
    assert [e.title for e in feedparser.parse(after.data).entries] == ["独一无二的新闻"]
    assert client.post("/api/articles", json={**new, "title": "改了标题", "content": "<p>别的</p>", "summary": "别的"},
                       headers=AUTH).status_code == 200
    assert feedparser.parse(client.get("/feeds/search.rss?q=独一无二").data).entries == []
    assert client.post("/api/articles", json={**new, "title": "独一无二"}, headers=AUTH).status_code == 200
    assert client.delete("/api/articles/new", headers=AUTH).status_code == 200
    assert feedparser.parse(client.get("/feeds/search.rss?q=独一无二").data).entries == []


def test_a_keyword_feed_is_a_websub_topic(searched):
    app, _ = searched
    settings = app.extensions["feeds"].settings
    topic = parse_topic("http://feeds.test/feeds/search.rss?q=%E5%B7%A5%E4%BC%9A&variant=zh-HK", settings)
    assert topic is not None and topic.path == "search/工会" and topic.variant == "zh-HK"
    assert parse_topic("http://feeds.test/feeds/search.rss?q=", settings) is None
    assert parse_topic("http://feeds.test/feeds/search.rss", settings) is None


def test_migration_indexes_the_articles_already_stored(database_url):
    from feeds.store import Store
    from feeds.validate import article_from_dict

    store = Store(database_url)
    store.migrate()
    settings = make_settings(database_url)
    rows = generated(1200, seed=3)  # more than one batch of the migration
    for start in range(0, len(rows), 500):
        store.articles.upsert([article_from_dict(row, settings) for row in rows[start:start + 500]])
    store = migrated_from(store, "0004", "article_search")
    try:
        everything = store.articles.newest(100_000)
        expected = [a.id for a in everything if any("工匠" in field for field in (a.title, a.summary, a.content))][:50]
        assert expected and [a.id for a in store.search.newest([("工匠",)], 50)] == expected
        with store.db.engine.begin() as conn:  # an index of 0005, without weeks: nothing of it is found
            conn.execute(sa.text("INSERT INTO article_search (article_search) VALUES ('delete-all')" if store.db.dialect == "sqlite"
                                 else "TRUNCATE article_search"))
        assert store.search.newest([("工匠",)], 50) == []
        store = migrated_from(store, "0005")
        assert [a.id for a in store.search.newest([("工匠",)], 50)] == expected
    finally:
        store.close()


def test_edits_and_deletions_keep_the_index_exact(searched):
    app, client = searched
    rows = generated(300)
    rng = random.Random(5)
    edited = [{**row, "title": row["summary"][:20], "summary": row["title"]} for row in rng.sample(rows, 60)]
    twice = [{**rows[0], "id": "fresh", "url": "https://news.example.cn/fresh.html", "title": "西藏工匠"},
             {**rows[0], "id": "fresh", "url": "https://news.example.cn/fresh.html", "title": "纺织市场"}]
    assert client.post("/api/articles", json=edited + twice, headers=AUTH).status_code in (200, 201)
    for row in rng.sample(rows, 40):
        assert client.delete(f"/api/articles/{row['id']}", headers=AUTH).status_code == 200
    for query in ["工匠", "藏工", "纺织市场", "市场 纺织", "工会 会议", "apple", "会", "gdp 5g"]:
        assert search_ids(client, query) == brute_force(app, query.split(), 100), query


def test_a_reader_in_taiwan_subscribes_to_union_news_from_a_domestic_page(database_url):
    """From the 國內 page in Traditional characters, by its tag link or its keyword box, a reader
    subscribes to 工會 news and gets exactly the articles a search shows, in Traditional characters."""
    app = create_app(make_settings(database_url, api={"token": "s3cret"}))
    client = app.test_client()
    union = [article(id=f"u{i}", url=f"https://news.example.cn/u{i}.html", published=f"2024-04-0{i} 09:00:00",
                     title=f"第{i}届全国总工会职工代表会议", tags=["工会", "职工"]) for i in range(1, 5)]
    others = [article(id=f"o{i}", url=f"https://news.example.cn/o{i}.html", published=f"2024-04-0{i} 10:00:00",
                      title=f"纺织市场第{i}季度报告", content="<p>市场平稳</p>", tags=["纺织"], author="李明")
              for i in range(1, 5)]
    try:
        assert client.post("/api/articles", json=union + others, headers=AUTH).status_code in (200, 201)
        domestic = lxml.html.fromstring(client.get("/feeds/category/redian/guonei.html?variant=zh-TW").data)
        tag_page_url = domestic.xpath("//p[@class='tags']/a[text()='工會']/@href")[0]
        assert tag_page_url == "/feeds/tag/gonghui.html?variant=zh-TW"
        tag_page = lxml.html.fromstring(client.get(tag_page_url).data)
        tag_feed_url = tag_page.xpath("//link[@rel='alternate' and @type='application/rss+xml']/@href")[0]
        tag_feed = feedparser.parse(client.get(tag_feed_url).data)

        form = domestic.xpath("//form[@role='search' and .//input[@name='q']]")[0]
        asked = {"q": "工會", **{field.get("name"): field.get("value") for field in form.xpath(".//input[@type='hidden']")}}
        search_page = lxml.html.fromstring(client.get(form.get("action"), query_string=asked).data)
        search_feed_url = search_page.xpath("//link[@rel='alternate' and @type='application/rss+xml']/@href")[0]
        search_feed = feedparser.parse(client.get(search_feed_url).data)

        expected = [f"{app.extensions['feeds'].settings.site.guid_prefix}u{i}" for i in (4, 3, 2, 1)]
        for feed in (tag_feed, search_feed):
            assert feed.feed.language == "zh-TW"
            assert [entry.id for entry in feed.entries] == expected
            assert all("總工會" in entry.title and "总工会" not in entry.title for entry in feed.entries)
        assert search_ids(client, "工会") == [f"u{i}" for i in (4, 3, 2, 1)] == brute_force(app, ["工會"], 100)
    finally:
        app.extensions["feeds"].store.close()
