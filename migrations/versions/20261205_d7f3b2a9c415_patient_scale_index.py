"""An index of one scale's entries of one patient, newest first: the patient page's summary
of each scale, its timeline narrowed to one scale, and the flowsheet of one scale read a
short range of it instead of every entry of the patient.

Revision ID: d7f3b2a9c415
Revises: c4e8a2f61d37
Create Date: 2026-12-05 18:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd7f3b2a9c415'
down_revision = 'c4e8a2f61d37'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        'ix_assessment_patient_scale_observed',
        'assessment',
        ['patient_id', 'scale_key', 'observed_at', 'id', 'status'],
        unique=False,
    )


def downgrade():
    op.drop_index('ix_assessment_patient_scale_observed', table_name='assessment')
