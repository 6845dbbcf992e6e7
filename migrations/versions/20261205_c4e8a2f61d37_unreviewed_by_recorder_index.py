"""A partial index of the entries waiting for sign-off by who recorded them: the review
queue's tab of a supervisor's own entries, and its count, walk only that supervisor's.

Revision ID: c4e8a2f61d37
Revises: e1a7c3d9b5f2
Create Date: 2026-12-05 12:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4e8a2f61d37'
down_revision = 'e1a7c3d9b5f2'
branch_labels = None
depends_on = None

# Written out, not imported: a migration must not change when application code does.
UNREVIEWED = "status = 'active' AND reviewed_at IS NULL"


def upgrade():
    op.create_index(
        'ix_assessment_unreviewed_recorder',
        'assessment',
        ['recorded_by_id', 'observed_at', 'id', 'status', 'reviewed_at'],
        unique=False,
        sqlite_where=sa.text(UNREVIEWED),
        postgresql_where=sa.text(UNREVIEWED),
    )


def downgrade():
    op.drop_index('ix_assessment_unreviewed_recorder', table_name='assessment')
