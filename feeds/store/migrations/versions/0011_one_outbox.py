"""One outbox for every push: the search engines' queue becomes it, and the hub's confirmations and
deliveries still owed move into it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""
import hashlib
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

from feeds.store.schema import UTCDateTime

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _key(channel: str, target: str, subject: str) -> str:
    return hashlib.sha256(f"{channel}\n{target}\n{subject}".encode()).hexdigest()


def upgrade() -> None:
    conn = op.get_bind()
    now = datetime.now(timezone.utc)
    outbox = op.create_table(
        'outbox',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('target', sa.Text(), nullable=False),
        sa.Column('subject', sa.Text(), nullable=False),
        *_queue_columns(),
        sa.Column('claim', sa.String(length=16), nullable=True),
    )
    op.create_index('ix_outbox_channel_due', 'outbox', ['channel', 'due'])
    push_queue = sa.table('push_queue', *(sa.column(name) for name in ('engine', 'url', 'action', 'attempts')),
                          *(sa.column(name, UTCDateTime()) for name in ('queued', 'due', 'failing_since')))
    intents = sa.table('websub_intents', sa.column('key'), sa.column('mode'))
    subscriptions = sa.table('websub_subscriptions', *(sa.column(name) for name in ('key', 'scope', 'attempts', 'delivered_version')),
                             *(sa.column(name, UTCDateTime()) for name in ('due', 'failing_since')))
    versions = sa.table('feed_versions', sa.column('scope'), sa.column('version'))
    rows = []
    for row in conn.execute(sa.select(push_queue)):
        rows.append({"key": _key(row.engine, "", row.url), "channel": row.engine, "target": "", "subject": row.url,
                     "action": row.action, "queued": row.queued, "due": row.due, "attempts": row.attempts,
                     "failing_since": row.failing_since})
    for row in conn.execute(sa.select(intents)):
        rows.append({"key": _key("verification", row.key, ""), "channel": "verification", "target": row.key, "subject": "",
                     "action": row.mode, "queued": now, "due": now, "attempts": 0, "failing_since": None})
    owed = (sa.select(subscriptions).join(versions, versions.c.scope == subscriptions.c.scope)
            .where(versions.c.version > subscriptions.c.delivered_version))
    for row in conn.execute(owed):
        rows.append({"key": _key("delivery", row.key, ""), "channel": "delivery", "target": row.key, "subject": "",
                     "action": "content", "queued": now, "due": row.due, "attempts": row.attempts,
                     "failing_since": row.failing_since})
    if rows:
        op.bulk_insert(outbox, [{**row, "version": 1} for row in rows])
    _counts_table('outbox_channels', 'channel')
    conn.execute(sa.text("INSERT INTO outbox_channels SELECT * FROM push_engines"))
    op.drop_table('push_engines')
    op.drop_index('ix_push_queue_engine_due', 'push_queue')
    op.drop_table('push_queue')
    # In place (SQLite 3.35+): see 0007
    op.drop_column('websub_intents', 'claimed_until')
    for column in ('delivered_version', 'due', 'attempts', 'claimed_until'):
        op.drop_column('websub_subscriptions', column)


def downgrade() -> None:
    conn = op.get_bind()
    op.add_column('websub_intents', sa.Column('claimed_until', UTCDateTime(), nullable=True))
    op.add_column('websub_subscriptions', sa.Column('delivered_version', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('websub_subscriptions', sa.Column('due', UTCDateTime(), server_default='1970-01-01 00:00:00', nullable=False))
    op.add_column('websub_subscriptions', sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
    op.add_column('websub_subscriptions', sa.Column('claimed_until', UTCDateTime(), nullable=True))
    push_queue = op.create_table(
        'push_queue',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('engine', sa.String(length=32), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        *_queue_columns(),
    )
    op.create_index('ix_push_queue_engine_due', 'push_queue', ['engine', 'due'])
    outbox = sa.table('outbox', *(sa.column(name) for name in ('channel', 'subject', 'action', 'version', 'attempts')),
                      *(sa.column(name, UTCDateTime()) for name in ('queued', 'due', 'failing_since')))
    rows = [{"key": hashlib.sha256(f"{row.channel}\n{row.subject}".encode()).hexdigest(), "engine": row.channel,
             "url": row.subject, "action": row.action, "version": row.version, "queued": row.queued, "due": row.due,
             "attempts": row.attempts, "failing_since": row.failing_since}
            for row in conn.execute(sa.select(outbox).where(outbox.c.channel.in_(["indexnow", "baidu"])))]
    if rows:
        op.bulk_insert(push_queue, rows)
    _counts_table('push_engines', 'engine')
    conn.execute(sa.text("INSERT INTO push_engines SELECT * FROM outbox_channels WHERE channel IN ('indexnow', 'baidu')"))
    op.drop_table('outbox_channels')
    op.drop_index('ix_outbox_channel_due', 'outbox')
    op.drop_table('outbox')


def _counts_table(name: str, first: str) -> None:
    op.create_table(
        name,
        sa.Column(first, sa.String(length=32), nullable=False),
        sa.Column('sent', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('failed', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('last_sent', UTCDateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_error_at', UTCDateTime(), nullable=True),
        sa.Column('remain', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(first),
    )


def _queue_columns() -> list[sa.schema.SchemaItem]:
    """What the outbox and the queue it replaced have alike: each row's action, version and pace, and its key."""
    return [
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.Column('queued', UTCDateTime(), nullable=False),
        sa.Column('due', UTCDateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('failing_since', UTCDateTime(), nullable=True),
        sa.Column('claimed_until', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('key'),
    ]
