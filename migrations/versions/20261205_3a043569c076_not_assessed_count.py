"""How many items of each entry were not assessed, stored with its total, so that lists of
entries can word an incomplete total as a floor ("at least Severe — incomplete, 1 item not
assessed") from the entry's own row.

Existing rows are filled from their item scores: an item not assessed is a row without a
score. Complete entries have none, so only incomplete ones are counted.

Revision ID: 3a043569c076
Revises: b9727a62cebb
Create Date: 2026-12-05 15:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3a043569c076'
down_revision = 'b9727a62cebb'
branch_labels = None
depends_on = None


def upgrade():
    # NOT NULL from the start, with a default, so that SQLite needs no table copy.
    with op.batch_alter_table('assessment', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('not_assessed_count', sa.Integer(), nullable=False, server_default='0')
        )
    assessment = sa.table(
        'assessment', sa.column('id'), sa.column('complete'), sa.column('not_assessed_count')
    )
    item_score = sa.table('item_score', sa.column('assessment_id'), sa.column('score'))
    missing = (
        sa.select(sa.func.count())
        .select_from(item_score)
        .where(item_score.c.assessment_id == assessment.c.id, item_score.c.score.is_(None))
        .scalar_subquery()
    )
    op.execute(
        assessment.update()
        .where(assessment.c.complete == sa.false())
        .values(not_assessed_count=missing)
    )


def downgrade():
    with op.batch_alter_table('assessment', schema=None) as batch_op:
        batch_op.drop_column('not_assessed_count')
