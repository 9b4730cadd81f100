"""Hostile input: any text through import and the API comes out as well-formed feeds with the
same words; hostile URLs get a short 400 or 404, never a 500."""
from __future__ import annotations

import json
from typing import Any

import feedparser
import hypothesis
import pytest
from hypothesis import strategies as st
from lxml import etree

from feeds import create_app
from feeds.ingest import import_articles
from tests.conftest import article, make_settings

TOKEN = {"Authorization": "Bearer s3cret"}
STRICT = etree.XMLParser(recover=False, resolve_entities=False)
ATOM = "{http://www.w3.org/2005/Atom}"

# Everything that has broken feeds somewhere: every C0 and C1 control character, DEL, markup and
# CDATA ends, entities, quotes, Unicode spaces and line separators, astral characters (emoji,
# CJK Extension B), combining marks, bidi controls, plain Chinese.
CONTROLS = [chr(code) for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]
TOKENS = CONTROLS + [
    "]]>", "<![CDATA[", "&", "&amp;", "&#0;", "&#x1F600;", "&lt;", "<", ">", '"', "'", "<script>alert(1)</script>",
    "<b>粗</b>", "<p>段", "\u00a0", "\u3000", "\u2028", "\u2029", "\u200b", "\u202e", "\ufeff", "\ufffd", "\u0301",
    "😀", "👨‍👩‍👧", "𠀀", "𪚥", "中文", "新闻", "，", "、", "/", " ", "  ", "\t", "\n", "\r\n", "a", "Z", "0",
]
# Not Unicode characters at all: JSON can spell them (\ud800), the service refuses them.
NOT_UNICODE = ["\ud800", "\udbff", "\udc00", "\udfff", "\ufffe", "\uffff", "\ufdd0", "\U0001fffe"]


def hostile_text(tokens: list[str] = TOKENS, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.sampled_from(tokens), st.characters()), max_size=max_size).map("".join)


def xml_allowed(char: str) -> bool:
    """XML 1.0 §2.2: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]."""
    code = ord(char)
    return code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000


def expected(text: str) -> str:
    """What a one-line field reads as once stored: XML-forbidden characters gone, spaces folded."""
    return " ".join("".join(char for char in text if xml_allowed(char)).split())


# A category name may hold anything but the path separators "/" and ">" (README: category).
NAME_TOKENS = [token for token in TOKENS if "/" not in token and ">" not in token]


@st.composite
def hostile_articles(draw: Any) -> tuple[dict[str, Any], bool]:
    """An article whose every text field is hostile, and whether it holds a non-character."""
    raw: dict[str, Any] = {
        "id": "hostile",
        "url": "https://news.example.cn/hostile.html",
        "title": draw(hostile_text()),
        "summary": draw(st.none() | hostile_text(max_size=30)),
        "content": draw(st.none() | hostile_text(TOKENS + ['<a href="/x" title="', '">', "<img src=x alt='", "'>"], 40)),
        "author": draw(hostile_text()),
        "source": draw(hostile_text() | st.builds(lambda name: {"name": name}, hostile_text())),
        "tags": draw(st.lists(hostile_text(), max_size=4)),
        "category": draw(st.lists(hostile_text(NAME_TOKENS, 6), max_size=3)),
        "published": "2024-04-04 16:49:39",
    }
    poisoned = draw(st.booleans())
    if poisoned:  # one non-character, in one text field
        field = draw(st.sampled_from(["title", "summary", "content", "author", "tags"]))
        bad = draw(st.sampled_from(NOT_UNICODE))
        raw[field] = [*raw[field], bad] if field == "tags" else (raw[field] or "") + bad
    return raw, poisoned


def read_back(client: Any, path: str) -> dict[str, Any]:
    """The feed at ``path`` in all three formats, each checked well-formed; the first item's fields."""
    found: dict[str, Any] = {}
    for extension in ("rss", "atom"):
        response = client.get(f"/feeds/{path}.{extension}")
        assert response.status_code == 200, (path, extension, response.data[:300])
        root = etree.fromstring(response.data, STRICT)  # raises on anything not well-formed
        parsed = feedparser.parse(response.data)
        assert parsed.bozo == 0, (extension, parsed.get("bozo_exception"))
        item = root.find("channel/item") if extension == "rss" else root.find(f"{ATOM}entry")
        found[extension] = item.findtext("title" if extension == "rss" else f"{ATOM}title")
    response = client.get(f"/feeds/{path}.json")
    assert response.status_code == 200
    # feedparser 6.0 reads no JSON Feed: the strict JSON parser checks it, refusing NaN and lone surrogates.
    document = json.loads(response.get_data(as_text=True), parse_constant=pytest.fail)
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    found["json"] = document["items"][0]
    return found


