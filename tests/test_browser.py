"""The pages in a real browser: headless Chromium from Debian's packages, driven by Playwright,
against the app served for real on 127.0.0.1 with the bundled sample.

Chromium is installed with apt-get when missing (Playwright's own browser download is never
used); the tests skip, saying why, only when that fails. Every request the browser makes is
recorded and anything not for the test server is refused and fails the test. Screenshots of
the index and a preview go to docs/ for the README; the dark and phone-width ones go to
``$FEEDS_SCREENSHOTS`` (with whole-page ones too) or else to pytest's temporary folder.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from werkzeug.serving import make_server

from feeds import create_app
from feeds.config import load_settings
from feeds.ingest import load_sample
from feeds.validate import article_from_dict
from tests.conftest import apt_install

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install '.[test]'")

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 900}
TALL = {"width": 1280, "height": 1500}  # the index down to its category tree
PHONE = {"width": 390, "height": 844}
# The feeds' URLs on the pages: the default of `feeds serve`, not the test server's random port,
# so the screenshots show what the README's quick start shows and stay the same from run to run.
BASE_URL = "http://127.0.0.1:8000"


def _has_cjk_font() -> bool:
    try:
        found = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(found.stdout.strip())


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium, installed from Debian's packages when missing (with a CJK font for the screenshots)."""
    missing = [] if shutil.which("chromium") else ["chromium", "chromium-driver"]
    if not _has_cjk_font():
        missing.append("fonts-noto-cjk")
    problem = apt_install(missing) if missing else ""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip(f"no system Chromium, and installing Debian's chromium failed: {problem}")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Flask]]:
    """The app on a free port of 127.0.0.1, loaded with the bundled sample, in a thread: its URL and the app."""
    holder: dict[str, Any] = {}
    httpd = make_server("127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True)
    base = f"http://127.0.0.1:{httpd.server_port}"
    database = tmp_path_factory.mktemp("browser") / "feeds.db"
    settings = load_settings(overrides={"database": {"url": f"sqlite:///{database}"}, "site": {"base_url": BASE_URL}}, environ={})
    app = create_app(settings)
    load_sample(app.extensions["feeds"].store, settings)
    holder["app"] = app
    thread = threading.Thread(target=httpd.serve_forever, name="feeds-test-server", daemon=True)
    thread.start()
    yield base, app
    httpd.shutdown()
    thread.join(10)
    app.extensions["feeds"].store.close()


@pytest.fixture(scope="module")
def server(served: tuple[str, Flask]) -> str:
    return served[0]


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@dataclass
class Tab:
    """A page and what it did: every request, and every console error."""

    page: Any
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def assert_clean(self, base: str, *others: str) -> None:
        hosts = {urlsplit(url).netloc for url in (base, *others)}
        assert self.requests, "no request was recorded"
        assert not self.refused, f"requests to other hosts: {self.refused}"
        assert all(urlsplit(url).netloc in hosts for url in self.requests), self.requests
        assert not self.errors, f"console errors: {self.errors}"
        assert not self.failed, f"failed requests: {self.failed}"


def open_tab(browser: Any, base: str, viewport: dict[str, int] = DESKTOP, color_scheme: str = "light", others: tuple[str, ...] = (),
             refuse: bool = True) -> Tab:
    """A fresh page that may reach ``base`` (and the ``others``) and nothing else: other requests are refused,
    or with ``refuse=False`` only recorded (Playwright's routing turns the browser's HTTP cache off, which
    a test of conditional requests needs), and ``Tab.assert_clean`` fails on them either way."""
    context = browser.new_context(viewport=viewport, color_scheme=color_scheme, locale="zh-CN", timezone_id="Asia/Shanghai",
                                  device_scale_factor=1)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    tab = Tab(context.new_page())
    hosts = {urlsplit(url).netloc for url in (base, *others)}

    def route(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).netloc in hosts:
            route.continue_()
        else:
            tab.refused.append(url)
            route.abort()

    if refuse:
        context.route("**/*", route)
    context.on("request", lambda request: tab.requests.append(request.url))
    context.on("response", lambda response: response.status >= 400 and tab.failed.append(f"{response.status} {response.url}"))
    tab.page.on("console", lambda message: message.type == "error" and tab.errors.append(message.text))
    tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))
    return tab


@pytest.fixture
def tab(browser: Any, server: str) -> Iterator[Tab]:
    opened = open_tab(browser, server)
    yield opened
    opened.page.context.close()


def visible_feeds(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "li.feed", "items => items.filter(li => li.offsetParent !== null).map(li => li.querySelector('h3 a').getAttribute('href'))")


