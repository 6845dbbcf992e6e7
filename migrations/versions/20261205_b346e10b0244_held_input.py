"""Held input: what a user typed into a form the session rules refused (a timeout, a pending
password change or enrolment), kept for that user for a short time and offered back after
their next login. Transient input, deleted once restored, discarded or expired.

Revision ID: b346e10b0244
Revises: be95cf866f89
Create Date: 2026-12-05 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b346e10b0244'
down_revision = 'be95cf866f89'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'held_input',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('endpoint', sa.String(length=100), nullable=False),
        sa.Column('path', sa.String(length=500), nullable=False),
        sa.Column('why', sa.String(length=20), nullable=False),
        sa.Column('form', sa.Text(), nullable=False),
        sa.Column('held_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('expires_at > held_at', name='expires_after_held'),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_held_input_user_id', 'held_input', ['user_id'], unique=False)
    op.create_index('ix_held_input_expires_at', 'held_input', ['expires_at'], unique=False)


def downgrade():
    op.drop_index('ix_held_input_expires_at', table_name='held_input')
    op.drop_index('ix_held_input_user_id', table_name='held_input')
    op.drop_table('held_input')
