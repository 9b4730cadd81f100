"""Keyword search: the grams of every article, in FTS5 (SQLite) or a tsvector with a GIN index (PostgreSQL)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa

from feeds.store.schema import create_search_tables
from feeds.store.search import index_text

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    create_search_tables(conn)
    insert = ("INSERT INTO article_search (rowid, grams) VALUES (:pk, :grams)" if conn.dialect.name == "sqlite"
              else "INSERT INTO article_search (article_pk, grams) VALUES (:pk, CAST(:grams AS tsvector))")
    last = 0
    while True:  # a thousand articles at a time: a large archive is never all in memory
        rows = conn.execute(sa.text("SELECT pk, title, summary, content FROM articles WHERE pk > :last ORDER BY pk LIMIT 1000"),
                            {"last": last}).all()
        if not rows:
            break
        conn.execute(sa.text(insert), [{"pk": row.pk, "grams": index_text(row.title, row.summary, row.content)} for row in rows])
        last = rows[-1].pk


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_article_search_grams")
    op.execute("DROP TABLE article_search")
