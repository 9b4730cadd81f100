"""The embeddable boxes over HTTP: what they show (ranks, cut titles, tabs, links, theme), how they are
cached (ETag, 304, Cache-Control, a write seen at once), who may frame them, and the 400s for bad options.
In a real browser, on another site's page: tests/test_browser.py."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import lxml.html
import pytest

from feeds import create_app
from feeds.config import load_settings
from feeds.errors import ConfigError
from feeds.text import clip
from tests.conftest import article, make_settings

AUTH = {"Authorization": "Bearer s3cret"}
LONG_TITLE = "中国财贸轻纺烟草工会与中国纺织工业联合会召开第二十一次联席会议"  # the seed's headline, 31 characters


@pytest.fixture
def loaded(client):
    """Five articles, read 5, 4, 3, 2 and 1 times in the last hour: a hot list in that order."""
    now = datetime.now(timezone.utc)
    rows = [article(id=f"a{n}", url=f"https://news.example.cn/a{n}.html", title=f"第{n}篇文章",
                    published=(now - timedelta(hours=n)).isoformat()) for n in range(1, 5)]
    rows.append(article(id="a5", url="https://news.example.cn/a5.html", published=(now - timedelta(hours=5)).isoformat()))
    assert client.post("/api/articles", json=rows, headers=AUTH).status_code == 201
    views = [{"id": f"a{n}", "count": 6 - n} for n in range(1, 6)]
    assert client.post("/api/views", json=views, headers=AUTH).status_code == 200
    return client


def page(response) -> lxml.html.HtmlElement:
    assert response.status_code == 200, response.get_data(as_text=True)
    return lxml.html.fromstring(response.get_data(as_text=True))


def shown(doc, tab: str) -> list[tuple[str, str, str]]:
    """(rank, text, full title) of each line of one tab."""
    return [(li.findtext(".//span[@class='rank']"), li.find(".//a").text_content(), li.find(".//a").get("title"))
            for li in doc.xpath(f"//ol[@data-tab='{tab}']/li")]


def test_the_hot_box_shows_each_window_in_rank_order_with_the_seeds_cut(loaded, store):
    doc = page(loaded.get("/embed/hot"))
    assert doc.findtext(".//h2") == "热门文章"
    tabs = [(i.get("value"), i.getparent().text_content(), i.get("checked") is not None) for i in doc.xpath("//div[@class='tabs']//input")]
    assert tabs == [("daily", "日榜", True), ("weekly", "周榜", False)]
    ranking = [entry.article.title for entry in store.rankings.top(datetime.now(timezone.utc), timedelta(hours=24), 10)]
    assert ranking[0] == "第1篇文章" and ranking[-1] == LONG_TITLE
    for tab in ("daily", "weekly"):
        lines = shown(doc, tab)
        assert [full for _, _, full in lines] == ranking
        assert [rank for rank, _, _ in lines] == ["1", "2", "3", "4", "5"]
    # 28 Han characters (56 columns), no mark: as the site's own box cuts "…召开第二十一次联席会议"
    assert shown(doc, "daily")[4][1] == "中国财贸轻纺烟草工会与中国纺织工业联合会召开第二十一次联"
    summary = doc.xpath("//ol[@data-tab='daily']/li")[4].findtext(".//p[@class='summary']")
    assert summary.endswith("…") and 78 <= sum(1 if ord(c) < 128 else 2 for c in summary) <= 81  # 80, or one past


def test_clip_counts_ascii_as_half_a_han_character():
    assert clip("工人日报e网评丨轰赶“王婆说媒”上的“戏精”，观众想看的是什么", 56) == "工人日报e网评丨轰赶“王婆说媒”上的“戏精”，观众想看的是"
    assert clip("短标题", 56) == "短标题"
    assert clip("一二三四五六", 8, "…") == "一二三…"


def test_options_choose_the_tab_the_length_the_category_and_the_theme(loaded):
    doc = page(loaded.get("/embed/hot?window=weekly&limit=2&theme=dark&category=redian"))
    assert [i.get("value") for i in doc.xpath("//div[@class='tabs']//input[@checked]")] == ["weekly"]
    assert [len(shown(doc, tab)) for tab in ("daily", "weekly")] == [2, 2]
    assert doc.findtext(".//h2") == "热点 · 热门文章"
    assert doc.xpath("//section")[0].get("class") == "box theme-dark"
    assert doc.xpath("//meta[@name='color-scheme']")[0].get("content") == "dark"
    light = page(loaded.get("/embed/hot?theme=light"))
    assert light.xpath("//meta[@name='color-scheme']")[0].get("content") == "light"
    auto = page(loaded.get("/embed/hot"))
    assert auto.xpath("//section")[0].get("class") == "box theme-auto"
    assert auto.xpath("//meta[@name='color-scheme']")[0].get("content") == "light dark"
    assert page(loaded.get("/embed/hot?variant=zh-CN")).get("lang") == "zh-CN"


def test_the_newest_articles_of_a_category_or_source(loaded):
    doc = page(loaded.get("/embed/latest?feed=category/redian/guonei&limit=3"))
    assert doc.findtext(".//h2") == "国内 · 最新文章"
    assert [full for _, _, full in shown(doc, "latest")] == ["第1篇文章", "第2篇文章", "第3篇文章"]
    assert not doc.xpath("//div[@class='tabs']")
    assert page(loaded.get("/embed/latest?feed=source/hulianwang")).findtext(".//h2") == "互联网 · 最新文章"
    assert len(shown(page(loaded.get("/embed/latest?feed=all")), "latest")) == 5


def test_links_open_where_config_says(loaded, sqlite_url):
    link = page(loaded.get("/embed/hot")).xpath("//ol[@data-tab='daily']//a")[0]
    assert (link.get("href"), link.get("target"), link.get("rel")) == ("https://news.example.cn/a1.html", "_blank", "noopener")
    app = create_app(make_settings(sqlite_url, embed={"link_target": "_top"}))
    try:
        link = page(app.test_client().get("/embed/latest?feed=all")).xpath("//ol//a")[0]
        assert (link.get("target"), link.get("rel")) == ("_top", None)
    finally:
        app.extensions["feeds"].store.close()


@pytest.mark.parametrize("query, named", [
    ("/embed/hot?window=monthly", "window"),
    ("/embed/hot?theme=purple", "theme"),
    ("/embed/hot?limit=0", "limit"),
    ("/embed/hot?limit=11", "limit"),  # a hot list holds hot.size
    ("/embed/hot?limit=ten", "limit"),
    ("/embed/hot?variant=zh-XX", "variant"),
    ("/embed/hot?colour=red", "colour"),
    ("/embed/hot?theme=dark&theme=light", "theme"),
    ("/embed/hot?feed=all", "feed"),
    ("/embed/hot?category=nowhere", "category"),
    ("/embed/latest", "feed"),
    ("/embed/latest?feed=hot/daily", "feed"),
    ("/embed/latest?feed=category/nowhere", "feed"),
    ("/embed/latest?feed=source/a/b", "feed"),
    ("/embed/latest?feed=all&window=daily", "window"),
    ("/embed/hot.js?window=monthly", "window"),
    ("/embed/latest.js", "feed"),
])
def test_bad_options_are_a_400_naming_the_parameter(loaded, query, named):
    response = loaded.get(query)
    assert response.status_code == 400
    assert named in response.get_data(as_text=True)


def test_no_such_box_is_a_404(loaded):
    assert loaded.get("/embed/coldest").status_code == 404
    assert loaded.get("/embed/coldest.js").status_code == 404


@pytest.mark.parametrize("path", ["/embed/hot", "/embed/latest?feed=category/redian", "/embed/hot.js", "/embed/latest.js?feed=all"])
def test_cached_like_feeds(loaded, path):
    first = loaded.get(path)
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "public, max-age=300"  # embed.refresh_seconds
    assert re.fullmatch(r'"[0-9a-f]{32}"', first.headers["ETag"]) and first.headers["Last-Modified"]
    again = loaded.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and not again.data and again.headers["ETag"] == first.headers["ETag"]
    assert loaded.get(path).data == first.data


def test_compressed_like_feeds(loaded):
    plain = loaded.get("/embed/hot")
    packed = loaded.get("/embed/hot", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip" and packed.headers["ETag"] == plain.headers["ETag"][:-1] + '-gzip"'
    assert "Accept-Encoding" in packed.headers["Vary"]


def test_a_write_is_in_the_next_box(loaded):
    latest, hot = loaded.get("/embed/latest?feed=category/redian"), loaded.get("/embed/hot")
    fresh = article(id="a9", url="https://news.example.cn/a9.html", title="刚刚发布的文章",
                    published=datetime.now(timezone.utc).isoformat())
    assert loaded.post("/api/articles", json=fresh, headers=AUTH).status_code == 201
    moved = loaded.get("/embed/latest?feed=category/redian", headers={"If-None-Match": latest.headers["ETag"]})
    assert moved.status_code == 200 and shown(page(moved), "latest")[0][2] == "刚刚发布的文章"
    assert loaded.post("/api/views", json=[{"id": "a9", "count": 50}], headers=AUTH).status_code == 200
    ranked = loaded.get("/embed/hot", headers={"If-None-Match": hot.headers["ETag"]})
    assert ranked.status_code == 200 and shown(page(ranked), "daily")[0][2] == "刚刚发布的文章"


def test_boxes_may_be_framed_where_config_says_and_no_other_page(loaded, sqlite_url):
    box = loaded.get("/embed/hot")
    assert box.headers["Content-Security-Policy"] == "frame-ancestors *"
    assert "X-Frame-Options" not in box.headers
    assert box.headers["Access-Control-Allow-Origin"] == "*"  # the script on the host page reads it
    for other in ("/", "/feeds/all.html"):
        assert loaded.get(other).headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    app = create_app(make_settings(sqlite_url, embed={"frame_ancestors": ["'self'", "https://news.example.cn"]}))
    try:
        framed = app.test_client().get("/embed/latest?feed=all")
        assert framed.headers["Content-Security-Policy"] == "frame-ancestors 'self' https://news.example.cn"
    finally:
        app.extensions["feeds"].store.close()


@pytest.mark.parametrize("section, message", [
    ({"link_target": "_self"}, "embed.link_target"),
    ({"frame_ancestors": ["https://a.example; script-src *"]}, "embed.frame_ancestors[0]"),
    ({"refresh_seconds": 0}, "embed.refresh_seconds"),
])
def test_bad_embed_config_stops_start_up(section, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(overrides={"embed": section}, environ={})


def test_the_script_keeps_to_one_global_name(loaded):
    response = loaded.get("/embed/hot.js")
    assert response.content_type == "text/javascript; charset=utf-8"
    code = response.get_data(as_text=True)
    body = "\n".join(line for line in code.splitlines() if not line.startswith("//"))
    assert body.startswith("(function () {") and body.rstrip().endswith("})();")  # everything else is local
    assert set(re.findall(r"window\.(\w+)\s*=[^=]", code)) == {"FeedsEmbed"}
    assert "attachShadow" in code


def test_the_index_offers_both_snippets_beside_each_hot_list(loaded):
    doc = page(loaded.get("/"))
    for window in ("daily", "weekly"):
        card = doc.xpath(f"//section[@id='hot']//li[@class='feed'][.//a[@href='/feeds/hot/{window}.html']]")[0]
        codes = [code.text_content() for code in card.xpath(".//details[@class='embed']//code")]
        assert codes == [
            f'<iframe src="http://feeds.test/embed/hot?window={window}" title="融易新闻 · 热门文章 {"日榜" if window == "daily" else "周榜"}" '
            'width="440" height="720" style="border:0;max-width:100%" loading="lazy"></iframe>',
            f'<script src="http://feeds.test/embed/hot.js?window={window}" async></script>',
        ]
        assert [b.get("data-copy") for b in card.xpath(".//details[@class='embed']//button")] == codes
