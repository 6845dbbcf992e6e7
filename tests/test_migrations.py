"""The real migrations build exactly the schema the models describe (the suite itself builds
its tables from the models, for speed)."""

import os

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from clinic_log import create_app
from clinic_log.extensions import db

PG_URL = os.environ.get("CLINIC_LOG_TEST_DATABASE_URL")


def test_migrations_build_the_models_schema(tmp_path, empty_database_url):
    app = create_app(
        {"DATABASE_URL": empty_database_url, "INSTANCE_PATH": str(tmp_path / "instance")}
    )
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, db.metadata)
        assert differences == []
        downgrade(revision="base")
        assert inspect(db.engine).get_table_names() == ["alembic_version"]
        db.engine.dispose()
