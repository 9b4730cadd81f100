"""Keyword search: every term a substring of an article's title, summary or text, found through an index.

Full-text tokenizers split Chinese into nothing useful, so the index holds what any substring
needs: each character and each pair of neighbouring characters of every field, lower-cased
(Latin letters match regardless of case). A term of one character is then found exactly,
a term of two by its one pair, a longer one by all its pairs; the few articles that have
the pairs but not the longer term are dropped by checking the text itself.

A reader wants the newest articles first, and neither index can hand its matches over in
order of time: sorting every match is what makes a common word slow in a large archive. So
each gram is kept under the week the article was published in, and a query asks the newest
week first, then the two weeks before it, the four before those, and so on, stopping as soon
as enough articles are confirmed. Common words are found in a week or two, reading only those
weeks' postings; a rare word widens to the whole archive in a few queries.

A gram is written as letters and digits only (the week and each code point in base 36:
"工会" in week 6,620 is ``53w0ijp0fmi``), so it is one token to any tokenizer and a query is
never syntax. SQLite keeps the grams in an FTS5 table, PostgreSQL in a ``tsvector`` with a
GIN index; both are written in the article's own transaction.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timezone
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feeds.model import Article
from feeds.store.database import Database, chunks
from feeds.store.rows import article_select, to_article
from feeds.store.schema import PUBLIC, articles
from feeds.text import html_lines

BATCH = 50  # candidates read at a time, newest first, until enough are confirmed
_FIRST_DAY = date(1900, 1, 1).toordinal()  # dates.py admits no earlier year
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class Indexed(NamedTuple):
    """What an article is indexed by."""

    published: datetime
    title: str
    summary: str
    content: str

    @classmethod
    def of(cls, article: Article | sa.Row | dict) -> Indexed:
        """From an article, a row or a dict of its columns."""
        if isinstance(article, dict):
            return cls(*(article[name] for name in cls._fields))
        return cls(*(getattr(article, name) for name in cls._fields))


def searchable(title: str, summary: str, content: str) -> tuple[str, ...]:
    """The fields a term may occur in, lower-cased: title, summary and the content's text."""
    return tuple(field.lower() for field in (title, summary, "\n".join(html_lines(content))))


