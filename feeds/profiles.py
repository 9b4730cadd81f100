"""What each distribution partner refuses, as data: a profile is a list of rules, each with the partner's own
page it comes from, and ``check`` says which a partner's feeds break before the partner does.

A rule looks at one feed as the partner gets it (``Feed``, and its RSS bytes) or at one of its items. An image
whose size is not known is reported as unknown, not passed: the partner will measure it. The rules are as the
partners' pages said on 2026-12-06; each names its page, to be read again when a partner changes its terms.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

from feeds.model import Feed, Item

MSN = "https://helpcenter.microsoftstart.com/kb/feed-specifications"
MSN_ITEMS = "https://support.microsoft.com/topic/msn-feed-item-metadata-requirements-0114c19c-36bb-4fef-8322-4a1ed6888329"
FLIPBOARD = "https://about.flipboard.com/rss-spec/"
SMARTNEWS = "https://publishers.smartnews.com/hc/en-us/articles/360036526213-SmartFormat-Specification-Version-2-1"


@dataclass(frozen=True)
class Problem:
    """A rule a partner's feed (or an article in it) breaks: where, what was found, what is wanted."""

    rule: str
    where: str  # the feed path, or "<feed path>: <article id>"
    found: str
    wanted: str
    source: str  # the partner's page the rule comes from


@dataclass(frozen=True)
class Rule:
    name: str
    wanted: str
    source: str
    feed: Callable[[Feed, bytes], str | None] | None = None  # what is wrong with the feed, None when nothing
    item: Callable[[Item, datetime], str | None] | None = None  # what is wrong with an item


def _image_at_least(pixels: int, side: str) -> Callable[[Item, datetime], str | None]:
    def check(item: Item, now: datetime) -> str | None:
        image = item.image
        if image is None:
            return "no image"
        sizes = {"width": (image.width,), "either": (image.width, image.height)}[side]
        if all(size is None for size in sizes):
            return f"an image of unknown size ({image.url})"
        if max(size or 0 for size in sizes) < pixels:
            return f"an image {image.width or '?'}×{image.height or '?'} px"
        return None
    return check


def _title_length(item: Item, now: datetime) -> str | None:
    return None if 20 < len(item.title) <= 150 else f"a title of {len(item.title)} characters"


def _dated_in_the_past_year(item: Item, now: datetime) -> str | None:
    if item.published > now:
        return f"published {item.published.isoformat()}, later than now"
    return None if now - item.published < timedelta(days=365) else f"published {item.published.date().isoformat()}, over a year ago"


PROFILES: dict[str, tuple[Rule, ...]] = {
    "msn": (
        Rule("https", "the feed's URL in HTTPS", MSN,
             feed=lambda feed, body: None if urlsplit(feed.address).scheme == "https" else f"the feed at {feed.url('rss')}"),
        Rule("body", "the article's body (full text)", MSN_ITEMS, item=lambda item, now: None if item.content_html else "no body"),
        Rule("title", "a title of more than 20 and at most 150 characters", MSN_ITEMS, item=_title_length),
        Rule("published", "a publication time in the past, less than 365 days ago", MSN_ITEMS, item=_dated_in_the_past_year),
        Rule("image", "an image at least 720 px wide or tall (only articles with images are published by themselves)", MSN,
             item=_image_at_least(720, "either")),
    ),
    "flipboard": (
        Rule("full-text", "the entire body of the article, not a summary", FLIPBOARD,
             item=lambda item, now: None if item.content_html else "a summary only"),
        Rule("image", "an image at least 400 px wide", FLIPBOARD, item=_image_at_least(400, "width")),
        Rule("author", "the author (dc:creator)", FLIPBOARD, item=lambda item, now: None if item.author else "no author"),
        Rule("items", "at least 30 items", FLIPBOARD,
             feed=lambda feed, body: None if len(feed.items) >= 30 else f"{len(feed.items)} items"),
        Rule("push", "updates pushed through a WebSub (PubSubHubbub) hub", FLIPBOARD,
             feed=lambda feed, body: None if feed.hubs else "no hub named"),
    ),
    "smartnews": (
        Rule("logo", "a logo: the channel's <image> (512 × 512 px recommended)", SMARTNEWS,
             feed=lambda feed, body: None if feed.icon or feed.logo else "no site.icon or site.logo"),
        Rule("description", "a channel description of 30 characters or fewer", SMARTNEWS,
             feed=lambda feed, body: None if len(feed.description) <= 30 else f"{len(feed.description)} characters"),
        Rule("size", "a feed under about 1 MB", SMARTNEWS,
             feed=lambda feed, body: None if len(body) < 1_000_000 else f"{len(body):,} bytes"),
    ),
}


def check(profile: str, feed: Feed, body: bytes, now: datetime, guid_prefix: str = "") -> list[Problem]:
    """Every rule of ``profile`` that ``feed`` (whose RSS is ``body``) or one of its items (named by its article
    id: its guid less ``guid_prefix``) breaks."""
    problems = []
    for rule in PROFILES.get(profile, ()):
        if rule.feed is not None and (found := rule.feed(feed, body)):
            problems.append(Problem(rule.name, feed.path, found, rule.wanted, rule.source))
        for item in feed.items if rule.item is not None else ():
            if found := rule.item(item, now):  # type: ignore[misc]
                problems.append(Problem(rule.name, f"{feed.path}: {unquote(item.guid.removeprefix(guid_prefix))}", found, rule.wanted,
                                        rule.source))
    return problems
