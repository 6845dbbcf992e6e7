"""Credentials: when the latest password or code try was counted (the lockout run) and when an
administrator's one-time password expires.

Revision ID: 5e1c7a3f90d2
Revises: b346e10b0244
Create Date: 2026-12-05 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5e1c7a3f90d2'
down_revision = 'b346e10b0244'
branch_labels = None
depends_on = None


def upgrade():
    # One-time passwords issued before this revision keep no expiry: their users are still
    # made to change them at first login.
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_try_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column('one_time_password_expires_at', sa.DateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('one_time_password_expires_at')
        batch_op.drop_column('last_try_at')
