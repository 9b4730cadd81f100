"""Which feeds exist and what each holds: the declarative half, apart from the writers.

A ``FeedSpec`` says where a feed lives and what it is called; ``Catalog.build``
fills it with items from the store as a format-neutral ``Feed``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Literal
from urllib.parse import quote

from feeds.addresses import feed_address, hub_address, partner_address, public_path, search_terms
from feeds.config import PartnerSettings, Settings
from feeds.model import Article, Category, Feed, History, Item, Label, Source
from feeds.store import Store
from feeds.text import html_in_variant, in_variant, spellings

Kind = Literal["all", "category", "source", "tag", "author", "search", "hot"]
LABEL_KINDS = {"tag": "标签", "author": "作者"}
WINDOW_NAMES = {"daily": "日榜", "weekly": "周榜", "monthly": "月榜"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class FeedSpec:
    """One published feed, before it has items. ``path`` is its URL below ``/feeds/``, without extension."""

    path: str
    kind: Kind
    title: str
    description: str
    category: Category | None = None
    source: Source | None = None
    label: Label | None = None
    terms: tuple[str, ...] = ()  # a keyword feed's, lower-cased
    window: str | None = None
    page: int | None = None  # an archive page (RFC 5005) of the feed, counted from the oldest


class Catalog:
    """Names, finds and fills the feeds of one site."""

    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings
        # The WebSub hubs every feed names: the service's own (unless websub.hub is off), then
        # websub.hubs. Made once: every poll's Link header names them.
        self.hubs = ((hub_address(settings),) if settings.websub.hub else ()) + tuple(settings.websub.hubs)

    # -- which feeds exist -------------------------------------------------------

    def everything(self) -> FeedSpec:
        return FeedSpec("all", "all", f"{self.settings.site.title} · 全部文章", f"{self.settings.site.title}的全部最新文章")

    def for_category(self, category: Category) -> FeedSpec:
        crumbs = " > ".join(category.names)
        return FeedSpec(
            f"category/{category.slug_path}",
            "category",
            f"{self.settings.site.title} · {crumbs}",
            f"{self.settings.site.title}「{crumbs}」栏目的最新文章",
            category=category,
        )

    def for_source(self, source: Source) -> FeedSpec:
        return FeedSpec(
            f"source/{source.slug}",
            "source",
            f"{self.settings.site.title} · 来源:{source.name}",
            f"{self.settings.site.title}转载自{source.name}的最新文章",
            source=source,
        )

    def for_label(self, label: Label) -> FeedSpec:
        site = self.settings.site.title
        return FeedSpec(
            f"{label.kind}/{label.slug}",
            label.kind,
            f"{site} · {LABEL_KINDS[label.kind]}:{label.name}",
            f"{site}标签为「{label.name}」的最新文章" if label.kind == "tag" else f"{site}作者{label.name}的最新文章",
            label=label,
        )

    def search(self, terms: tuple[str, ...]) -> FeedSpec:
        query = " ".join(terms)
        site = self.settings.site.title
        return FeedSpec(f"search/{query}", "search", f"{site} · 搜索:{query}", f"{site}含有「{query}」的最新文章", terms=terms)

    def hot(self, window: str, category: Category | None = None) -> FeedSpec:
        label = self.window_label(window)
        if category is None:
            return FeedSpec(
                f"hot/{window}",
                "hot",
                f"{self.settings.site.title} · 热门文章 {label}",
                f"{self.settings.site.title}{self._window_phrase(window)}阅读最多的{self.settings.hot.size}篇文章",
                window=window,
            )
        crumbs = " > ".join(category.names)
        return FeedSpec(
            f"hot/{window}/category/{category.slug_path}",
            "hot",
            f"{self.settings.site.title} · {crumbs} · 热门文章 {label}",
            f"{self.settings.site.title}「{crumbs}」栏目{self._window_phrase(window)}阅读最多的{self.settings.hot.size}篇文章",
            category=category,
            window=window,
        )

    def archive_page(self, spec: FeedSpec, page: int) -> FeedSpec:
        """Page ``page`` of the archive of ``spec`` (all, a category or a source), at
        ``/feeds/archive/<feed path>/<page>.<ext>``: the ``page``-th run of ``archive_size``
        articles counted from the oldest.

        Counted from the oldest so that new articles never change a page: they only complete
        the next one. An edit changes the one page that holds the article; deleting an article,
        or inserting one with an old date, moves every later page's boundary by one article.
        The URL keeps its meaning ("the n-th run counted from the oldest") and the changed
        pages get new ETags. Pages keyed by time would keep such a change to one page, but no
        run of closed periods tiles with a subscription document of the newest N articles:
        articles of the current period beyond those N would be in no document.
        """
        return replace(spec, path=f"archive/{spec.path}/{page}", page=page)

    @property
    def archive_size(self) -> int:
        """Articles per archive page: the subscription document's default length, so that it holds
        every article that is not yet on a full page (RFC 5005 §4: together they hold them all)."""
        return self.settings.feeds.default_limit

    def archive_pages(self, spec: FeedSpec) -> int:
        """How many full archive pages ``spec`` has; the partial newest run is only in the feed itself.
        A tag's or an author's feed has none: it is the newest of a topic, not a record of the site."""
        if spec.label is not None or spec.terms:
            return 0
        total, _ = self.store.articles.archive(self.archive_size, None, spec.category, spec.source)
        return total // self.archive_size

    def window_label(self, window: str) -> str:
        return WINDOW_NAMES.get(window, f"{self.settings.hot.windows[window]}小时榜")

    def _window_phrase(self, window: str) -> str:
        hours = self.settings.hot.windows[window]
        return f"过去{hours // 24}天" if hours % 24 == 0 and hours > 24 else f"过去{hours}小时"

    def resolve(self, path: str) -> FeedSpec | None:
        """The feed published at ``/feeds/<path>.<ext>``, or None."""
        kind, _, rest = path.partition("/")
        if kind == "archive":
            feed_path, _, number = rest.rpartition("/")
            spec = self.resolve(feed_path) if number.isascii() and number.isdigit() and not number.startswith("0") else None
            if spec is None or spec.kind == "hot" or spec.page is not None or int(number) > self.archive_pages(spec):
                return None
            return self.archive_page(spec, int(number))
        if path == "all":
            return self.everything()
        if kind == "category" and rest:
            category = self.store.articles.category(rest)
            return self.for_category(category) if category else None
        if kind == "source" and rest and "/" not in rest:
            source = self.store.articles.source(rest)
            return self.for_source(source) if source else None
        if kind == "search" and rest:
            try:
                return self.search(search_terms(rest))
            except ValueError:
                return None
        if kind in LABEL_KINDS and rest and "/" not in rest:
            label = self.store.labels.get(kind, rest)
            return self.for_label(label) if label else None
        if kind == "hot" and rest:
            window, _, scope = rest.partition("/")
            if window not in self.settings.hot.windows:
                return None
            if not scope:
                return self.hot(window)
            scope_kind, _, slug_path = scope.partition("/")
            category = self.store.articles.category(slug_path) if scope_kind == "category" and slug_path else None
            return self.hot(window, category) if category else None
        return None

    # -- what a feed holds -------------------------------------------------------

    def build(self, spec: FeedSpec, limit: int, now: datetime | None = None, variant: str | None = None) -> Feed:
        """Fill ``spec`` with its newest ``limit`` items or, for a hot list, its most-read articles.

        A hot list always holds the top ``hot.size`` (its description says so) and ignores
        ``limit``: a feed path has one list and one time of last change, kept by
        ``Rankings.changed``; a list per ``?limit=`` would need a state per length.
        With a ``variant`` (a key of ``text.VARIANTS``), every text is in that Traditional
        Chinese and the language says so; guids and links stay, so an article is the same
        item in every variant.

        Its ``updated`` is when the list (which articles, in which order, as they read)
        last changed, never the time of the request. Hot lists are rankings: no archive.

        An archive page holds its run of ``archive_size`` and ignores ``limit`` too; every
        other feed links its newest archive page (RFC 5005 §4).
        """
        history = History()
        if spec.kind == "hot":
            assert spec.window is not None
            now = now or datetime.now(timezone.utc)
            window = timedelta(hours=self.settings.hot.windows[spec.window])
            ranked = self.store.rankings.top(now, window, self.settings.hot.size, spec.category)
            articles = [entry.article for entry in ranked]
            prefixes = [f"{rank}. " for rank in range(1, len(articles) + 1)]
            updated = self.store.rankings.changed(spec.path, _signature(articles), now)
        else:
            if spec.page is not None:
                total, articles = self.store.articles.archive(self.archive_size, spec.page, spec.category, spec.source)
                current = replace(spec, path=spec.path.removeprefix("archive/").rpartition("/")[0], page=None)
                history = History(
                    current=self._address(current.path),
                    prev_archive=self._archive_address(current, spec.page - 1) if spec.page > 1 else None,
                    next_archive=self._archive_address(current, spec.page + 1) if spec.page < total // self.archive_size else None,
                )
            else:
                if spec.terms:
                    articles = self.store.search.newest([spellings(term) for term in spec.terms], limit)
                else:
                    articles = self.store.articles.newest(limit, category=spec.category, source=spec.source, label=spec.label)
                pages = self.archive_pages(spec)
                history = History(prev_archive=self._archive_address(spec, pages) if pages else None)
            prefixes = [""] * len(articles)
            updated = max((article.changed for article in articles), default=_EPOCH)
        tz = self.settings.tz
        published_path, query = public_path(spec.path, variant)
        feed = Feed(
            path=spec.path,
            title=spec.title,
            description=spec.description,
            publisher=self.settings.site.title,
            address=self._address(published_path),
            query=query,
            link=self.settings.site.link,
            language=self.settings.site.language,
            updated=updated.astimezone(tz),
            items=self._items(articles, prefixes),
            hubs=() if history.archived else self.hubs,  # nothing to announce: archives hold still
            history=history,
            icon=self.settings.site.icon or None,
            logo=self.settings.site.logo or None,
        )
        return feed if variant is None else _in_variant(feed, variant)

    def partner_feed(self, partner: PartnerSettings, key: str, path: str, limit: int, variant: str | None = None) -> Feed | None:
        """The feed at ``path`` as ``partner`` gets it through ``key`` (``partners.py``): its own address under
        ``/partner/<key>/``, ``limit`` items, with their text or without; None when there is no such feed."""
        spec = self.resolve(path)
        if spec is None:
            return None
        feed = self.build(spec, limit, variant=variant)
        items = feed.items if partner.content == "full" else tuple(replace(item, content_html="") for item in feed.items)
        address, query = partner_address(self.settings, key, path, variant)
        return replace(feed, address=address, query=query, items=items)

    def _items(self, articles: list[Article], title_prefixes: list[str]) -> tuple[Item, ...]:
        return tuple(map(self._item, articles, title_prefixes, self.store.labels.of(articles)))

    def _item(self, article: Article, title_prefix: str, labels: tuple[Label, ...]) -> Item:
        tz = self.settings.tz
        return Item(
            guid=self.guid(article.id),
            title=title_prefix + article.title,
            link=article.url,
            summary=article.summary,
            content_html=article.content,
            published=article.published.astimezone(tz),
            updated=article.changed.astimezone(tz),
            author=article.author,
            source=article.source,
            source_feed=self._source_feed(article.source),
            categories=(("/".join(article.category),) if article.category else ()) + article.tags,
            image=article.image,
            labels=labels,
        )

    def _source_feed(self, source: Source | None) -> str | None:
        if source is None:
            return None
        return self._address(self.for_source(source).path)

    def _archive_address(self, spec: FeedSpec, page: int) -> str:
        return self._address(self.archive_page(spec, page).path)

    def _address(self, path: str) -> str:
        return feed_address(self.settings, path)

    def guid(self, article_id: str) -> str:
        """The article's id in every feed, for good: readers use it to never show an article twice."""
        return self.settings.site.guid_prefix + quote(article_id, safe="")


def _in_variant(feed: Feed, variant: str) -> Feed:
    def text(value: str) -> str:
        return in_variant(value, variant)

    def item(it: Item) -> Item:
        return replace(
            it, title=text(it.title), summary=text(it.summary), content_html=html_in_variant(it.content_html, variant),
            author=text(it.author) if it.author else None, categories=tuple(map(text, it.categories)),
            source=replace(it.source, name=text(it.source.name)) if it.source else None,
            image=replace(it.image, caption=text(it.image.caption) if it.image.caption else None,
                          credit=text(it.image.credit) if it.image.credit else None) if it.image else None,
            labels=tuple(replace(label, name=text(label.name)) for label in it.labels),
        )

    return replace(feed, title=text(feed.title), description=text(feed.description), publisher=text(feed.publisher),
                   language=variant, items=tuple(map(item, feed.items)))


def _signature(articles: list[Article]) -> str:
    """What a ranking shows: which articles, in which order, as they read now.

    Every stored field counts, not only ``changed``: a source's new home page, say, shows in
    the items but stamps no article as updated. Read counts are not shown, so they do not count.
    """
    digest = hashlib.sha256()
    for article in articles:
        digest.update(repr(article).encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()
