"""Text at the door: characters XML forbids, HTML sanitising, summaries of Chinese news, slugs; headlines cut to fit;
Traditional Chinese; columns for a terminal."""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import lxml.html
import nh3
import opencc
from lxml.etree import ParserError
from pypinyin import lazy_pinyin

# XML 1.0 allows tab, newline, return and everything from U+0020 up, less the
# surrogates and U+FFFE/U+FFFF; one such character makes a strict parser reject
# the whole feed, so they never enter the store.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPACE = re.compile(r"\s+")

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd",
    "a", "img", "figure", "figcaption", "blockquote", "q", "cite", "pre", "code",
    "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
    "strong", "b", "em", "i", "u", "s", "sub", "sup", "small", "span", "div", "abbr", "time",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
    "abbr": {"title"},
    "time": {"datetime"},
}

_BLOCKS = {"p", "div", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "figcaption", "pre", "dd", "dt"}
_ORIGINAL_TITLE = re.compile(r"^(?:【[^】]*】\s*)?原标题\s*[:：]\s*")
_BOILERPLATE_LINE = re.compile(
    r"^[(（\[【]?\s*(?:责任编辑|编辑|责编|校对|审核|来源|本文来源|免责声明)\s*[:：]"
    r"|^免责声明\s*$"
    r"|不代表本(?:网|站|平台)的?观点"
    r"|转载此文目的在于"
    r"|侵犯您的知识产权"
    r"|如有侵权"
)
_SENTENCE_END = re.compile(r"[。！？!?…]+[”’」』)）]*")


def strip_forbidden(text: str) -> str:
    """Remove the characters XML 1.0 forbids; everything else is kept exactly."""
    return _XML_FORBIDDEN.sub("", text)


def plain(text: str) -> str:
    """A one-line plain-text field (title, name, tag): allowed characters, spaces folded."""
    return _SPACE.sub(" ", strip_forbidden(text)).strip()


def sanitize_html(html: str, base_url: str) -> str:
    """Keep what news bodies use, drop scripts, handlers, styles and frames; make URLs absolute."""
    return nh3.clean(
        strip_forbidden(html),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        url_relative=("rewrite_with_base", base_url),
    ).strip()


def html_lines(html: str) -> list[str]:
    """The text of an HTML fragment, one line per block element."""
    if not html.strip():
        return []
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (ParserError, ValueError):
        return [plain(html)]
    for br in root.iter("br"):
        br.tail = "\n" + (br.tail or "")
    for block in root.iter(*_BLOCKS):
        block.tail = "\n" + (block.tail or "")
        block.text = "\n" + (block.text or "")
    return [line for line in (plain(part) for part in root.text_content().split("\n")) if line]


def summarize(title: str, lines: list[str], length: int | None = None) -> str:
    """A reader's summary: boilerplate dropped, cut at a sentence end near ``length`` characters."""
    kept = []
    for line in lines:
        line = _drop_original_title(line, title)
        if line and not _BOILERPLATE_LINE.search(line):
            kept.append(line)
    text = " ".join(kept)
    return text if length is None else _cut(text, length)


def _drop_original_title(line: str, title: str) -> str:
    """Remove a leading ``原标题:...`` and the original headline after it.

    The headline has no end mark: take its first word, then every following word
    that the article's own title contains (a 引题 and a main title are often both there).
    """
    marker = _ORIGINAL_TITLE.match(line)
    if not marker:
        return line
    words = line[marker.end():].split(" ")
    compact_title = title.replace(" ", "")
    cut = 1
    while cut < len(words) and words[cut] and words[cut] in compact_title:
        cut += 1
    return " ".join(words[cut:]).strip()


def _cut(text: str, length: int) -> str:
    if len(text) <= length:
        return text
    low, high = length // 2, length + length // 5
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, high + 1) if low <= m.end() <= high]
    if ends:
        return text[: min(ends, key=lambda end: abs(end - length))].rstrip()
    return text[:length].rstrip() + "…"


def clip(text: str, width: int, mark: str = "") -> str:
    """The start of ``text`` in ``width`` columns, cut as the news site's own boxes cut headlines: anything
    beyond ASCII (Han characters, full-width punctuation, curly quotes) takes two columns, ASCII one, as in
    GBK, and characters are taken while fewer than ``width`` columns are used, so a line with an ASCII
    character in it may end one column past. ``mark`` ends a text that was cut, and counts in the width."""
    if _columns(text) <= width:
        return text
    room, used = width - _columns(mark), 0
    for index, char in enumerate(text):
        if used >= room:
            return text[:index].rstrip() + mark
        used += _columns(char)
    return text


def _columns(text: str) -> int:
    return sum(1 if ord(char) < 128 else 2 for char in text)


def slugify(name: str) -> str:
    """An ASCII slug for a Chinese name: 热点 -> redian, A股 -> agu."""
    slug = re.sub(r"[^a-z0-9]+", "-", "".join(lazy_pinyin(name)).lower()).strip("-")
    return slug or "x" + hashlib.sha1(name.encode()).hexdigest()[:8]


# Traditional Chinese variants, as RSSHub offers them: OpenCC's configurations for Taiwan
# (with Taiwan's words: 软件 -> 軟體), Hong Kong and plain Traditional characters.
VARIANTS = {"zh-TW": "s2twp", "zh-HK": "s2hk", "zh-Hant": "s2t"}
_TAG = re.compile(r"(<[^>]*>)")
_WORDS_ATTRIBUTE = re.compile(r'(\s(?:title|alt|aria-label|placeholder|content|data-search)=")([^"]*)(")')


# ... and back: Traditional characters, Taiwan's words (軟體 -> 软件) and Hong Kong's characters.
_TO_SIMPLIFIED = ("t2s", "tw2sp", "hk2s")


@lru_cache(maxsize=None)
def _converter(configuration: str) -> opencc.OpenCC:
    return opencc.OpenCC(configuration)


def in_variant(text: str, variant: str) -> str:
    """``text`` in the Traditional Chinese of ``variant`` (a key of ``VARIANTS``)."""
    return _converter(VARIANTS[variant]).convert(text)


def spellings(term: str) -> tuple[str, ...]:
    """A search term as typed and as Simplified Chinese writes it (工會: 工会; 軟體: 软体, 软件), so a
    reader who types Traditional characters finds what the site's Simplified text holds."""
    return tuple(dict.fromkeys([term, *(_converter(configuration).convert(term) for configuration in _TO_SIMPLIFIED)]))


def html_in_variant(html: str, variant: str) -> str:
    """The text of ``html`` converted, and the attributes people read (title, alt…); tags and the
    other attributes (a link to 中国.html) are left as they are."""
    def words(match: re.Match[str]) -> str:
        return match.group(1) + in_variant(match.group(2), variant) + match.group(3)

    parts = _TAG.split(html)
    return "".join(_WORDS_ATTRIBUTE.sub(words, part) if index % 2 else in_variant(part, variant) for index, part in enumerate(parts))


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def aligned(rows: Sequence[Sequence[str]], numeric: frozenset[int] = frozenset()) -> str:
    """``rows`` (the first a header) as columns for a terminal, the ``numeric`` ones aligned right."""
    widths = [max(display_width(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = []
        for column, cell in enumerate(row):
            padding = " " * (widths[column] - display_width(cell))
            cells.append(padding + cell if column in numeric else cell + padding)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
