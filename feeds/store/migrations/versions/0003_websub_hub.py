"""the WebSub hub's intents, subscriptions and daily counts; the poller salt of each open day

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('websub_intents',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('topic', sa.String(length=2048), nullable=False),
    sa.Column('callback', sa.String(length=2048), nullable=False),
    sa.Column('host', sa.String(length=300), nullable=False),
    sa.Column('feed', sa.String(length=1000), nullable=False),
    sa.Column('scope', sa.String(length=1100), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('secret', sa.String(length=200), nullable=True),
    sa.Column('lease_seconds', sa.Integer(), nullable=False),
    sa.Column('requested', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('websub_subscriptions',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('topic', sa.String(length=2048), nullable=False),
    sa.Column('callback', sa.String(length=2048), nullable=False),
    sa.Column('host', sa.String(length=300), nullable=False),
    sa.Column('feed', sa.String(length=1000), nullable=False),
    sa.Column('scope', sa.String(length=1100), nullable=False),
    sa.Column('secret', sa.String(length=200), nullable=True),
    sa.Column('expires', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_version', sa.BigInteger(), nullable=False),
    sa.Column('delivered_etag', sa.String(length=80), nullable=True),
    sa.Column('due', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index('ix_websub_subscriptions_scope', 'websub_subscriptions', ['scope'], unique=False)
    op.create_index('ix_websub_subscriptions_host', 'websub_subscriptions', ['host'], unique=False)
    op.create_table('websub_days',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('feed', sa.String(length=1000), nullable=False),
    sa.Column('delivered', sa.BigInteger(), nullable=False),
    sa.Column('failed', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'feed')
    )
    op.create_table('stats_salts',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('salt', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('day')
    )


def downgrade() -> None:
    op.drop_table('stats_salts')
    op.drop_table('websub_days')
    op.drop_index('ix_websub_subscriptions_host', table_name='websub_subscriptions')
    op.drop_index('ix_websub_subscriptions_scope', table_name='websub_subscriptions')
    op.drop_table('websub_subscriptions')
    op.drop_table('websub_intents')
