"""The confusable skeleton of each patient's identifier (what it looks like), so that a new
identifier that looks like another patient's at the same site is found by an index lookup.

Existing rows are filled in here, in Python, with the rule as it is at this revision
(written out, not imported: a migration must not change when application code does).

Revision ID: b9727a62cebb
Revises: b59dbd208871
Create Date: 2026-12-05 11:00:00.000000

"""
import unicodedata

from alembic import op
import icu
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b9727a62cebb'
down_revision = 'b59dbd208871'
branch_labels = None
depends_on = None

BATCH = 1000


def skeleton(value, checker):
    """TR39 skeleton without combining marks and without case (identifiers.py at this revision)."""
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", value).strip())
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Mn", "Me"))
    return checker.getSkeleton(0, checker.getSkeleton(0, text).casefold())


def upgrade():
    # NOT NULL from the start, with a placeholder default, so that SQLite needs no table copy.
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('identifier_skeleton', sa.String(length=400), nullable=False, server_default='')
        )
    bind = op.get_bind()
    checker = icu.SpoofChecker()
    patient = sa.table('patient', sa.column('id'), sa.column('identifier'), sa.column('identifier_skeleton'))
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(patient.c.id, patient.c.identifier)
            .where(patient.c.id > last_id)
            .order_by(patient.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(
            patient.update()
            .where(patient.c.id == sa.bindparam('pid'))
            .values(identifier_skeleton=sa.bindparam('skel')),
            [{'pid': pid, 'skel': skeleton(identifier, checker)} for pid, identifier in rows],
        )
        last_id = rows[-1][0]
    if bind.dialect.name != 'sqlite':
        # The app always computes it; a row inserted without it must fail, not match nothing.
        op.alter_column('patient', 'identifier_skeleton', server_default=None)
    op.create_index(
        'ix_patient_site_identifier_skeleton', 'patient', ['site_id', 'identifier_skeleton'], unique=False
    )


def downgrade():
    op.drop_index('ix_patient_site_identifier_skeleton', table_name='patient')
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_column('identifier_skeleton')
