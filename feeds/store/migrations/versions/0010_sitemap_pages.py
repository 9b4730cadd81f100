"""The sitemap index's pages, each with its last change and article count, kept by the article writes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

from feeds.store.schema import UTCDateTime
from feeds.store.sitemaps import Sitemaps

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sitemap_pages',
        sa.Column('page', sa.Integer(), nullable=False),
        sa.Column('changed', UTCDateTime(), nullable=False),
        sa.Column('articles', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('page'),
    )
    Sitemaps.count_all(op.get_bind())


def downgrade() -> None:
    op.drop_table('sitemap_pages')
