"""What is known of an article's lead image: its size in pixels, caption and credit

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

COLUMNS = (("image_width", sa.Integer()), ("image_height", sa.Integer()), ("image_caption", sa.Text()), ("image_credit", sa.Text()))


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column('articles', sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column('articles', name)  # in place (SQLite 3.35+): see 0007