def _base36(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
    return "".join(reversed(digits))


class _Codes(dict[int, str]):
    """Each character's code, made when first seen: four base-36 digits (every code point fits), or
    four spaces for whitespace, which no gram holds. At most as many as Unicode has characters."""

    def __missing__(self, point: int) -> str:
        code = self[point] = "    " if chr(point).isspace() else _base36(point, 4)
        return code


_CODES = _Codes()


def week_of(moment: datetime) -> int:
    """Weeks since 1900 (in UTC): three base-36 digits hold them until 2795."""
    return (moment.astimezone(timezone.utc).toordinal() - _FIRST_DAY) // 7


def _week_start(week: int) -> datetime:
    return datetime.fromordinal(_FIRST_DAY + week * 7).replace(tzinfo=timezone.utc)


def grams(fields: Iterable[str]) -> set[str]:
    """Every character and every pair of neighbouring characters (no whitespace) of the fields."""
    coded = "    ".join(fields).translate(_CODES)  # a string's translate is the fastest way to code each character
    found = {coded[i:i + 4] for i in range(0, len(coded), 4)} | {coded[i:i + 8] for i in range(0, len(coded) - 4, 4)}
    return {gram for gram in found if " " not in gram} if " " in coded else found


def index_text(indexed: Indexed) -> str:
    """What the index keeps of an article: its grams under its week, space-separated."""
    week = _base36(week_of(indexed.published), 3)
    return week + f" {week}".join(grams(searchable(indexed.title, indexed.summary, indexed.content)))


def term_grams(term: str) -> set[str]:
    return grams([term]) if len(term) == 1 else {gram for gram in grams([term]) if len(gram) == 8}


def matches(terms: Sequence[Sequence[str]], title: str, summary: str, content: str) -> bool:
    """Whether every term (one of its spellings) is in the title, summary or the content's text (read
    only if needed: it is the costly one)."""
    title, summary = title.lower(), summary.lower()
    text = None
    for term in terms:
        if not any(spelling in title or spelling in summary for spelling in term):
            text = text if text is not None else "\n".join(html_lines(content)).lower()
            if not any(spelling in text for spelling in term):
                return False
    return True


class Search:
    """The articles whose title, summary or text holds every term, newest first."""

    def __init__(self, db: Database):
        self.db = db

    def newest(self, terms: Sequence[Sequence[str]], limit: int) -> list[Article]:
        """The articles with every term, each given as its spellings (any one will do): lower-cased,
        none empty or with whitespace."""
        wanted = [[sorted(term_grams(spelling)) for spelling in term] for term in terms]
        exact = all(len(spelling) <= 2 for term in terms for spelling in term)  # each its own gram: every candidate has it
        found: list[Article] = []
        with self.db.read() as conn:
            newest, oldest = conn.execute(sa.select(sa.select(sa.func.max(articles.c.published)).where(PUBLIC).scalar_subquery(),
                                                    sa.select(sa.func.min(articles.c.published)).where(PUBLIC).scalar_subquery())).one()
            if newest is None:
                return found
            last, first = week_of(newest), week_of(oldest)
            span = 1
            while last >= first and len(found) < limit:
                since = max(first, last - span + 1)
                weeks = [_base36(week, 3) for week in range(last, since - 1, -1)]
                ordered = (article_select()
                           .where(articles.c.published >= _week_start(since), articles.c.published < _week_start(last + 1),
                                  articles.c.pk.in_(self._candidates(weeks, wanted)))
                           .order_by(articles.c.published.desc(), articles.c.pk.desc()))
                result = conn.execution_options(stream_results=True).execute(ordered)
                while len(found) < limit and (rows := result.fetchmany(BATCH)):
                    confirmed = rows if exact else (row for row in rows if matches(terms, row.title, row.summary, row.content))
                    found += map(to_article, itertools.islice(confirmed, limit - len(found)))
                result.close()
                last -= span
                span *= 2
        return found

    def _candidates(self, weeks: list[str], wanted: list[list[list[str]]]) -> sa.TextClause:
        """The articles of these weeks with, for every term, every gram of one of its spellings (a query of the index)."""
        sqlite = self.db.dialect == "sqlite"
        both, either = (" AND ", " OR ") if sqlite else (" & ", " | ")

        def gram(week: str, code: str) -> str:
            return f'"{week}{code}"' if sqlite else week + code

        def every(parts: Iterable[str]) -> str:
            return "(" + both.join(parts) + ")"

        def any_of(parts: Iterable[str]) -> str:
            return "(" + either.join(parts) + ")"

        query = any_of(every(any_of(every(gram(week, code) for code in spelling) for spelling in term) for term in wanted)
                       for week in weeks)
        if sqlite:
            return sa.text("SELECT rowid FROM article_search WHERE article_search MATCH :query").bindparams(query=query)
        return sa.text("SELECT article_pk FROM article_search WHERE grams @@ CAST(:query AS tsquery)").bindparams(query=query)

    # -- inside a write transaction ---------------------------------------------------

    @staticmethod
    def index(conn: Connection, added: dict[int, Indexed], removed: dict[int, Indexed]) -> None:
        """Forget ``removed`` articles (pk: what they were indexed by) and index ``added`` ones.

        SQLite's index keeps no copy of what it indexed (a contentless FTS5 table: the grams would
        be several times the size of the index), so an article is taken out with the very grams it
        was put in with, made again from what it was indexed by.
        """
        sqlite = conn.dialect.name == "sqlite"
        if removed:
            if sqlite:
                conn.execute(sa.text("INSERT INTO article_search (article_search, rowid, grams) VALUES ('delete', :pk, :grams)"),
                             [{"pk": pk, "grams": index_text(indexed)} for pk, indexed in removed.items()])
            else:
                for chunk in chunks(sorted(removed)):
                    conn.execute(sa.text("DELETE FROM article_search WHERE article_pk IN :pks")
                                 .bindparams(sa.bindparam("pks", expanding=True)), {"pks": chunk})
        if added:
            rows = [{"pk": pk, "grams": index_text(indexed)} for pk, indexed in added.items()]
            insert = ("INSERT INTO article_search (rowid, grams) VALUES (:pk, :grams)" if sqlite
                      else "INSERT INTO article_search (article_pk, grams) VALUES (:pk, CAST(:grams AS tsvector))")
            conn.execute(sa.text(insert), rows)

    @staticmethod
    def rebuild(conn: Connection) -> None:
        """Forget everything indexed and index every stored article again, a thousand at a time: migration
        0006's, run when every stored article was public (only public articles are indexed)."""
        if conn.dialect.name == "sqlite":
            conn.execute(sa.text("INSERT INTO article_search (article_search) VALUES ('delete-all')"))
        else:
            conn.execute(sa.text("TRUNCATE article_search"))
        last = 0
        while rows := conn.execute(sa.select(articles.c.pk, articles.c.published, articles.c.title, articles.c.summary, articles.c.content)
                                   .where(articles.c.pk > last).order_by(articles.c.pk).limit(1000)).all():
            Search.index(conn, {row.pk: Indexed.of(row) for row in rows}, {})
            last = rows[-1].pk
