"""Dashboard triage by current withdrawal severity.

The dashboard ranks by the band (or an incomplete total's floor) of withdrawal measures
observed within a recency window. Severity that depends on the clock cannot be stored as it
is, so each scale row keeps its own ``withdrawal_rank`` and the number of items its latest
entry left not assessed, and each episode keeps its highest withdrawal rank with the time that
level was last observed (``severity_at``); the page compares those times with the window.
``severity`` now counts withdrawal measures only.

The backfill knows the built-in scales: COWS is the only built-in withdrawal measure with
bands (5–12, 13–24, 25–36, 37–48 on the common ladder 1–4; an incomplete total's floor is the
band its total lies in, so complete or not the rank follows the total). An installation with
scale files of its own marked as withdrawal measures runs ``flask dashboard rebuild`` once
after upgrading, which places them as the app does.

Revision ID: e1a7c3d9b5f2
Revises: 3a043569c076
Create Date: 2026-12-05 16:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e1a7c3d9b5f2'
down_revision = '3a043569c076'
branch_labels = None
depends_on = None

# COWS bands on the common ladder, as at this revision (cows.toml).
COWS_LADDER = ((5, 12, 1.0), (13, 24, 2.0), (25, 36, 3.0), (37, 48, 4.0))

dashboard_episode = sa.table(
    "dashboard_episode",
    sa.column("episode_id", sa.Integer),
    sa.column("severity", sa.Float),
    sa.column("severity_at", sa.DateTime(timezone=True)),
)
dashboard_scale = sa.table(
    "dashboard_scale",
    sa.column("episode_id", sa.Integer),
    sa.column("scale_key", sa.String),
    sa.column("assessment_id", sa.Integer),
    sa.column("observed_at", sa.DateTime(timezone=True)),
    sa.column("total", sa.Integer),
    sa.column("not_assessed_count", sa.Integer),
    sa.column("withdrawal_rank", sa.Float),
)
assessment = sa.table(
    "assessment", sa.column("id", sa.Integer), sa.column("not_assessed_count", sa.Integer)
)


def upgrade():
    with op.batch_alter_table('dashboard_scale', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('not_assessed_count', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(
            sa.Column('withdrawal_rank', sa.Float(), nullable=False, server_default='0')
        )
    with op.batch_alter_table('dashboard_episode', schema=None) as batch_op:
        batch_op.add_column(sa.Column('severity_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_index('ix_dashboard_episode_order')
        batch_op.create_index(
            'ix_dashboard_episode_order',
            [
                'site_id',
                sa.literal_column('severity DESC'),
                'severity_at',
                'since_at',
                'episode_id',
            ],
            unique=False,
        )

    op.execute(
        dashboard_scale.update().values(
            not_assessed_count=sa.select(assessment.c.not_assessed_count)
            .where(assessment.c.id == dashboard_scale.c.assessment_id)
            .scalar_subquery(),
            withdrawal_rank=sa.case(
                *[
                    (
                        sa.and_(
                            dashboard_scale.c.scale_key == "cows",
                            dashboard_scale.c.total.between(low, high),
                        ),
                        rank,
                    )
                    for low, high, rank in COWS_LADDER
                ],
                else_=0.0,
            ),
        )
    )
    ranks = sa.alias(dashboard_scale, "ranks")
    top = (
        sa.select(sa.func.coalesce(sa.func.max(ranks.c.withdrawal_rank), 0.0))
        .where(ranks.c.episode_id == dashboard_episode.c.episode_id)
        .scalar_subquery()
    )
    op.execute(dashboard_episode.update().values(severity=top))
    op.execute(
        dashboard_episode.update()
        .where(dashboard_episode.c.severity > 0)
        .values(
            severity_at=sa.select(sa.func.max(ranks.c.observed_at))
            .where(
                ranks.c.episode_id == dashboard_episode.c.episode_id,
                ranks.c.withdrawal_rank == dashboard_episode.c.severity,
            )
            .scalar_subquery()
        )
    )


def downgrade():
    # The earlier ranking (every scale's band, whatever its age) is recomputed by that
    # version's ``flask dashboard rebuild``. The index goes first: SQLite drops a column by
    # copying the table, and cannot copy an index on ``severity DESC``.
    op.drop_index('ix_dashboard_episode_order', table_name='dashboard_episode')
    with op.batch_alter_table('dashboard_episode', schema=None) as batch_op:
        batch_op.drop_column('severity_at')
    op.create_index(
        'ix_dashboard_episode_order',
        'dashboard_episode',
        ['site_id', sa.literal_column('severity DESC'), 'since_at', 'episode_id'],
        unique=False,
    )
    with op.batch_alter_table('dashboard_scale', schema=None) as batch_op:
        batch_op.drop_column('withdrawal_rank')
        batch_op.drop_column('not_assessed_count')