def test_index_renders_with_its_tree_styles_and_script(tab: Tab, server: str):
    page = tab.page
    page.goto(server + "/")
    assert page.title() == "融易新闻 · 订阅源"
    assert page.locator("h1").inner_text() == "融易新闻 · 订阅源"
    assert page.locator("#categories > ul.tree > li.feed").count() >= 6  # the top-level categories
    assert page.locator("#categories li.feed li.feed").count() >= 10  # and their children, nested
    nested = page.locator("li.feed:has(> div h3 a[href='/feeds/category/caijing.html']) li.feed h3 a").all_inner_texts()
    assert {"股票", "港股", "A股", "宏观", "产经"} <= set(nested)
    assert page.locator("#filter").is_visible()  # the script ran: the filter box and copy buttons show
    assert page.locator("button.copy").first.is_visible()
    style = page.evaluate("() => { const s = getComputedStyle(document.body); return [s.fontFamily, s.lineHeight]; }")
    assert "Noto Sans CJK SC" in style[0] and style[1] == "28px"  # 16px × 1.75: the stylesheet loaded
    times = page.locator("li.feed time").all_inner_texts()
    assert times and all(len(t) == 16 and t[13] == ":" for t in times)
    tab.assert_clean(server)


def test_typing_in_the_filter_narrows_the_list(tab: Tab, server: str):
    page = tab.page
    page.goto(server + "/")
    everything = visible_feeds(page)
    page.locator("#filter").press_sequentially("guon")
    shown = visible_feeds(page)
    assert shown == ["/feeds/category/redian.html", "/feeds/category/redian/guonei.html"]  # the match and its parent
    assert page.locator("#sources").is_hidden() and page.locator("#hot").is_hidden()
    assert "2 /" in page.locator("#filter-status").inner_text()
    page.locator("#filter").fill("")
    page.locator("#filter").press_sequentially("新华")
    assert visible_feeds(page) == ["/feeds/source/xinhuashe.html"]
    page.locator("#filter").press_sequentially("zzz")
    assert visible_feeds(page) == [] and page.locator("[data-no-match]").is_visible()
    page.locator("#filter").press("Escape")
    assert visible_feeds(page) == everything
    tab.assert_clean(server)


def test_copy_button_puts_the_url_on_the_clipboard(tab: Tab, server: str):
    page = tab.page
    page.goto(server + "/")
    button = page.locator("li.feed:has(> div h3 a[href='/feeds/category/redian/guonei.html']) > div button.copy").nth(1)
    assert button.get_attribute("aria-label") == "复制国内的 Atom 地址"
    button.focus()
    page.keyboard.press("Enter")  # by keyboard, as anyone can
    page.wait_for_function("() => document.getElementById('announce').textContent.startsWith('已复制')")
    assert page.evaluate("() => navigator.clipboard.readText()") == BASE_URL + "/feeds/category/redian/guonei.atom"
    assert button.inner_text() == "已复制"
    tab.assert_clean(server)


def test_preview_shows_items_and_the_qr_code(tab: Tab, server: str):
    page = tab.page
    page.goto(server + "/")
    page.locator("a[href='/feeds/category/redian/guonei.html']").click()
    page.wait_for_url("**/feeds/category/redian/guonei.html")
    assert page.locator("h1").inner_text() == "融易新闻 · 热点 > 国内"
    assert page.locator("ol.items > li").count() == 20
    assert page.locator("ol.items > li .summary").first.inner_text()
    qr = page.locator("figure.qr svg")
    assert qr.is_visible() and qr.bounding_box()["width"] >= 120
    page.locator("section.subscribe button.copy").first.click()
    page.wait_for_function("() => document.getElementById('announce').textContent.startsWith('已复制')")
    assert page.evaluate("() => navigator.clipboard.readText()") == BASE_URL + "/feeds/category/redian/guonei.rss"
    page.goto(server + "/feeds/hot/daily.html")
    titles = page.locator("ol.ranked h3").all_inner_texts()
    assert titles and titles[0].startswith("1. ")
    tab.assert_clean(server)


