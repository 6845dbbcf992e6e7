"""Emergency ("break-glass") access: time-boxed site grants with a reason, revocation and review.

Revision ID: 99faaef8b00b
Revises: c8a15328a7cd
Create Date: 2026-11-25 03:08:30.803432

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '99faaef8b00b'
down_revision = 'c8a15328a7cd'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('site_access_grant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('granted_by_id', sa.Integer(), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by_id', sa.Integer(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reviewed_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("reason <> ''", name='reason_given'),
    sa.CheckConstraint('(reviewed_at IS NULL) = (reviewed_by_id IS NULL)', name='reviewed_by_whom'),
    sa.CheckConstraint('(revoked_at IS NULL) = (revoked_by_id IS NULL)', name='revoked_by_whom'),
    sa.CheckConstraint('expires_at > granted_at', name='expires_after_grant'),
    sa.ForeignKeyConstraint(['granted_by_id'], ['user.id'], ),
    sa.ForeignKeyConstraint(['reviewed_by_id'], ['user.id'], ),
    sa.ForeignKeyConstraint(['revoked_by_id'], ['user.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['site.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('site_access_grant', schema=None) as batch_op:
        batch_op.create_index('ix_site_access_grant_site_granted', ['site_id', 'granted_at'], unique=False)
        batch_op.create_index('ix_site_access_grant_user_expires', ['user_id', 'expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('site_access_grant', schema=None) as batch_op:
        batch_op.drop_index('ix_site_access_grant_user_expires')
        batch_op.drop_index('ix_site_access_grant_site_granted')

    op.drop_table('site_access_grant')