def test_hostile_text_is_stored_clean_and_every_feed_stays_well_formed(tmp_path):
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'hostile.db'}", api={"token": "s3cret"}))
    client = app.test_client()
    services = app.extensions["feeds"]
    stored_title: list[str] = []

    @hypothesis.settings(max_examples=100, derandomize=True, deadline=None, database=None)
    @hypothesis.given(drawn=hostile_articles(), via=st.sampled_from(["import", "api"]))
    def check(drawn: tuple[dict[str, Any], bool], via: str) -> None:
        raw, poisoned = drawn
        line = json.dumps(raw)  # ASCII escapes: a lone surrogate travels as \ud800, as a client could send it
        title = expected(raw["title"])
        if via == "import":
            report = import_articles(services.store, services.settings, [line])
            accepted, reasons = not report.rejected, " ".join(reason for _, reason in report.rejected)
        else:
            response = client.post("/api/articles", data=line, content_type="application/json", headers=TOKEN)
            assert response.status_code in (200, 201, 400, 422), response.data
            accepted, reasons = response.status_code < 300, json.dumps(response.json, ensure_ascii=False)
        if poisoned:
            assert not accepted and "which is not a Unicode character" in reasons
        elif not title:
            assert not accepted and "title is empty" in reasons
        elif isinstance(raw["source"], dict) and not expected(raw["source"]["name"]):
            assert not accepted and "source.name is empty" in reasons
        else:
            assert accepted, reasons
            stored_title[:] = [title]
        if not stored_title:
            return
        items = read_back(client, "all")
        assert items["rss"] == items["atom"] == items["json"]["title"] == stored_title[0]
        if accepted:
            item = items["json"]
            author = expected(raw["author"])
            assert item.get("authors", [{}])[0].get("name") == (author or None)
            category = [name for name in (expected(name) for name in raw["category"]) if name]
            tags = [tag for tag in (expected(tag) for tag in raw["tags"]) if tag]
            assert item.get("tags", []) == (["/".join(category)] if category else []) + tags
            stored = services.store.articles.get("hostile")
            if stored.source:
                assert stored.source.name == expected(raw["source"]["name"] if isinstance(raw["source"], dict) else raw["source"])
                assert read_back(client, f"source/{stored.source.slug}")["json"]["title"] == title
            if stored.category:
                slug_path = next(c.slug_path for c in services.store.articles.categories() if c.names == stored.category)
                assert read_back(client, f"category/{slug_path}")["json"]["title"] == title

    check()
    services.store.close()


HOSTILE_URLS = [
    "/feeds/all.rss?limit=-1",
    "/feeds/all.rss?limit=abc",
    "/feeds/all.rss?limit=0",
    "/feeds/all.rss?limit=1.5",
    "/feeds/all.rss?limit=",
    "/feeds/all.rss?limit=99999999999999999999999999999999",
    "/feeds/all.rss?limit=1e3",
    "/feeds/all.rss?limit=%EF%BC%91%EF%BC%90",  # fullwidth １０
    "/feeds/all.rss?limit=%00",
    "/feeds/all.atom?limit=%F0%9F%98%80",
    "/feeds/hot/daily.json?limit=-5",
    "/feeds/../config.toml",
    "/feeds/%2e%2e/%2e%2e/etc/passwd.rss",
    "/feeds/category/..%2F..%2Fetc%2Fpasswd.rss",
    "/feeds/category/../../../../etc/passwd.rss",
    "/feeds/source/x'%20OR%20'1'='1.rss",
    "/feeds/source/%22%3B%20DROP%20TABLE%20articles%3B--.json",
    "/feeds/category/redian'%20UNION%20SELECT%20*%20FROM%20articles--.atom",
    "/feeds/all%00.rss",
    "/feeds/source/a%00b.rss",
    "/feeds/category/%00/%00.atom",
    "/feeds/hot/daily/category/%00.json",
    "/feeds/hot/%00.rss",
    "/feeds/hot/daily%00.rss",
    "/feeds/category/" + "a/" * 4000 + "x.rss",
    "/feeds/source/" + "x" * 20000 + ".rss",
    "/feeds/all.xml",
    "/feeds/all.RSS",
    "/feeds/all",
    "/feeds/.rss",
    "/feeds/all.rss.exe",
    "/feeds/category/%E7%83%AD%E7%82%B9.rss",
    "/feeds/category/redian%2Fguonei.rss%00.html",
    "/feeds/%ff%fe.rss",
    "/%ff",
    "/feeds.opml/../../etc/passwd",
]


@pytest.mark.parametrize("url", HOSTILE_URLS, ids=range(len(HOSTILE_URLS)))
def test_hostile_urls_get_a_short_400_or_404(database_url, url):
    app = create_app(make_settings(database_url, api={"token": "s3cret"}))
    client = app.test_client()
    assert client.post("/api/articles", json=article(), headers=TOKEN).status_code == 201
    response = client.get(url)
    assert response.status_code in (400, 404), (response.status_code, response.data[:500])
    assert response.mimetype == "text/plain" and len(response.data) < 300 and b"Traceback" not in response.data
    assert client.get("/feeds/all.json").json["items"][0]["title"] == article()["title"]  # nothing was harmed
    app.extensions["feeds"].store.close()


@pytest.mark.parametrize("article_id", ["%00", "a%00b", "..%2F..%2Fetc", "x'%20OR%20'1'='1", "z" * 5000])
def test_hostile_ids_in_the_api_are_a_json_404(database_url, article_id):
    app = create_app(make_settings(database_url, api={"token": "s3cret"}))
    response = app.test_client().delete(f"/api/articles/{article_id}", headers=TOKEN)
    assert response.status_code == 404 and "error" in response.json
    app.extensions["feeds"].store.close()
