"""The per-patient entry index carries the status, so the patient list counts and dates each
patient's active entries from the index alone.

Revision ID: d42f8a1c6e37
Revises: b71e4c2a9d05
Create Date: 2026-11-25 07:50:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'd42f8a1c6e37'
down_revision = 'b71e4c2a9d05'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_assessment_patient_observed', table_name='assessment')
    op.create_index(
        'ix_assessment_patient_observed',
        'assessment',
        ['patient_id', 'observed_at', 'status'],
        unique=False,
    )


def downgrade():
    op.drop_index('ix_assessment_patient_observed', table_name='assessment')
    op.create_index(
        'ix_assessment_patient_observed', 'assessment', ['patient_id', 'observed_at'], unique=False
    )
