"""Login attempts per client address, so that the login rate limit holds across workers.

Revision ID: b59dbd208871
Revises: 5e1c7a3f90d2
Create Date: 2026-12-05 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b59dbd208871'
down_revision = '5e1c7a3f90d2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'login_attempt',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_login_attempt_address_at', 'login_attempt', ['address', 'at'], unique=False)


def downgrade():
    op.drop_index('ix_login_attempt_address_at', table_name='login_attempt')
    op.drop_table('login_attempt')
