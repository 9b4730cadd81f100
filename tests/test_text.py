"""Forbidden characters, sanitising, summaries of Chinese news, slugs."""
from __future__ import annotations

import pytest

from feeds.text import html_lines, plain, sanitize_html, slugify, strip_forbidden, summarize

SEED_TITLE = "中国财贸轻纺烟草工会与中国纺织工业联合会召开第二十一次联席会议"
SEED_LEAD = ("原标题:中国财贸轻纺烟草工会与中国纺织工业联合会召开第二十一次联席会议 中工网北京4月2日电(工人日报-中工网记者朱欣)"
             "中国财贸轻纺烟草工会与中国纺织工业联合会今天在京召开...")


def test_strip_forbidden_keeps_everything_else():
    text = "a\x00b\x08c\x0bd\x1fe\ufffef\uffff\ud800g\th\ni\rj 😀 𠀀 中"
    assert strip_forbidden(text) == "abcdef" + "g\th\ni\rj 😀 𠀀 中"


def test_plain_folds_spaces():
    assert plain("  标题\n 第二行\x07 ") == "标题 第二行"


def test_the_seed_lead_loses_its_original_title():
    assert summarize(SEED_TITLE, [SEED_LEAD]).startswith("中工网北京4月2日电")


def test_original_title_with_a_lead_in_headline():
    lead = "原标题:变少数人的“安全焦虑”为全员的“安全补位”(引题) “安全积分超市”兑出“我要安全”大格局 本报记者 王某 近日"
    assert summarize("“安全积分超市”兑出“我要安全”大格局", [lead]) == "本报记者 王某 近日"


def test_original_title_with_spaces():
    lead = "原标题:缅怀英烈祭清明 坚守岗位迎春来 祭扫烈士陵园 缅怀革命先烈"
    assert summarize("班组天地|缅怀英烈祭清明坚守岗位迎春来", [lead]) == "祭扫烈士陵园 缅怀革命先烈"


def test_original_title_after_a_column_tag():
    lead = "【工人日报社评】 原标题:“劳模工匠助企行”架设“技术会诊”的桥梁和平台 工人日报-中工网评论员"
    assert summarize("“劳模工匠助企行”架设“技术会诊”的桥梁和平台", [lead]) == "工人日报-中工网评论员"


def test_boilerplate_lines_are_dropped():
    lines = html_lines("<p>原标题:标题</p><p>正文第一句。</p><p>(责任编辑:王某)</p><p>免责声明</p>"
                       "<p>融易新媒体转载此文目的在于传递更多信息,不代表本网的观点和立场。</p><p>编辑:李某</p>")
    assert summarize("标题", lines) == "正文第一句。"


def test_cut_at_a_sentence_end_near_the_length_counting_characters():
    sentence = "这是一个十五个字的中文句子啊。"
    text = sentence * 20
    summary = summarize("t", [text], 100)
    assert summary.endswith("。") and len(summary) == 105  # seven sentences: the end nearest 100 characters


def test_cut_without_sentence_end_adds_an_ellipsis():
    summary = summarize("t", ["字" * 500], 120)
    assert summary == "字" * 120 + "…"


def test_short_text_is_kept_whole():
    assert summarize("t", ["短句。"], 120) == "短句。"


def test_html_lines_split_blocks_and_breaks():
    assert html_lines("<p>一</p><div>二<br>三</div><ul><li>四</li></ul>") == ["一", "二", "三", "四"]


@pytest.mark.parametrize("dirty, clean", [
    ('<p onclick="x()">正文<script>alert(1)</script></p>', "<p>正文</p>"),
    ('<a href="javascript:alert(1)">链接</a>', '<a rel="noopener noreferrer">链接</a>'),
    ('<p style="color:red">红</p><iframe src="https://evil.example/"></iframe>', "<p>红</p>"),
    ('<img src="/images/a.jpg" alt="图" onerror="x()">', '<img src="https://news.example.cn/images/a.jpg" alt="图">'),
    ("<figure><img src=\"https://a.cn/b.png\"><figcaption>说明</figcaption></figure>",
     '<figure><img src="https://a.cn/b.png"><figcaption>说明</figcaption></figure>'),
    ("<table><tr><td colspan=\"2\">表</td></tr></table>", '<table><tbody><tr><td colspan="2">表</td></tr></tbody></table>'),
    ("<p>a ]]> b & c</p>", "<p>a ]]&gt; b &amp; c</p>"),
])
def test_sanitize(dirty, clean):
    assert sanitize_html(dirty, "https://news.example.cn/a/b.html") == clean


@pytest.mark.parametrize("name, slug", [("热点", "redian"), ("国内", "guonei"), ("A股", "agu"), ("人工智能", "rengongzhineng"),
                                        ("R&D投入", "r-dtouru"), ("Tech News", "tech-news")])
def test_slugify(name, slug):
    assert slugify(name) == slug


def test_slugify_never_empty():
    assert slugify("★★").startswith("x") and len(slugify("★★")) == 9