def test_screenshots_light_dark_and_phone(browser: Any, server: str, tmp_path_factory: pytest.TempPathFactory):
    """docs/index.png and docs/preview.png for the README; the rest to look at (see the module's docstring)."""
    asked = os.environ.get("FEEDS_SCREENSHOTS")
    extra = Path(asked or tmp_path_factory.mktemp("screenshots"))
    extra.mkdir(parents=True, exist_ok=True)
    DOCS.mkdir(exist_ok=True)
    shots = [
        ("/", TALL, "light", DOCS / "index.png"),
        ("/feeds/category/redian/guonei.html", DESKTOP, "light", DOCS / "preview.png"),
        ("/", TALL, "dark", extra / "index-dark.png"),
        ("/feeds/category/redian/guonei.html", DESKTOP, "dark", extra / "preview-dark.png"),
        ("/", PHONE, "light", extra / "index-phone.png"),
        ("/feeds/category/redian/guonei.html", PHONE, "dark", extra / "preview-phone-dark.png"),
    ]
    for path, viewport, scheme, target in shots:
        tab = open_tab(browser, server, viewport, scheme)
        try:
            tab.page.goto(server + path)
            tab.page.evaluate("() => document.fonts.ready")
            overflow = tab.page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} at {viewport['width']}px scrolls sideways by {overflow}px"
            tab.page.screenshot(path=str(target))
            if asked and target.parent == extra:  # whole pages too, to look at; they take a few seconds
                tab.page.screenshot(path=str(target.with_name(target.stem + "-full.png")), full_page=True)
            tab.assert_clean(server)
        finally:
            tab.page.context.close()
        assert target.stat().st_size > 10_000
    print(f"screenshots: {DOCS / 'index.png'}, {DOCS / 'preview.png'}, and in {extra}")


# -- the embeddable boxes on another site's page ----------------------------------------------

HOST_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Another site</title>
<style>
  a {{ color: rgb(255, 0, 0) !important; font-size: 40px !important; }}
  .items {{ display: block; }}
  body {{ font-family: serif; color: rgb(0, 0, 255); }}
</style>
<script>window.__reads = null; window.__before = null; window.__before = Object.keys(window);</script>
</head>
<body>
<ol class="items" id="own"><li>the host's own list, which the box's style must not hide</li></ol>
<iframe id="framed" src="{service}/embed/hot" title="热门文章" width="440" height="720" style="border:0"></iframe>
<script src="{service}/embed/hot.js?window=weekly" async></script>
<script>
window.__reads = (async () => {{
  const url = "{service}/feeds/hot/daily.json";
  const first = await fetch(url);
  await first.json();
  const second = await fetch(url, {{ headers: {{ "If-None-Match": first.headers.get("ETag") }} }});
  return [first.status, second.status, first.headers.get("ETag") !== null];
}})();
</script>
</body>
</html>
"""


@contextmanager
def another_site(html: str) -> Iterator[str]:
    """``html`` served at / of another origin (another port of 127.0.0.1), as a news site's page would be."""
    body = html.encode("utf-8")

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, name="another-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(10)


def ranking(app: Flask, hours: int) -> list[str]:
    store = app.extensions["feeds"].store
    return [entry.article.title for entry in store.rankings.top(datetime.now(timezone.utc), timedelta(hours=hours), 10)]


def box_titles(scope: Any, tab: str) -> list[str]:
    """The full titles of the visible list ``tab`` of a box, in order (hidden lists give none)."""
    return scope.locator(f"ol[data-tab='{tab}']:visible a").evaluate_all("links => links.map(a => a.title)")


def test_the_boxes_on_another_sites_page(browser: Any, served: tuple[str, Flask]):
    service, app = served
    with another_site(HOST_PAGE.format(service=service)) as site:
        tab = open_tab(browser, site, others=(service,))
        try:
            page = tab.page
            page.goto(site + "/")
            # the iframe: the daily tab first, the store's ranking in order, cut titles
            frame = page.frame_locator("#framed")
            frame.locator("ol[data-tab='daily'] li").first.wait_for()
            daily, weekly = ranking(app, 24), ranking(app, 168)
            assert len(daily) == 10 and box_titles(frame, "daily") == daily and box_titles(frame, "weekly") == []
            shown = frame.locator("ol[data-tab='daily'] a").all_inner_texts()
            assert all(full.startswith(text) for text, full in zip(shown, daily))
            assert frame.locator("ol[data-tab='daily'] .rank").all_inner_texts() == [str(n) for n in range(1, 11)]
            frame.locator("label:has-text('周榜')").click()
            assert box_titles(frame, "weekly") == weekly and box_titles(frame, "daily") == []
            # the script: the same box in a Shadow DOM, its weekly tab first as its URL asks
            embedded = page.locator("div.feeds-embed")
            embedded.locator("ol[data-tab='weekly'] li").first.wait_for()
            assert page.evaluate("() => document.querySelector('div.feeds-embed').shadowRoot !== null")
            assert page.evaluate("() => document.querySelector('div.feeds-embed ol') === null")  # not in the page's DOM
            assert box_titles(embedded, "weekly") == weekly
            embedded.locator("label:has-text('日榜')").click()
            assert box_titles(embedded, "daily") == daily and box_titles(embedded, "weekly") == []
            # neither page's CSS reaches the other, and the script added one global name
            link_style = embedded.locator("ol[data-tab='daily'] a").first.evaluate(
                "a => [getComputedStyle(a).color, getComputedStyle(a).fontSize, getComputedStyle(a).fontFamily]")
            assert link_style[0] != "rgb(255, 0, 0)" and link_style[1] == "15px" and "serif" != link_style[2]
            assert page.locator("#own").is_visible()
            added = "() => Object.keys(window).filter(name => !window.__before.includes(name) && !/^[0-9]+$/.test(name))"
            assert page.evaluate(added) == ["FeedsEmbed"]  # (window[0] is the iframe)
            # a script of the page reads a hot list cross-origin, then gets a 304 for the same bytes
            assert page.evaluate("() => window.__reads") == [200, 304, True]  # the ETag is exposed to it
            tab.assert_clean(service, site)
        finally:
            tab.page.context.close()


