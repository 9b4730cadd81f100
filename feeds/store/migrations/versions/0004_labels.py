"""Tags and authors as labels, each listing its articles

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
import json

from alembic import op
import sqlalchemy as sa

from feeds.store.schema import UTCDateTime
from feeds.text import slugify

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    labels = op.create_table(
        'labels',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=500), nullable=False),
        sa.Column('slug', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kind', 'name', name='uq_labels_kind_name'),
        sa.UniqueConstraint('kind', 'slug', name='uq_labels_kind_slug'),
    )
    op.create_table(
        'article_labels',
        sa.Column('label_id', sa.Integer(), nullable=False),
        sa.Column('published', UTCDateTime(), nullable=False),
        sa.Column('article_pk', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['article_pk'], ['articles.pk'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['label_id'], ['labels.id']),
        sa.PrimaryKeyConstraint('label_id', 'published', 'article_pk'),
    )
    op.create_index('ix_article_labels_article', 'article_labels', ['article_pk'], unique=False)
    # Every stored article under its tags and author, with pinyin slugs (slugs chosen in
    # config apply to labels first stored after this).
    conn = op.get_bind()
    known: dict[tuple[str, str], int] = {}
    taken: set[tuple[str, str]] = set()
    rows = conn.execute(sa.text("SELECT pk, published, tags, author FROM articles ORDER BY pk"))
    batch = []
    for pk, published, tags, author in rows.fetchall():
        named = {("tag", tag) for tag in json.loads(tags)} | ({("author", author)} if author else set())
        for kind, name in sorted(named):
            if (kind, name) not in known:
                wanted = slug = slugify(name)
                number = 1
                while (kind, slug) in taken:
                    number += 1
                    slug = f"{wanted}-{number}"
                taken.add((kind, slug))
                known[(kind, name)] = conn.execute(
                    labels.insert().values(kind=kind, name=name, slug=slug).returning(labels.c.id)).scalar_one()
            batch.append({"label_id": known[(kind, name)], "published": published, "article_pk": pk})
    if batch:
        conn.execute(sa.text("INSERT INTO article_labels (label_id, published, article_pk) "
                             "VALUES (:label_id, :published, :article_pk)"), batch)


def downgrade() -> None:
    op.drop_index('ix_article_labels_article', table_name='article_labels')
    op.drop_table('article_labels')
    op.drop_table('labels')
