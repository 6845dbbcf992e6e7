"""At most one open episode per patient, as a partial unique index: two "new episode" posts at
the same moment can no longer both open one.

Stops, changing nothing, when a patient already has more than one open episode, and names
them: which one is right is a clinician's decision, never the migration's.

Revision ID: be95cf866f89
Revises: d42f8a1c6e37
Create Date: 2026-12-05 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'be95cf866f89'
down_revision = 'd42f8a1c6e37'
branch_labels = None
depends_on = None

# Written out, not imported: a migration must not change when application code does.
OPEN = "ended_at IS NULL"


def upgrade():
    doubled = op.get_bind().execute(
        sa.text(
            "SELECT site.code, patient.identifier, COUNT(*) FROM episode"
            " JOIN patient ON patient.id = episode.patient_id"
            " JOIN site ON site.id = patient.site_id"
            " WHERE episode.ended_at IS NULL"
            " GROUP BY site.code, patient.identifier HAVING COUNT(*) > 1"
            " ORDER BY site.code, patient.identifier"
        )
    ).all()
    if doubled:
        # flask db reports a RuntimeError as one line, without a traceback.
        names = "; ".join(f"{code} {identifier} ({count} open)" for code, identifier, count in doubled)
        raise RuntimeError(
            "Cannot add the rule 'at most one open episode per patient': these patients have "
            f"more than one open episode: {names}. End all but one of each patient's open "
            "episodes on the patient's page, then run 'flask db upgrade' again. Nothing was "
            "changed."
        )
    op.create_index(
        'uq_episode_one_open_per_patient',
        'episode',
        ['patient_id'],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade():
    op.drop_index('uq_episode_one_open_per_patient', table_name='episode')
