"""Keyword search: every term a substring of an article's title, summary or text, found through an index.

Full-text tokenizers split Chinese into nothing useful, so the index holds what any substring
needs: each character and each pair of neighbouring characters of every field, lower-cased
(Latin letters match regardless of case). A term of one character is then found exactly,
a term of two by its one pair, a longer one by all its pairs, and the few articles that have
the pairs but not the term are dropped by checking the text itself. Each gram is written as
hex code points ("工会" -> ``5de5x4f1a``), so it is one token to any tokenizer and a query is
never syntax: SQLite keeps the grams in an FTS5 table, PostgreSQL in a ``tsvector`` with a GIN
index. Both are written in the article's own transaction.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence


import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feeds.model import Article
from feeds.store.database import Database, chunks
from feeds.store.schema import articles
from feeds.text import html_lines

Fields = tuple[str, str, str]  # title, summary, content
BATCH = 200  # candidates read at a time, newest first, until enough are confirmed


def searchable(title: str, summary: str, content: str) -> tuple[str, ...]:
    """The fields a term may occur in, lower-cased: title, summary and the content's text."""
    return tuple(field.lower() for field in (title, summary, "\n".join(html_lines(content))))


_HEX: dict[str, str] = {}  # each character's code point in hex: at most as many as Unicode has


def _hex(char: str) -> str:
    found = _HEX.get(char)
    if found is None:
        found = _HEX[char] = format(ord(char), "x")
    return found


def _gram(text: str) -> str:
    return "x".join(map(_hex, text))


def grams(fields: Iterable[str]) -> set[str]:
    """Every character and every pair of neighbouring characters (no whitespace) of the fields."""
    found: set[str] = set()
    for field in fields:
        codes = ["" if char.isspace() else _hex(char) for char in field]
        found.update(codes)
        found.update(f"{first}x{second}" for first, second in zip(codes, codes[1:]) if first and second)
    found.discard("")
    return found


def index_text(title: str, summary: str, content: str) -> str:
    """What the index keeps of an article: its grams, space-separated."""
    return " ".join(sorted(grams(searchable(title, summary, content))))


def term_grams(term: str) -> set[str]:
    return {_gram(term)} if len(term) == 1 else {_gram(term[i:i + 2]) for i in range(len(term) - 1)}


def matches(terms: Sequence[str], fields: Sequence[str]) -> bool:
    return all(any(term in field for field in fields) for term in terms)


class Search:
    """The articles whose title, summary or text holds every term, newest first."""

    def __init__(self, db: Database):
        self.db = db

    def newest(self, terms: Sequence[str], limit: int) -> list[Article]:
        """``terms`` lower-cased, none empty or with whitespace."""
        from feeds.store.articles import article_select, to_article  # articles.py writes through this module

        wanted = sorted(set().union(*map(term_grams, terms)))
        if self.db.dialect == "sqlite":
            candidates = sa.text("SELECT rowid FROM article_search WHERE article_search MATCH :query")
            query = " AND ".join(f'"{gram}"' for gram in wanted)
        else:
            candidates = sa.text("SELECT article_pk FROM article_search WHERE grams @@ CAST(:query AS tsquery)")
            query = " & ".join(wanted)
        found: list[Article] = []
        ordered = (article_select().where(articles.c.pk.in_(candidates.bindparams(query=query)))
                   .order_by(articles.c.published.desc(), articles.c.pk.desc()))
        with self.db.read() as conn:
            result = conn.execution_options(stream_results=True).execute(ordered)
            while len(found) < limit and (rows := result.fetchmany(BATCH)):
                found += [article for article in map(to_article, rows) if matches(terms, searchable(article.title, article.summary, article.content))]
            result.close()
        return found[:limit]

    # -- inside a write transaction ---------------------------------------------------

    @staticmethod
    def index(conn: Connection, added: dict[int, Fields], removed: dict[int, Fields]) -> None:
        """Forget ``removed`` articles (pk: their title, summary and content as indexed) and index ``added`` ones.

        SQLite's index keeps no copy of what it indexed (a contentless FTS5 table: the grams would
        be several times the size of the index), so an article is taken out with the very grams it
        was put in with, made again from the fields it had.
        """
        sqlite = conn.dialect.name == "sqlite"
        if removed:
            if sqlite:
                conn.execute(sa.text("INSERT INTO article_search (article_search, rowid, grams) VALUES ('delete', :pk, :grams)"),
                             [{"pk": pk, "grams": index_text(*fields)} for pk, fields in removed.items()])
            else:
                for chunk in chunks(sorted(removed)):
                    conn.execute(sa.text("DELETE FROM article_search WHERE article_pk IN :pks")
                                 .bindparams(sa.bindparam("pks", expanding=True)), {"pks": chunk})
        if added:
            rows = [{"pk": pk, "grams": index_text(*fields)} for pk, fields in added.items()]
            insert = ("INSERT INTO article_search (rowid, grams) VALUES (:pk, :grams)" if sqlite
                      else "INSERT INTO article_search (article_pk, grams) VALUES (:pk, CAST(:grams AS tsvector))")
            conn.execute(sa.text(insert), rows)
