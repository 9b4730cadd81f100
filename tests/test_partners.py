"""Partner feeds: keyed feeds the public does not get, with their own limits, content and self links."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import feedparser
import pytest

from feeds import create_app
from feeds.config import load_settings
from feeds.errors import ConfigError
from feeds.model import Image
from feeds.profiles import check
from feeds.cli import main
from tests import test_hub
from tests.conftest import Runner, article, make_settings
from tests.test_hub import subscribe, work
from tests.test_writers import FEED, item

TOKEN = {"Authorization": "Bearer s3cret"}
subscribers = test_hub.subscribers  # the fixture: callbacks on loopback
KEY, OLD_KEY, OTHER = "flipboard-key-0001", "flipboard-key-old0", "smartnews-key-0001"


@pytest.fixture
def site(sqlite_url):
    app = create_app(make_settings(sqlite_url, api={"token": "s3cret"}, partners={
        "flipboard": {"keys": [KEY, OLD_KEY], "profile": "flipboard", "limit": 30},
        "smartnews": {"keys": [OTHER], "content": "summary", "limit": 2, "feeds": ["all", "category/redian/guonei"]},
    }))
    app.config["TESTING"] = True
    client = app.test_client()
    now = datetime.now(timezone.utc)
    rows = [article(id=f"p{n}", url=f"https://news.example.cn/p/{n}.html", title=f"第{n}条",
                    published=(now - timedelta(hours=n)).isoformat()) for n in range(25)]
    rows.append(article(id="later", url="https://news.example.cn/later.html", title="稍后",
                        published=(now + timedelta(hours=1)).isoformat()))
    assert client.post("/api/articles", json=rows, headers=TOKEN).status_code == 201
    yield app, client
    app.extensions["feeds"].store.close()


def self_link(parsed) -> str:
    (found,) = [link["href"] for link in parsed.feed.links if link.get("rel") == "self"]
    return found


def test_a_partner_reads_its_feeds_with_its_own_limit_and_self_link(site):
    _, client = site
    response = client.get(f"/partner/{KEY}/all.rss")
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("private") and response.headers["X-Robots-Tag"] == "noindex"
    parsed = feedparser.parse(response.data)
    assert len(parsed.entries) == 25 and "稍后" not in response.get_data(as_text=True)  # its 30, the scheduled one left out
    assert self_link(parsed) == f"http://feeds.test/partner/{KEY}/all.rss"
    assert parsed.entries[0].content[0].value  # full text
    assert client.get(f"/partner/{KEY}/all.rss", headers={"If-None-Match": response.headers["ETag"]}).status_code == 304
    assert len(feedparser.parse(client.get(f"/partner/{KEY}/all.atom?limit=5").data).entries) == 5
    assert client.get(f"/partner/{KEY}/all.atom?limit=31").status_code == 400
    assert client.get(f"/partner/{OLD_KEY}/all.json").status_code == 200  # the key being replaced still works
    taiwan = client.get(f"/partner/{KEY}/category/redian.rss?variant=zh-TW")
    assert self_link(feedparser.parse(taiwan.data)) == f"http://feeds.test/partner/{KEY}/category/redian.rss?variant=zh-TW"


def test_a_partner_reads_only_its_feeds_and_a_wrong_key_is_an_unknown_feed(site):
    _, client = site
    assert client.get(f"/partner/{OTHER}/category/redian/guonei.rss").status_code == 200
    forbidden = client.get(f"/partner/{OTHER}/hot/daily.rss")
    unknown = client.get("/partner/not-a-key-at-all-00/all.rss")
    nothing = client.get(f"/partner/{KEY}/category/nowhere.rss")
    assert forbidden.status_code == unknown.status_code == nothing.status_code == 404
    assert forbidden.data.replace(b"hot/daily", b"X") == unknown.data.replace(b"all", b"X") == nothing.data.replace(b"category/nowhere", b"X")


def test_summary_partners_get_no_text(site):
    _, client = site
    parsed = feedparser.parse(client.get(f"/partner/{OTHER}/all.atom").data)
    assert len(parsed.entries) == 2 and all("content" not in entry for entry in parsed.entries)
    assert "content_html" not in client.get(f"/partner/{OTHER}/all.json").get_json()["items"][0]


def test_the_public_never_sees_a_partner_feed_or_key(site):
    _, client = site
    for url in ("/", "/feeds.opml", "/sitemap.xml", "/feeds/all.rss", "/feeds/all.html", "/robots.txt"):
        text = client.get(url).get_data(as_text=True)
        assert KEY not in text and "/partner/" not in text, url


def test_partner_polls_are_counted_apart(site):
    _, client = site
    client.get(f"/partner/{KEY}/all.rss", headers={"User-Agent": "Flipboard/1.0"})
    client.get("/feeds/all.rss")
    feeds = {row["feed"]: row for row in client.get("/admin/stats.json", headers=TOKEN).get_json()["feeds"]}
    assert feeds["partner/flipboard/all"]["requests"] == 1 and feeds["all"]["requests"] == 1
    assert feeds["partner/flipboard/all"]["title"].startswith("合作方 flipboard · ")
    assert 'feeds_partner_polls_total{partner="flipboard",status="200"}' in client.get("/metrics").get_data(as_text=True)


@pytest.mark.parametrize("partners, says", [
    ({"a": {"keys": ["short"]}}, r"partners.a.keys\[0\]"),
    ({"a": {"keys": []}}, "partners.a.keys"),
    ({"a": {"keys": [KEY]}, "b": {"keys": [KEY]}}, r"partners.b.keys\[0\]: the same key"),
    ({"a": {"keys": [KEY], "profile": "yahoo"}}, "partners.a.profile"),
    ({"a": {"keys": [KEY], "limit": 501}}, "partners.a.limit"),
    ({"a": {"keys": [KEY], "content": "some"}}, "partners.a.content"),
    ({"A B": {"keys": [KEY]}}, "partners.A B"),
    ({"a": {"keys": [KEY], "colour": "red"}}, "partners.a.colour: unknown key"),
])
def test_bad_partner_settings_name_the_key(partners, says):
    with pytest.raises(ConfigError, match=says):
        load_settings(overrides={"partners": partners}, environ={})


@pytest.fixture
def checked(sqlite_url):
    """Three partners with profiles, over articles that break some of each profile's rules."""
    app = create_app(make_settings(sqlite_url, api={"token": "s3cret"}, site={"base_url": "https://feeds.test"}, partners={
        "msn": {"keys": ["msn-key-0000000001"], "profile": "msn", "feeds": ["all"], "limit": 10},
        "flipboard": {"keys": [KEY], "profile": "flipboard", "feeds": ["all"], "content": "summary"},
        "smartnews": {"keys": [OTHER], "profile": "smartnews", "feeds": ["category/redian"]},
        "quiet": {"keys": ["quiet-key-00000001"]},  # no profile: not checked
    }))
    app.config["TESTING"] = True
    client = app.test_client()
    now = datetime.now(timezone.utc)
    rows = [
        article(id="good", url="https://news.example.cn/good.html", published=(now - timedelta(hours=1)).isoformat(),
                image={"url": "https://news.example.cn/g.jpg", "width": 1200, "height": 675}),
        article(id="small", url="https://news.example.cn/small.html", title="短标题", published=(now - timedelta(hours=2)).isoformat(),
                image={"url": "https://news.example.cn/s.jpg", "width": 300, "height": 200}),
        article(id="unsized", url="https://news.example.cn/unsized.html", author=None, published=(now - timedelta(hours=3)).isoformat(),
                image="https://news.example.cn/u.jpg"),
        article(id="bare", url="https://news.example.cn/bare.html", image=None, published="2020-01-01 08:00:00"),
    ]
    assert client.post("/api/articles", json=rows, headers=TOKEN).status_code == 201
    yield app, client
    app.extensions["feeds"].store.close()


