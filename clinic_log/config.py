"""Settings: safe defaults, overridden by ``CLINIC_LOG_*`` environment variables, then validated.

Nothing here is read at import time; ``load_config`` runs inside ``create_app``.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SUPPORTED_DATABASES = ("sqlite", "postgresql")


class ConfigError(click.ClickException):
    """A setting is missing or wrong; the app must not start.

    A ClickException, so ``flask ...`` prints the message alone ("Error: ...") and exits 1
    instead of a traceback; under a WSGI server it is an ordinary exception.
    """


def load_config(app: Flask, overrides: dict | None) -> None:
    """Fill ``app.config`` from defaults, the environment and the test overrides, then validate."""
    app.config.from_mapping(
        DATABASE_URL=None,
        SECRET_KEY=None,
        TIMEZONE="UTC",
        SCALES_DIR=None,
        # scrypt with N=2^17 is OWASP's choice; tests lower it to stay fast.
        PASSWORD_HASH_METHOD="scrypt:131072:8:1",  # noqa: S106 - a hash method, not a secret
        SQLITE_BUSY_TIMEOUT_MS=5000,
        MAX_CONTENT_LENGTH=256 * 1024,
        MAX_FORM_MEMORY_SIZE=64 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_DURATION=timedelta(0),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        SQLALCHEMY_ENGINE_OPTIONS={},
        DEMO=False,
        # The dashboard marks a patient overdue when nothing was recorded for this long.
        OVERDUE_AFTER_HOURS=8,
        # Dashboard triage ranks by withdrawal results observed within this many hours; older
        # ones stay on the row, greyed, and rank nothing (a result a day old is not "current").
        TRIAGE_RECENCY_HOURS=24,
        IDLE_TIMEOUT_MINUTES=15,
        SESSION_LIFETIME_HOURS=12,
        LOGIN_ATTEMPTS_PER_MINUTE=10,  # per client address, on top of the per-account lockout
        EXPORTS_PER_MINUTE=20,  # CSV exports one user may start in a minute, all workers together
        # An administrator's one-time password stops working this long after it was issued.
        ONE_TIME_PASSWORD_HOURS=72,
        REQUIRE_MFA=None,  # None: required for admins and supervisors unless DEMO or TESTING
        BEHIND_PROXY=False,  # trust one proxy's X-Forwarded-For/Proto (TLS terminated there)
        # Host names this app answers to; any other Host header is refused (400). A deployment
        # names its own, e.g. CLINIC_LOG_TRUSTED_HOSTS=clinic.example.org.
        TRUSTED_HOSTS=["localhost", "127.0.0.1"],
        # A repeat view of the same thing by the same login within this window is covered by
        # the first audit line (auth/reads.py); 0 writes a line for every request.
        VIEW_AUDIT_WINDOW_MINUTES=15,
        # A form posted as the session ended is held on the server for its user this long and
        # offered back after their next login (auth/held.py); 0 holds nothing.
        HELD_INPUT_MINUTES=30,
    )
    app.config.from_prefixed_env(prefix="CLINIC_LOG")
    if overrides:
        app.config.update(overrides)

    app.config["SQLALCHEMY_DATABASE_URI"] = app.config.get("SQLALCHEMY_DATABASE_URI") or (
        app.config["DATABASE_URL"] or _default_sqlite_url(app)
    )
    app.config["TRUSTED_HOSTS"] = _host_list(app.config["TRUSTED_HOSTS"])
    if app.config["REQUIRE_MFA"] is None:
        app.config["REQUIRE_MFA"] = not (app.config["DEMO"] or app.config.get("TESTING"))
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = instance_secret(app, "secret_key")
    validate_config(app.config)


def validate_config(config) -> None:
    """Stop start-up on a setting that would otherwise fail in the middle of a request."""
    tz = config.get("TIMEZONE")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"CLINIC_LOG_TIMEZONE={tz!r} is not an IANA timezone name (for example 'Europe/London')"
        ) from exc

    raw_url = config["SQLALCHEMY_DATABASE_URI"]
    try:
        url = make_url(str(raw_url))
    except ArgumentError as exc:
        raise ConfigError(
            f"CLINIC_LOG_DATABASE_URL={raw_url!r} is not a database URL "
            "(expected sqlite:///path or postgresql+psycopg://user@host/dbname)"
        ) from exc
    if url.get_backend_name() not in SUPPORTED_DATABASES:
        raise ConfigError(
            f"CLINIC_LOG_DATABASE_URL uses {url.get_backend_name()!r}; "
            f"clinic_log supports {', '.join(SUPPORTED_DATABASES)}"
        )
    if url.get_backend_name() == "postgresql" and url.get_driver_name() not in (
        "psycopg",
        "psycopg2",
    ):
        raise ConfigError("CLINIC_LOG_DATABASE_URL for PostgreSQL must use postgresql+psycopg://")

    if config.get("DEBUG") and not config.get("TESTING"):
        raise ConfigError(
            "CLINIC_LOG_DEBUG is on: the debugger runs code from the browser; never use it here"
        )
    if len(str(config["SECRET_KEY"])) < 32:
        raise ConfigError("CLINIC_LOG_SECRET_KEY must be at least 32 characters of random data")

    # Numbers with a unit: (name, unit, lowest, highest, whether the lowest itself is allowed).
    for name, unit, low, high, low_allowed in (
        ("OVERDUE_AFTER_HOURS", "hours", 0, 24 * 14, False),
        ("TRIAGE_RECENCY_HOURS", "hours", 0, 24 * 14, False),
        ("IDLE_TIMEOUT_MINUTES", "minutes", 0, 12 * 60, False),
        ("SESSION_LIFETIME_HOURS", "hours", 0, 24, False),
        ("VIEW_AUDIT_WINDOW_MINUTES", "minutes", 0, 12 * 60, True),
        ("HELD_INPUT_MINUTES", "minutes", 0, 24 * 60, True),
        ("LOGIN_ATTEMPTS_PER_MINUTE", "attempts", 1, 1_000_000, True),
        ("EXPORTS_PER_MINUTE", "exports", 1, 1_000_000, True),
        ("ONE_TIME_PASSWORD_HOURS", "hours", 0, 24 * 365, False),
    ):
        _check_number(config, name, unit, low, high, low_allowed)

    scales_dir = config.get("SCALES_DIR")
    if scales_dir and not Path(scales_dir).is_dir():
        raise ConfigError(f"CLINIC_LOG_SCALES_DIR={scales_dir!r} is not a directory")


def _check_number(config, name: str, unit: str, low, high, low_allowed: bool) -> None:
    value = config.get(name)
    in_range = (low <= value if low_allowed else low < value) if _is_number(value) else False
    if not (in_range and value <= high):
        lowest = f"from {low}" if low_allowed else f"more than {low}"
        raise ConfigError(
            f"CLINIC_LOG_{name}={value!r} must be a number of {unit}, {lowest} and at most {high}"
        )


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _host_list(value) -> list[str] | None:
    """Host names from a list or a comma-separated string; "*" answers to any host."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(name).strip().lower() for name in names if str(name).strip()]
    if "*" in names:
        return None
    if not names:
        raise ConfigError("CLINIC_LOG_TRUSTED_HOSTS names no host (use '*' to allow any)")
    return names


def _default_sqlite_url(app: Flask) -> str:
    os.makedirs(app.instance_path, exist_ok=True)
    return "sqlite:///" + os.path.join(app.instance_path, "clinic_log.sqlite3")


def instance_secret(app: Flask, name: str) -> str:
    """Read a key generated on first use, or generate it now (owner-readable only)."""
    os.makedirs(app.instance_path, exist_ok=True)
    path = Path(app.instance_path) / name
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    # O_EXCL: two workers starting together must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
