"""clinic_log: a clinician-facing withdrawal symptom log.

It records and shows symptoms on standard scales; it never gives dosing or treatment advice.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from .config import ConfigError, load_config

__all__ = ["ConfigError", "create_app"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _resource_dir(name: str) -> str:
    """Inside an installed wheel the folder sits in the package; in a checkout, beside it."""
    packaged = _PACKAGE_DIR / name
    return str(packaged if packaged.is_dir() else _PACKAGE_DIR.parent / name)


def create_app(config: dict | None = None) -> Flask:
    """Build the application: settings, extensions, scales, blueprints, error pages, CLI."""
    app = Flask(
        __name__,
        template_folder=_resource_dir("templates"),
        static_folder=_resource_dir("static"),
        instance_path=(config or {}).get("INSTANCE_PATH")
        or os.environ.get("CLINIC_LOG_INSTANCE_PATH")
        or None,
    )
    load_config(app, config)
    from .web import (
        register_blueprints,
        register_cli,
        register_conflict_retries,
        register_error_handlers,
        register_extensions,
        register_request_hooks,
        register_template_helpers,
    )

    register_extensions(app, migrations_dir=_resource_dir("migrations"))
    register_blueprints(app)
    register_conflict_retries(app)
    register_error_handlers(app)
    register_request_hooks(app)
    register_template_helpers(app)
    register_cli(app)
    from .storage import check_schema_at_start_up

    # An unmigrated or outdated database stops start-up (see storage.check_schema_at_start_up).
    check_schema_at_start_up(app, settings_from_environment=config is None)
    return app