def problems_of(found, partner: str) -> set[tuple[str, str]]:
    return {(problem.rule, problem.where) for problem in found[partner]}


def test_the_check_names_each_broken_rule_with_the_article_and_the_partners_page(checked):
    app, client = checked
    with app.app_context():
        from feeds.partners import readiness

        found = readiness()
    assert set(found) == {"msn", "flipboard", "smartnews"}
    assert problems_of(found, "msn") == {("title", "all: small"), ("published", "all: bare"), ("image", "all: small"),
                                         ("image", "all: unsized"), ("image", "all: bare")}
    unsized = next(p for p in found["msn"] if p.where == "all: unsized")
    assert "unknown size" in unsized.found and unsized.source.startswith("https://helpcenter.microsoftstart.com/")
    assert problems_of(found, "flipboard") >= {("full-text", "all: good"), ("items", "all"), ("author", "all: unsized"),
                                               ("image", "all: small"), ("image", "all: unsized")}
    assert not {("image", "all: good"), ("push", "all")} & problems_of(found, "flipboard")  # the own hub is named
    assert problems_of(found, "smartnews") == {("logo", "category/redian")}  # its description is short enough
    answer = client.get("/admin/partners", headers=TOKEN).get_json()
    assert answer["ready"] is False and {p["rule"] for p in answer["partners"]["smartnews"]} == {"logo"}
    assert client.get("/admin/partners").status_code == 401


def test_feeds_partners_check_prints_the_problems_and_fails(checked):
    app, _ = checked
    runner = Runner(app)
    result = runner.cli.invoke(main, ["partners", "check", "smartnews"], obj=app)
    assert result.exit_code == 1
    assert "smartnews: 1 problem\n" in result.output and "logo  category/redian: no site.icon or site.logo" in result.output
    assert "msn" not in result.output
    assert runner.cli.invoke(main, ["partners", "check", "nobody"], obj=app).exit_code == 1


