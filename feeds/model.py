"""The domain: what the newsroom stores and what a feed shows, as plain frozen dataclasses.

Every layer speaks these types: validation makes ``Article``s, the store keeps
and returns them, the catalog turns them into a format-neutral ``Feed``, and the
writers turn a ``Feed`` into bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

# Where an article stands: ``published`` articles are in the public outputs; a ``scheduled`` one's time has not
# come yet, an ``expired`` one's time to leave has.
Status = Literal["published", "scheduled", "expired"]


def status_at(published: datetime, expires: datetime | None, now: datetime) -> Status:
    """Where an article published at ``published``, leaving at ``expires``, stands at ``now``."""
    if expires is not None and expires <= now:
        return "expired"
    return "scheduled" if published > now else "published"


@dataclass(frozen=True)
class Category:
    """A node of the category tree, e.g. 热点 > 国内; ``slugs`` spell its URL."""

    names: tuple[str, ...]
    slugs: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[-1]

    @property
    def path(self) -> str:
        return "/".join(self.names)

    @property
    def slug_path(self) -> str:
        return "/".join(self.slugs)

    @property
    def depth(self) -> int:
        return len(self.names) - 1


@dataclass(frozen=True)
class Source:
    """Where an article comes from (the 来源 line): a name, an optional home page."""

    name: str
    slug: str = ""
    url: str | None = None


@dataclass(frozen=True)
class Label:
    """A tag or an author of articles, with the slug of its feed (工会 -> gonghui)."""

    kind: Literal["tag", "author"]
    name: str
    slug: str


@dataclass(frozen=True)
class Image:
    """An article's lead image: its URL, and what is known of it (size in pixels, caption, credit)."""

    url: str
    width: int | None = None
    height: int | None = None
    caption: str | None = None
    credit: str | None = None


@dataclass(frozen=True)
class Article:
    """One news article. ``id`` is the publisher's own stable id; times are aware."""

    id: str
    url: str
    title: str
    published: datetime
    category: tuple[str, ...]
    summary: str = ""
    content: str = ""
    author: str | None = None
    source: Source | None = None
    tags: tuple[str, ...] = ()
    image: Image | None = None
    updated: datetime | None = None
    expires: datetime | None = None  # from then on in no public output

    @property
    def changed(self) -> datetime:
        """The latest moment anything about the article happened."""
        return max(self.published, self.updated) if self.updated else self.published

    def status(self, now: datetime) -> Status:
        return status_at(self.published, self.expires, now)


@dataclass(frozen=True)
class ReadEvent:
    """``count`` reads of one article at about ``at``."""

    article_id: str
    at: datetime
    count: int = 1


@dataclass(frozen=True)
class Ranked:
    """An article of a hot list and its reads inside the list's window."""

    article: Article
    reads: int


@dataclass(frozen=True)
class PollCounts:
    """What one process counted of one feed on one day since its last flush."""

    day: date
    feed: str
    requests: int
    not_modified: int
    pollers: frozenset[str]  # salted hashes of (address, User-Agent), aggregators left out
    subscribers: dict[str, int]  # aggregator service -> the most subscribers it reported
    clients: dict[str, int]  # client application -> requests


@dataclass(frozen=True)
class FeedDay:
    """One feed's polls on one day, as stored."""

    day: date
    feed: str
    requests: int
    not_modified: int
    pollers: int  # distinct non-aggregator pollers
    reported: int  # subscribers the aggregators reported, each service counted once


@dataclass(frozen=True)
class Intent:
    """A WebSub (un)subscription request waiting for its callback to confirm it."""

    key: str  # a hash of topic and callback: one subscription per pair
    topic: str
    callback: str
    host: str  # the callback's host, for the per-host limit
    feed: str  # the topic's feed path, as poll statistics name it
    scope: str  # the feed version scope its content follows
    mode: str  # "subscribe" or "unsubscribe"
    secret: str | None
    lease_seconds: int
    # The topic's content version when the hub read the request to verify it: a change after that is owed to
    # the new subscriber, even one made while its callback was being asked.
    version: int = 0
    requested: datetime | None = None  # when it was made: a request made anew meanwhile is asked about in turn


@dataclass(frozen=True)
class Owed:
    """A WebSub subscription owed its topic's content at ``version`` (the newest), unless it has those bytes."""

    key: str
    topic: str
    callback: str
    secret: str | None
    feed: str
    scope: str
    version: int
    delivered_etag: str | None


@dataclass(frozen=True)
class HubFeed:
    """One feed's WebSub subscribers now: confirmed and answering, waiting for confirmation, failing."""

    feed: str
    active: int = 0
    pending: int = 0
    failing: int = 0


@dataclass(frozen=True)
class HubDay:
    """One feed's WebSub deliveries on one day: sent and taken, and attempts that failed."""

    day: date
    feed: str
    delivered: int
    failed: int


@dataclass(frozen=True)
class Item:
    """One entry of a feed, ready for any format: text is plain except ``content_html``."""

    guid: str
    title: str
    link: str
    summary: str
    content_html: str
    published: datetime
    updated: datetime
    author: str | None
    source: Source | None
    source_feed: str | None  # this service's feed of the source, without extension
    categories: tuple[str, ...]
    image: Image | None
    labels: tuple[Label, ...] = ()  # its author's and tags' feeds, for pages


@dataclass(frozen=True)
class History:
    """A feed's RFC 5005 links, each an address without extension like ``Feed.address``.

    A subscription document links ``prev_archive`` to its newest archive page; an
    archive page links ``current`` (the subscription document) and its neighbours.
    """

    current: str | None = None
    prev_archive: str | None = None
    next_archive: str | None = None

    @property
    def archived(self) -> bool:
        """An archive document (``fh:archive``): only archive pages link back to the current feed."""
        return self.current is not None


@dataclass(frozen=True)
class Feed:
    """A format-neutral feed: the writers turn it into RSS, Atom or JSON Feed bytes.

    ``updated`` is the latest change to anything the feed holds, never "now",
    so the rendered bytes change only when the content does.
    """

    path: str
    title: str
    description: str
    publisher: str
    address: str
    link: str
    language: str
    updated: datetime
    items: tuple[Item, ...]
    hubs: tuple[str, ...] = ()
    history: History = History()
    icon: str | None = None  # the site's square icon
    logo: str | None = None  # and its wide logo
    query: str = ""  # what its URL asks beyond the path, e.g. "?variant=zh-TW"

    def url(self, extension: str) -> str:
        """The feed's own canonical URL in one format, e.g. ``.../feeds/all.rss``."""
        return f"{self.address}.{extension}{self.query}"
