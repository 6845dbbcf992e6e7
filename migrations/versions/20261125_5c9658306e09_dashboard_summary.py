"""Dashboard summary: per open episode its sort keys, per scale its latest entry and recent totals.

The supervisor dashboard pages through open episodes in the order of one index instead of
ranking every assessment on every request; the services keep the summary in the same
transaction as each change. This revision fills it for the episodes open now.

Severity is backfilled on the common ladder (minimal 0.5, mild 1, moderate 2, moderately
severe 3, severe 4), which covers every band of the built-in scales. An installation with
scale files of its own whose band labels are not on that ladder runs
``flask dashboard rebuild`` once after upgrading, which places them as the app does.

Revision ID: 5c9658306e09
Revises: 99faaef8b00b
Create Date: 2026-11-25 03:14:17.712135

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c9658306e09'
down_revision = '99faaef8b00b'
branch_labels = None
depends_on = None

SPARK_POINTS = 12
LADDER = {"minimal": 0.5, "mild": 1.0, "moderate": 2.0, "moderately severe": 3.0, "severe": 4.0}

# The columns this revision reads, as they are at this revision (never the app's models).
episode = sa.table(
    "episode",
    sa.column("id", sa.Integer),
    sa.column("patient_id", sa.Integer),
    sa.column("started_at", sa.DateTime(timezone=True)),
    sa.column("ended_at", sa.DateTime(timezone=True)),
)
patient = sa.table("patient", sa.column("id", sa.Integer), sa.column("site_id", sa.Integer))
assessment = sa.table(
    "assessment",
    sa.column("id", sa.Integer),
    sa.column("episode_id", sa.Integer),
    sa.column("scale_key", sa.String),
    sa.column("observed_at", sa.DateTime(timezone=True)),
    sa.column("total", sa.Integer),
    sa.column("complete", sa.Boolean),
    sa.column("band", sa.String),
    sa.column("status", sa.String),
)


def upgrade():
    dashboard_episode = op.create_table('dashboard_episode',
    sa.Column('episode_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('severity', sa.Float(), nullable=False),
    sa.Column('last_assessed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('since_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['episode_id'], ['episode.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.PrimaryKeyConstraint('episode_id')
    )
    with op.batch_alter_table('dashboard_episode', schema=None) as batch_op:
        batch_op.create_index('ix_dashboard_episode_order', ['site_id', sa.literal_column('severity DESC'), 'since_at', 'episode_id'], unique=False)

    dashboard_scale = op.create_table('dashboard_scale',
    sa.Column('episode_id', sa.Integer(), nullable=False),
    sa.Column('scale_key', sa.String(length=40), nullable=False),
    sa.Column('assessment_id', sa.Integer(), nullable=False),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('complete', sa.Boolean(), nullable=False),
    sa.Column('band', sa.String(length=60), nullable=True),
    sa.Column('recent_totals', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['assessment_id'], ['assessment.id'], ),
    sa.ForeignKeyConstraint(['episode_id'], ['dashboard_episode.episode_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('episode_id', 'scale_key')
    )
    with op.batch_alter_table('assessment', schema=None) as batch_op:
        batch_op.create_index('ix_assessment_episode_scale_recent', ['episode_id', 'scale_key', 'status', 'observed_at', 'id'], unique=False)

    _backfill(dashboard_episode, dashboard_scale)


def _backfill(dashboard_episode, dashboard_scale):
    """One summary row per open episode, one scale row per scale it has active entries on."""
    bind = op.get_bind()
    open_episodes = bind.execute(
        sa.select(episode.c.id, episode.c.started_at, patient.c.site_id)
        .join(patient, patient.c.id == episode.c.patient_id)
        .where(episode.c.ended_at.is_(None))
    ).all()
    if not open_episodes:
        return
    recent = {}
    for entry in bind.execute(_recent_entries_of_open_episodes()):
        recent.setdefault(entry.episode_id, {}).setdefault(entry.scale_key, []).append(entry)
    summaries, scale_rows = [], []
    for episode_id, started_at, site_id in open_episodes:
        severity, last = 0.0, None
        for scale_key, latest_first in sorted(recent.get(episode_id, {}).items()):
            latest = latest_first[0]
            scale_rows.append({
                "episode_id": episode_id,
                "scale_key": scale_key,
                "assessment_id": latest.id,
                "observed_at": latest.observed_at,
                "total": latest.total,
                "complete": bool(latest.complete),
                "band": latest.band,
                "recent_totals": [[e.total, bool(e.complete)] for e in reversed(latest_first)],
            })
            if latest.complete and latest.band:
                severity = max(severity, LADDER.get(latest.band.strip().lower(), 0.0))
            last = latest.observed_at if last is None else max(last, latest.observed_at)
        summaries.append({
            "episode_id": episode_id,
            "site_id": site_id,
            "severity": severity,
            "last_assessed_at": last,
            "since_at": last or started_at,
        })
    op.bulk_insert(dashboard_episode, summaries)
    if scale_rows:
        op.bulk_insert(dashboard_scale, scale_rows)


def _recent_entries_of_open_episodes():
    """The last SPARK_POINTS active entries of each scale of each open episode, newest first."""
    position = sa.func.row_number().over(
        partition_by=(assessment.c.episode_id, assessment.c.scale_key),
        order_by=(assessment.c.observed_at.desc(), assessment.c.id.desc()),
    ).label("position")
    ranked = (
        sa.select(
            assessment.c.episode_id, assessment.c.scale_key, assessment.c.id,
            assessment.c.observed_at, assessment.c.total, assessment.c.complete,
            assessment.c.band, position,
        )
        .join(episode, episode.c.id == assessment.c.episode_id)
        .where(episode.c.ended_at.is_(None), assessment.c.status == "active")
        .subquery()
    )
    return (
        sa.select(ranked)
        .where(ranked.c.position <= SPARK_POINTS)
        .order_by(ranked.c.episode_id, ranked.c.scale_key, ranked.c.position)
    )


def downgrade():
    with op.batch_alter_table('assessment', schema=None) as batch_op:
        batch_op.drop_index('ix_assessment_episode_scale_recent')

    op.drop_table('dashboard_scale')
    with op.batch_alter_table('dashboard_episode', schema=None) as batch_op:
        batch_op.drop_index('ix_dashboard_episode_order')

    op.drop_table('dashboard_episode')
