"""JSON Lines in, store out: the import behind ``feeds import``, ``feeds views`` and the demo.

Good lines are stored in batches, one transaction each, so a killed import
leaves a consistent database and a re-run completes it (upserts by id).
Every rejected line is reported with its number and the reason.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

from feeds.config import Settings
from feeds.errors import FieldError, InvalidInput
from feeds.model import Article, ReadEvent
from feeds.store import Store
from feeds.validate import BadJSON, article_from_dict, event_from_dict, parse_json

BATCH_SIZE = 500


@dataclass
class Report:
    """What an import did: counts, and each rejected line's number and reason."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    scheduled: int = 0  # of those created or updated, how many wait for their time
    recorded: int = 0
    not_public: int = 0  # read events of articles not public, not counted
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        if self.recorded or self.not_public:
            ignored = f" ({self.not_public} more of articles not public, not counted)" if self.not_public else ""
            return f"{self.recorded} read events recorded{ignored}, {len(self.rejected)} rejected"
        scheduled = f" ({self.scheduled} scheduled for later)" if self.scheduled else ""
        return f"{self.created} new, {self.updated} updated{scheduled}, {self.unchanged} unchanged, {len(self.rejected)} rejected"


def parse_lines(lines: Iterable[str], report: Report) -> Iterator[tuple[int, Any]]:
    """Each non-blank line's number and JSON value; lines that are not JSON go to ``report``."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, parse_json(line)
        except BadJSON as exc:
            report.rejected.append((number, f"not valid JSON: {exc}"))


def import_articles(
    store: Store, settings: Settings, lines: Iterable[str], progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> Report:
    report = Report()
    batch: list[Article] = []

    def flush() -> None:
        now = datetime.now(timezone.utc)
        for article, outcome in zip(batch, store.articles.upsert(batch, now)):
            setattr(report, outcome, getattr(report, outcome) + 1)
            report.scheduled += outcome != "unchanged" and article.status(now) == "scheduled"
        if progress:
            progress(len(batch))
        batch.clear()

    for number, raw in parse_lines(lines, report):
        try:
            batch.append(article_from_dict(raw, settings))
        except InvalidInput as exc:
            report.rejected.append((number, str(exc)))
        if len(batch) >= batch_size:
            flush()
    flush()
    return report


def import_reads(
    store: Store, settings: Settings, lines: Iterable[str], now: datetime | None = None, batch_size: int = BATCH_SIZE,
) -> Report:
    report = Report()
    now = now or datetime.now(timezone.utc)
    batch: list[tuple[int, ReadEvent]] = []

    def flush() -> None:
        known = store.articles.known_ids({event.article_id for _, event in batch})
        good = []
        for number, event in batch:
            if event.article_id in known:
                good.append(event)
            else:
                report.rejected.append((number, unknown_article(event.article_id).message))
        counted = store.reads.record(good, keep=longest_window(settings))
        report.recorded += counted
        report.not_public += len(good) - counted
        batch.clear()

    for number, raw in parse_lines(lines, report):
        try:
            batch.append((number, event_from_dict(raw, settings, now)))
        except InvalidInput as exc:
            report.rejected.append((number, str(exc)))
        if len(batch) >= batch_size:
            flush()
    flush()
    report.rejected.sort()
    return report


def longest_window(settings: Settings) -> timedelta:
    """How far back reads can still count in a hot list; older buckets are pruned."""
    return timedelta(hours=max(settings.hot.windows.values(), default=0))


def unknown_article(article_id: str) -> FieldError:
    return FieldError("id", f'id: no article "{article_id}" is stored')


def load_sample(store: Store, settings: Settings, now: datetime | None = None) -> tuple[Report, Report]:
    """Store the bundled sample articles, and read events timed relative to ``now``."""
    now = now or datetime.now(timezone.utc)
    sample = resources.files("feeds") / "sample"
    articles = import_articles(store, settings, sample.joinpath("articles.jsonl").read_text("utf-8").splitlines())
    views = []
    for line in sample.joinpath("views.jsonl").read_text("utf-8").splitlines():
        event = json.loads(line)
        at = now - timedelta(hours=event.pop("hours_ago"))
        views.append(json.dumps({**event, "at": at.isoformat()}))
    reads = import_reads(store, settings, views, now=now)
    return articles, reads
