"""feed_versions.articles: how many articles each feed scope holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# Every scope with articles gets a row, then its count: everything, each category with its
# descendants (the closure table already lists an article under every ancestor), each source.
SCOPES = {
    "category:": ("SELECT 'category:' || slug_path AS name FROM categories",
                  "SELECT count(*) FROM article_categories ac JOIN categories c ON c.id = ac.category_id "
                  "WHERE 'category:' || c.slug_path = feed_versions.scope"),
    "source:": ("SELECT 'source:' || slug AS name FROM sources",
                "SELECT count(*) FROM articles a JOIN sources s ON s.id = a.source_id "
                "WHERE 'source:' || s.slug = feed_versions.scope"),
    "all": ("SELECT 'all' AS name", "SELECT count(*) FROM articles"),
}


def upgrade() -> None:
    with op.batch_alter_table('feed_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('articles', sa.BigInteger(), server_default='0', nullable=False))
    for prefix, (names, count) in SCOPES.items():
        op.execute(f"INSERT INTO feed_versions (scope, version, articles) SELECT name, 0, 0 FROM ({names}) AS n "
                   f"WHERE name NOT IN (SELECT scope FROM feed_versions)")
        where = "scope = 'all'" if prefix == "all" else f"scope LIKE '{prefix}%'"
        op.execute(f"UPDATE feed_versions SET articles = ({count}) WHERE {where}")


def downgrade() -> None:
    with op.batch_alter_table('feed_versions', schema=None) as batch_op:
        batch_op.drop_column('articles')
