"""Sitemaps and pushes to search engines: an index of article URLs, the push queue and each engine's state

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

from feeds.store.schema import UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_articles_url', 'articles', ['url'], postgresql_using='hash')
    op.create_table(
        'push_queue',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('engine', sa.String(length=32), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.Column('queued', UTCDateTime(), nullable=False),
        sa.Column('due', UTCDateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('failing_since', UTCDateTime(), nullable=True),
        sa.Column('claimed_until', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_push_queue_engine_due', 'push_queue', ['engine', 'due'])
    op.create_table(
        'push_engines',
        sa.Column('engine', sa.String(length=32), nullable=False),
        sa.Column('sent', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('failed', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('last_sent', UTCDateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_error_at', UTCDateTime(), nullable=True),
        sa.Column('remain', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('engine'),
    )


def downgrade() -> None:
    op.drop_table('push_engines')
    op.drop_index('ix_push_queue_engine_due', 'push_queue')
    op.drop_table('push_queue')
    op.drop_index('ix_articles_url', 'articles')
