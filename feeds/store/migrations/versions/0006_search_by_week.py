"""Keyword search by week: every gram kept under the week its article was published in (search.py says why)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from alembic import op

from feeds.store.search import Search

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    Search.rebuild(op.get_bind())


def downgrade() -> None:
    pass  # 0005's search reads grams without weeks: it finds nothing in these, and 0005's downgrade drops them