def test_embed_screenshots_light_and_dark(browser: Any, server: str):
    """docs/embed-light.png and docs/embed-dark.png for the README: the box as an iframe shows it."""
    for theme in ("light", "dark"):
        tab = open_tab(browser, server, {"width": 440, "height": 720}, theme)
        try:
            tab.page.goto(server + f"/embed/hot?theme={theme}")
            tab.page.evaluate("() => document.fonts.ready")
            target = DOCS / f"embed-{theme}.png"
            tab.page.locator("section.box").screenshot(path=str(target))
            tab.assert_clean(server)
        finally:
            tab.page.context.close()
        assert 10_000 < target.stat().st_size < 200_000


def test_a_box_refreshes_itself_with_a_conditional_request(browser: Any, served: tuple[str, Flask], caplog: pytest.LogCaptureFixture):
    """Every embed.refresh_seconds (the page's clock is run forward) the box asks again with If-None-Match:
    a 304 while nothing changed (seen in the server's log: the browser hands its cached copy to the script
    as a 200), and the new content once something did."""
    service, app = served
    tab = open_tab(browser, service, refuse=False)
    path = "/embed/latest?feed=category/redian/shehui"

    def answered(status: int) -> None:
        wanted = f'"GET {path} HTTP/1.1" {status}'
        for _ in range(50):
            if any(wanted in re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage()) for record in caplog.records):  # no colours
                return
            tab.page.wait_for_timeout(100)
        raise AssertionError(f"the server never answered {status} to {path}: {[r.getMessage() for r in caplog.records]}")

    try:
        caplog.set_level("INFO", logger="werkzeug")
        page = tab.page
        page.clock.install()
        page.goto(service + path)
        box = "ol[data-tab='latest'] a"
        first = page.locator(box).first.get_attribute("title")
        caplog.clear()
        with page.expect_response(lambda response: "/embed/latest" in response.url):
            page.clock.fast_forward("05:01")
        answered(304)
        store = app.extensions["feeds"].store
        fresh = {"id": "embed-refresh", "url": "https://news.example.cn/redian/shehui/embed-refresh.html",
                 "title": "刷新后出现的新文章", "category": "热点/社会", "published": datetime.now(timezone.utc).isoformat()}
        store.articles.upsert([article_from_dict(fresh, app.extensions["feeds"].settings)])
        with page.expect_response(lambda response: "/embed/latest" in response.url):
            page.clock.fast_forward("05:01")
        page.wait_for_function("() => document.querySelector(\"ol[data-tab='latest'] a\").title === '刷新后出现的新文章'")
        assert page.locator(box).nth(1).get_attribute("title") == first
        tab.assert_clean(service)
    finally:
        tab.page.context.close()


def test_the_index_offers_the_snippets_to_copy(tab: Tab, server: str):
    page = tab.page
    page.goto(server + "/")
    weekly = page.locator("#hot li.feed:has(a[href='/feeds/hot/weekly.html']) details.embed")
    weekly.locator("summary").click()
    button = weekly.locator("button.copy").nth(1)
    assert button.get_attribute("aria-label") == "复制周榜的脚本代码"
    button.click()
    page.wait_for_function("() => document.getElementById('announce').textContent.startsWith('已复制')")
    assert page.evaluate("() => navigator.clipboard.readText()") == f'<script src="{BASE_URL}/embed/hot.js?window=weekly" async></script>'
    tab.assert_clean(server)