def test_a_partner_feed_is_a_websub_topic_of_the_own_hub(sqlite_url, subscribers):
    app = create_app(make_settings(sqlite_url, api={"token": "s3cret"}, websub={"allow_callbacks": ["127.0.0.1/32"], "timeout": 2},
                                   partners={"flipboard": {"keys": [KEY], "feeds": ["all"], "limit": 5}}))
    try:
        client = app.test_client()
        topic = f"http://feeds.test/partner/{KEY}/all.rss"
        assert 'rel="hub"' in client.get(f"/partner/{KEY}/all.rss").headers["Link"]
        assert subscribe(client, f"{subscribers.url}/partner", topic=topic).status_code == 202
        assert subscribe(client, f"{subscribers.url}/x", topic=f"http://feeds.test/partner/{KEY}/hot/daily.rss").status_code == 404
        assert subscribe(client, f"{subscribers.url}/x", topic="http://feeds.test/partner/not-a-key-at-all-00/all.rss").status_code == 404
        work(app)
        assert client.post("/api/articles", json=article(), headers=TOKEN).status_code == 201
        work(app)
        (headers, body), = subscribers["partner"].deliveries
        assert body == client.get(f"/partner/{KEY}/all.rss").data
        assert f'<{topic}>; rel="self"' in headers["Link"]
        rows = client.get("/admin/stats.json", headers=TOKEN).get_json()["feeds"]
        assert any(row["feed"] == "partner/flipboard/all" and row["websub"]["active"] == 1 for row in rows)
    finally:
        app.extensions["feeds"].store.close()


# -- each rule of each profile, on feeds made by hand -------------------------------------------------------------------

def broken(profile: str, feed, body: bytes = b"<rss/>") -> set[str]:
    return {problem.rule for problem in check(profile, feed, body, NOW, "tag:news.example.cn,2024:article:")}


NOW = datetime(2026, 12, 6, 12, tzinfo=timezone.utc)


def good_feed(**changes):
    """A feed every profile takes: HTTPS, a hub, a logo, a short description, 30 items each keeping every item rule."""
    items = tuple(item(n, title=f"一条足够长的新闻标题,超过二十个字符的那一种第{n}条", image=Image(f"https://news.example.cn/{n}.jpg", 1200, 675),
                       published=NOW - timedelta(hours=n + 1)) for n in range(30))
    return replace(FEED, address="https://feeds.example.cn/partner/k/all", items=items, hubs=("https://feeds.example.cn/hub",),
                   description="全部文章", icon="https://news.example.cn/icon.png", **changes)


@pytest.mark.parametrize("profile", ["msn", "flipboard", "smartnews"])
def test_a_feed_keeping_every_rule_breaks_none(profile):
    assert broken(profile, good_feed()) == set()


@pytest.mark.parametrize("profile, rule, change", [
    ("msn", "https", lambda f: f.__class__(**{**f.__dict__, "address": "http://feeds.example.cn/partner/k/all"})),
    ("msn", "body", lambda f: with_first(f, content_html="")),
    ("msn", "title", lambda f: with_first(f, title="太短的标题")),
    ("msn", "title", lambda f: with_first(f, title="长" * 151)),
    ("msn", "published", lambda f: with_first(f, published=NOW + timedelta(minutes=1))),
    ("msn", "published", lambda f: with_first(f, published=NOW - timedelta(days=366))),
    ("msn", "image", lambda f: with_first(f, image=None)),
    ("msn", "image", lambda f: with_first(f, image=image(700, 500))),
    ("flipboard", "full-text", lambda f: with_first(f, content_html="")),
    ("flipboard", "image", lambda f: with_first(f, image=image(399, 1000))),
    ("flipboard", "author", lambda f: with_first(f, author=None)),
    ("flipboard", "items", lambda f: f.__class__(**{**f.__dict__, "items": f.items[:29]})),
    ("flipboard", "push", lambda f: f.__class__(**{**f.__dict__, "hubs": ()})),
    ("smartnews", "logo", lambda f: f.__class__(**{**f.__dict__, "icon": None, "logo": None})),
    ("smartnews", "description", lambda f: f.__class__(**{**f.__dict__, "description": "长" * 31})),
])
def test_each_rule_is_broken_by_what_it_names(profile, rule, change):
    assert broken(profile, change(good_feed())) == {rule}


def test_a_feed_of_a_megabyte_is_too_large_for_smartnews_and_an_unsized_image_is_unknown():
    assert broken("smartnews", good_feed(), b"x" * 1_000_000) == {"size"}
    feed = with_first(good_feed(), image=Image("https://news.example.cn/u.jpg"))
    (problem,) = check("msn", feed, b"", NOW, "tag:news.example.cn,2024:article:")
    assert problem.found == "an image of unknown size (https://news.example.cn/u.jpg)" and problem.where == "all: 0"


def with_first(feed, **changes):
    return replace(feed, items=(replace(feed.items[0], **changes), *feed.items[1:]))


def image(width: int, height: int):
    return Image("https://news.example.cn/x.jpg", width, height)
