"""Audit event lookups by action, person and time: the export limit and the login lockout.

Revision ID: a3d9e1f0b7c4
Revises: 5c9658306e09
Create Date: 2026-11-25 04:25:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a3d9e1f0b7c4'
down_revision = '5c9658306e09'
branch_labels = None
depends_on = None


# Plain CREATE INDEX, not batch mode: a rebuilt audit_event table on SQLite would lose the
# triggers that keep it append-only.
def upgrade():
    op.create_index(
        'ix_audit_event_action_user_at', 'audit_event', ['action', 'user_id', 'at'], unique=False
    )
    op.create_index(
        'ix_audit_event_action_entity_at',
        'audit_event',
        ['action', 'entity', 'entity_id', 'at'],
        unique=False,
    )


def downgrade():
    op.drop_index('ix_audit_event_action_entity_at', table_name='audit_event')
    op.drop_index('ix_audit_event_action_user_at', table_name='audit_event')
