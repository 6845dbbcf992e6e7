"""Partial indexes of the entries waiting for sign-off: the review queue, its count and its
patient filter read these instead of sorting every entry.

Revision ID: b71e4c2a9d05
Revises: a3d9e1f0b7c4
Create Date: 2026-11-25 07:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b71e4c2a9d05'
down_revision = 'a3d9e1f0b7c4'
branch_labels = None
depends_on = None

# Written out, not imported: a migration must not change when application code does.
UNREVIEWED = "status = 'active' AND reviewed_at IS NULL"


def upgrade():
    # status and reviewed_at are constant within each index, and listed so that the queue's
    # queries are answered from the index alone (SQLite then prefers it with no statistics).
    covered = ['observed_at', 'id', 'status', 'reviewed_at']
    for name, columns in (
        ('ix_assessment_unreviewed_observed', covered),
        ('ix_assessment_unreviewed_patient', ['patient_id', *covered]),
    ):
        op.create_index(
            name,
            'assessment',
            columns,
            unique=False,
            sqlite_where=sa.text(UNREVIEWED),
            postgresql_where=sa.text(UNREVIEWED),
        )


def downgrade():
    op.drop_index('ix_assessment_unreviewed_patient', table_name='assessment')
    op.drop_index('ix_assessment_unreviewed_observed', table_name='assessment')
