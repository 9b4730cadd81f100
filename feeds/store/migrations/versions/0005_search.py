"""Keyword search: the grams of every article, in FTS5 (SQLite) or a tsvector with a GIN index (PostgreSQL)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
from alembic import op

from feeds.store.schema import create_search_tables

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_search_tables(op.get_bind())  # filled by 0006, which indexes by week


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_article_search_grams")
    op.execute("DROP TABLE article_search")
