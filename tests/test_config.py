"""Settings are read from CLINIC_LOG_* variables and checked before the app starts."""

import os
import stat

import pytest

from clinic_log import ConfigError, create_app
from clinic_log.extensions import db


def build(tmp_path, **overrides):
    return create_app({"INSTANCE_PATH": str(tmp_path / "instance"), **overrides})


def test_settings_come_from_prefixed_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINIC_LOG_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("CLINIC_LOG_DATABASE_URL", f"sqlite:///{tmp_path}/env.sqlite3")
    app = build(tmp_path)
    assert app.config["TIMEZONE"] == "Europe/Berlin"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/env.sqlite3"


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("CLINIC_LOG_DATABASE_URL", raising=False)
    app = build(tmp_path)
    expected = os.path.join(tmp_path, "instance", "clinic_log.sqlite3")
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{expected}"


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "not a zone", ""])
def test_bad_timezone_stops_start_up(tmp_path, tz):
    with pytest.raises(ConfigError, match="CLINIC_LOG_TIMEZONE"):
        build(tmp_path, TIMEZONE=tz)


@pytest.mark.parametrize(
    "url, message",
    [
        ("not a url", "not a database URL"),
        ("mysql://root@localhost/x", "supports sqlite, postgresql"),
        ("postgresql+asyncpg://u@h/db", "postgresql\\+psycopg"),
    ],
)
def test_bad_database_url_stops_start_up(tmp_path, url, message):
    with pytest.raises(ConfigError, match=message):
        build(tmp_path, DATABASE_URL=url)


def test_short_secret_key_stops_start_up(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        build(tmp_path, SECRET_KEY="dev")


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    first = build(tmp_path, DATABASE_URL="sqlite://")
    second = build(tmp_path, DATABASE_URL="sqlite://")
    key_file = tmp_path / "instance" / "secret_key"
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == key_file.read_text()
    assert len(first.config["SECRET_KEY"]) >= 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "raw, hosts",
    [
        ("clinic.example.org", ["clinic.example.org"]),
        (" Clinic.Example.org , .ward.example ", ["clinic.example.org", ".ward.example"]),
        ('["a.example", "b.example"]', ["a.example", "b.example"]),
        ("*", None),
    ],
)
def test_trusted_hosts_come_from_a_list_or_a_comma_separated_string(
    tmp_path, monkeypatch, raw, hosts
):
    monkeypatch.setenv("CLINIC_LOG_TRUSTED_HOSTS", raw)
    assert build(tmp_path).config["TRUSTED_HOSTS"] == hosts


def test_no_trusted_host_at_all_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINIC_LOG_TRUSTED_HOSTS", " , ")
    with pytest.raises(ConfigError, match="CLINIC_LOG_TRUSTED_HOSTS"):
        build(tmp_path)


@pytest.mark.parametrize(
    "name, value",
    [
        ("VIEW_AUDIT_WINDOW_MINUTES", -1),
        ("VIEW_AUDIT_WINDOW_MINUTES", 721),
        ("VIEW_AUDIT_WINDOW_MINUTES", "soon"),
        ("VIEW_AUDIT_WINDOW_MINUTES", True),
        ("IDLE_TIMEOUT_MINUTES", 0),
        ("IDLE_TIMEOUT_MINUTES", "15m"),
        ("IDLE_TIMEOUT_MINUTES", 721),
        ("SESSION_LIFETIME_HOURS", 0),
        ("SESSION_LIFETIME_HOURS", 25),
        ("LOGIN_ATTEMPTS_PER_MINUTE", 0),
        ("OVERDUE_AFTER_HOURS", 0),
    ],
)
def test_a_number_setting_out_of_its_range_stops_start_up(tmp_path, name, value):
    with pytest.raises(ConfigError, match=f"CLINIC_LOG_{name}"):
        build(tmp_path, **{name: value})


def test_a_fractional_idle_timeout_is_kept_as_given(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINIC_LOG_IDLE_TIMEOUT_MINUTES", "0.5")
    assert build(tmp_path).config["IDLE_TIMEOUT_MINUTES"] == 0.5


def test_missing_scales_dir_stops_start_up(tmp_path):
    with pytest.raises(ConfigError, match="CLINIC_LOG_SCALES_DIR"):
        build(tmp_path, DATABASE_URL="sqlite://", SCALES_DIR=str(tmp_path / "nope"))


def test_broken_scale_file_stops_start_up_naming_file_and_field(tmp_path):
    extra = tmp_path / "scales"
    extra.mkdir()
    (extra / "broken.toml").write_text('key = "broken"\nname = "Broken"\n')
    with pytest.raises(ConfigError, match=r"broken\.toml: short_name: required field is missing"):
        build(tmp_path, DATABASE_URL="sqlite://", SCALES_DIR=str(extra))


def test_an_extra_scale_file_adds_an_instrument_without_code(tmp_path):
    from clinic_log.scales import BUILTIN_DIR

    extra = tmp_path / "scales"
    extra.mkdir()
    text = (BUILTIN_DIR / "oows.toml").read_text()
    text = text.replace('key = "oows"', 'key = "oows_local"').replace(
        "display_order = 30", "display_order = 99"
    )
    (extra / "oows_local.toml").write_text(text)
    app = build(tmp_path, DATABASE_URL="sqlite://", SCALES_DIR=str(extra))
    from clinic_log.scale_registry import scales

    with app.app_context():
        assert list(scales())[-1] == "oows_local"


def test_sqlite_connections_are_configured_for_safety(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite pragmas only")
        with db.engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("foreign_keys", "journal_mode", "busy_timeout", "synchronous")
            }
    assert pragma == {
        "foreign_keys": 1,
        "journal_mode": "wal",
        "busy_timeout": 5000,
        "synchronous": 2,
    }


def test_sqlite_writes_begin_immediate_and_reads_stay_deferred(app_ctx):
    from sqlalchemy import event, select

    from clinic_log.auth.services import create_site
    from clinic_log.models import Site

    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    statements = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    create_site("EAST", "East Clinic", "UTC")
    assert statements[0] == "BEGIN IMMEDIATE"
    statements.clear()
    db.session.scalars(select(Site)).all()
    assert statements[0] == "BEGIN"
