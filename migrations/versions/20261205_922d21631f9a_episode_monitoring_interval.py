"""Per-episode monitoring interval, and each open episode's due time in the dashboard summary.

A clinician sets how often the patient is to be assessed while an episode is open
(``episode.assess_every_hours``, 1 to 72; NULL follows the site's OVERDUE_AFTER_HOURS). The
summary keeps, per open episode, the latest withdrawal entry (or the episode's start),
``due_from``, and the next due time, ``due_at``, with an index in due order per site: the
patient list sorts and filters by it without computing every patient's due time.

The backfill knows the built-in withdrawal scales (COWS, SOWS, OOWS, SOWS-Gossop) and uses
the site setting of the app running the upgrade; an installation with withdrawal scales of
its own runs ``flask dashboard rebuild`` once after upgrading, as for the triage revision.

Revision ID: 922d21631f9a
Revises: d7f3b2a9c415
Create Date: 2026-12-05 19:00:00.000000

"""
from datetime import timedelta

import sqlalchemy as sa
from alembic import op
from flask import current_app

from clinic_log.database import UTCDateTime

# revision identifiers, used by Alembic.
revision = '922d21631f9a'
down_revision = 'd7f3b2a9c415'
branch_labels = None
depends_on = None

WITHDRAWAL_SCALES = ("cows", "sows", "oows", "sows_gossop")  # as at this revision
IN_RANGE = 'assess_every_hours IS NULL OR assess_every_hours BETWEEN 1 AND 72'
PLACEHOLDER = '2000-01-01 00:00:00'

dashboard_episode = sa.table(
    "dashboard_episode",
    sa.column("episode_id", sa.Integer),
    sa.column("due_from", UTCDateTime),
    sa.column("due_at", UTCDateTime),
)
dashboard_scale = sa.table(
    "dashboard_scale",
    sa.column("episode_id", sa.Integer),
    sa.column("scale_key", sa.String),
    sa.column("observed_at", UTCDateTime),
)
episode = sa.table(
    "episode", sa.column("id", sa.Integer), sa.column("started_at", UTCDateTime)
)


def upgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == 'sqlite'
    # Columns are added in place, never by copying a table: SQLite copies by DROP TABLE, and
    # dropping dashboard_episode would cascade to its scale rows (episode's children refuse).
    if sqlite:
        op.execute(
            'ALTER TABLE episode ADD COLUMN assess_every_hours INTEGER '
            f'CONSTRAINT assess_every_in_range CHECK ({IN_RANGE})'
        )
    else:
        op.add_column('episode', sa.Column('assess_every_hours', sa.Integer(), nullable=True))
        op.create_check_constraint('assess_every_in_range', 'episode', IN_RANGE)
    # NOT NULL from the start (SQLite cannot add it later without a copy): a placeholder
    # default, replaced for every row below and dropped where the database allows.
    for name in ('due_from', 'due_at'):
        op.add_column(
            'dashboard_episode',
            sa.Column(
                name, sa.DateTime(timezone=True), nullable=False, server_default=PLACEHOLDER
            ),
        )

    # Every open episode follows the site default until a clinician sets its own interval.
    hours = current_app.config.get("OVERDUE_AFTER_HOURS", 8)
    latest = (
        sa.select(sa.func.max(dashboard_scale.c.observed_at))
        .where(
            dashboard_scale.c.episode_id == dashboard_episode.c.episode_id,
            dashboard_scale.c.scale_key.in_(WITHDRAWAL_SCALES),
        )
        .scalar_subquery()
    )
    started = (
        sa.select(episode.c.started_at)
        .where(episode.c.id == dashboard_episode.c.episode_id)
        .scalar_subquery()
    )
    rows = bind.execute(
        sa.select(dashboard_episode.c.episode_id, latest.label("latest"), started.label("started"))
    ).all()
    for episode_id, latest_at, started_at in rows:
        due_from = latest_at or started_at
        bind.execute(
            dashboard_episode.update()
            .where(dashboard_episode.c.episode_id == episode_id)
            .values(due_from=due_from, due_at=due_from + timedelta(hours=hours))
        )

    if not sqlite:
        for name in ('due_from', 'due_at'):
            op.alter_column('dashboard_episode', name, server_default=None)
    op.create_index(
        'ix_dashboard_episode_due', 'dashboard_episode', ['site_id', 'due_at', 'episode_id']
    )


def downgrade():
    # In place on SQLite too (3.35+: ALTER TABLE ... DROP COLUMN), for the reason above.
    op.drop_index('ix_dashboard_episode_due', table_name='dashboard_episode')
    op.drop_column('dashboard_episode', 'due_at')
    op.drop_column('dashboard_episode', 'due_from')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint('assess_every_in_range', 'episode', type_='check')
    op.drop_column('episode', 'assess_every_hours')
