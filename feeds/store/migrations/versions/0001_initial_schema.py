"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('categories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('path', sa.String(length=1000), nullable=False),
    sa.Column('slug_path', sa.String(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['categories.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('path'),
    sa.UniqueConstraint('slug_path')
    )
    op.create_table('feed_versions',
    sa.Column('scope', sa.String(length=1100), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('scope')
    )
    op.create_table('ranking_states',
    sa.Column('feed', sa.String(length=1000), nullable=False),
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('changed', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('feed')
    )
    op.create_table('sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=False),
    sa.Column('slug', sa.String(length=200), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('slug')
    )
    op.create_table('articles',
    sa.Column('pk', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('author', sa.String(length=500), nullable=True),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('category_id', sa.Integer(), nullable=True),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('image', sa.String(length=2048), nullable=True),
    sa.Column('published', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], ),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('id')
    )
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.create_index('ix_articles_published', ['published', 'pk'], unique=False)
        batch_op.create_index('ix_articles_source_published', ['source_id', 'published', 'pk'], unique=False)

    op.create_table('article_categories',
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('published', sa.DateTime(timezone=True), nullable=False),
    sa.Column('article_pk', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['article_pk'], ['articles.pk'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], ),
    sa.PrimaryKeyConstraint('category_id', 'published', 'article_pk')
    )
    with op.batch_alter_table('article_categories', schema=None) as batch_op:
        batch_op.create_index('ix_article_categories_article', ['article_pk'], unique=False)

    op.create_table('reads_hourly',
    sa.Column('bucket', sa.DateTime(timezone=True), nullable=False),
    sa.Column('article_pk', sa.Integer(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['article_pk'], ['articles.pk'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('bucket', 'article_pk'),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('reads_hourly', schema=None) as batch_op:
        batch_op.create_index('ix_reads_hourly_article', ['article_pk', 'bucket', 'count'], unique=False)

    op.create_table('reads_minutely',
    sa.Column('bucket', sa.DateTime(timezone=True), nullable=False),
    sa.Column('article_pk', sa.Integer(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['article_pk'], ['articles.pk'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('bucket', 'article_pk'),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('reads_minutely', schema=None) as batch_op:
        batch_op.create_index('ix_reads_minutely_article', ['article_pk', 'bucket', 'count'], unique=False)

    op.create_table('reads_daily',
    sa.Column('bucket', sa.DateTime(timezone=True), nullable=False),
    sa.Column('article_pk', sa.Integer(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['article_pk'], ['articles.pk'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('bucket', 'article_pk'),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('reads_daily', schema=None) as batch_op:
        batch_op.create_index('ix_reads_daily_article', ['article_pk'], unique=False)
        batch_op.create_index('ix_reads_daily_busiest', ['bucket', 'count', 'article_pk'], unique=False)

    op.create_table('stats_aggregators',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('feed', sa.String(length=1000), nullable=False),
    sa.Column('service', sa.String(length=100), nullable=False),
    sa.Column('subscribers', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'feed', 'service')
    )
    op.create_table('stats_clients',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('feed', sa.String(length=1000), nullable=False),
    sa.Column('client', sa.String(length=100), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'feed', 'client')
    )
    op.create_table('stats_daily',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('feed', sa.String(length=1000), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('not_modified', sa.BigInteger(), nullable=False),
    sa.Column('pollers', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('day', 'feed')
    )
    op.create_table('stats_pollers',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('feed', sa.String(length=1000), nullable=False),
    sa.Column('poller', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('day', 'feed', 'poller')
    )


def downgrade() -> None:
    op.drop_table('stats_pollers')
    op.drop_table('stats_daily')
    op.drop_table('stats_clients')
    op.drop_table('stats_aggregators')
    with op.batch_alter_table('reads_daily', schema=None) as batch_op:
        batch_op.drop_index('ix_reads_daily_busiest')
        batch_op.drop_index('ix_reads_daily_article')

    op.drop_table('reads_daily')
    with op.batch_alter_table('reads_minutely', schema=None) as batch_op:
        batch_op.drop_index('ix_reads_minutely_article')

    op.drop_table('reads_minutely')
    with op.batch_alter_table('reads_hourly', schema=None) as batch_op:
        batch_op.drop_index('ix_reads_hourly_article')

    op.drop_table('reads_hourly')
    with op.batch_alter_table('article_categories', schema=None) as batch_op:
        batch_op.drop_index('ix_article_categories_article')

    op.drop_table('article_categories')
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_index('ix_articles_source_published')
        batch_op.drop_index('ix_articles_published')

    op.drop_table('articles')
    op.drop_table('sources')
    op.drop_table('ranking_states')
    op.drop_table('feed_versions')
    op.drop_table('categories')
