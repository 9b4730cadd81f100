"""Scheduled and expiring articles: an article's status and the time it leaves the public outputs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Every stored article was public until now, so each starts ``published``; one dated later than
now is taken out of the public outputs by the service's first release round (``Articles.release``).
"""
from alembic import op
import sqlalchemy as sa

from feeds.store.schema import EXPIRED, EXPIRING, SCHEDULED, UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('articles', sa.Column('expires', UTCDateTime(), nullable=True))
    op.add_column('articles', sa.Column('status', sa.String(length=16), nullable=False, server_default='published'))
    op.create_index('ix_articles_scheduled', 'articles', ['published'], sqlite_where=SCHEDULED, postgresql_where=SCHEDULED)
    op.create_index('ix_articles_expiring', 'articles', ['expires'], sqlite_where=EXPIRING, postgresql_where=EXPIRING)
    op.create_index('ix_articles_expired', 'articles', ['expires'], sqlite_where=EXPIRED, postgresql_where=EXPIRED)


def downgrade() -> None:
    op.drop_index('ix_articles_expired', 'articles')
    op.drop_index('ix_articles_expiring', 'articles')
    op.drop_index('ix_articles_scheduled', 'articles')
    # Not in batch mode: on SQLite that copies the table and drops the old one, whose rows' deletion cascades
    # to every table that refers to articles. SQLite drops a column in place since 3.35.
    op.drop_column('articles', 'status')
    op.drop_column('articles', 'expires')
