"""Operator commands: sites, users, demo data and the audit check."""

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, Patient, Site, User

PASSWORD = "a long enough passphrase"


def invoke(runner, *args, input=None):
    return runner.invoke(args=list(args), input=input)


def test_sites_create(runner, app):
    result = invoke(
        runner, "sites", "create", "north", "--name", "North Clinic", "--timezone", "Europe/London"
    )
    assert result.exit_code == 0, result.output
    assert "Created site NORTH" in result.output
    with app.app_context():
        site = db.session.scalar(select(Site))
        assert (site.code, site.name, site.timezone) == ("NORTH", "North Clinic", "Europe/London")


@pytest.mark.parametrize(
    "args, message",
    [
        (["BAD CODE", "--name", "x", "--timezone", "UTC"], "site code"),
        (["EAST", "--name", "x", "--timezone", "Moon/Base"], "not an IANA timezone"),
    ],
)
def test_sites_create_refuses_bad_input(runner, args, message):
    result = invoke(runner, "sites", "create", *args)
    assert result.exit_code != 0
    assert message in result.output


def test_sites_create_refuses_a_duplicate_code(runner):
    invoke(runner, "sites", "create", "EAST", "--name", "East", "--timezone", "UTC")
    result = invoke(runner, "sites", "create", "east", "--name", "East 2", "--timezone", "UTC")
    assert result.exit_code != 0 and "already exists" in result.output


def test_users_create_with_piped_password(runner, app):
    invoke(runner, "sites", "create", "NORTH", "--name", "North", "--timezone", "UTC")
    result = invoke(
        runner,
        "users",
        "create",
        "j.smith",
        "--role",
        "clinician",
        "--site",
        "NORTH",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created clinician j.smith (NORTH)" in result.output
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "j.smith"))
        assert [s.code for s in user.sites] == ["NORTH"]
        assert user.password_hash.startswith("scrypt:")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    login = client.post(
        "/login", data={"username": "j.smith", "password": PASSWORD, "csrf_token": token}
    )
    assert login.status_code == 302


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (
            ["a.b", "--role", "clinician", "--site", "NORTH"],
            f"{PASSWORD}\nsomething else entirely\n",
            "do not match",
        ),
        (["a.b", "--role", "clinician", "--site", "NORTH"], "short\nshort\n", "at least 12"),
        (
            ["a.b", "--role", "clinician", "--site", "NOPE"],
            f"{PASSWORD}\n{PASSWORD}\n",
            "No site with code NOPE",
        ),
        (["a.b", "--role", "clinician"], f"{PASSWORD}\n{PASSWORD}\n", "need at least one site"),
        (
            ["A B", "--role", "clinician", "--site", "NORTH"],
            f"{PASSWORD}\n{PASSWORD}\n",
            "username",
        ),
        (["a.b", "--role", "clinician", "--site", "NORTH"], f"{PASSWORD}\n", "twice"),
    ],
)
def test_users_create_refuses_bad_input(runner, app, args, stdin, message):
    invoke(runner, "sites", "create", "NORTH", "--name", "North", "--timezone", "UTC")
    result = invoke(runner, "users", "create", *args, input=stdin)
    assert result.exit_code != 0
    assert message in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count(User.id))) == 0


def test_users_create_refuses_unknown_role(runner):
    result = invoke(runner, "users", "create", "a.b", "--role", "superuser", input="x\nx\n")
    assert result.exit_code != 0 and "superuser" in result.output


def test_users_create_refuses_a_taken_username(runner):
    invoke(runner, "users", "create", "ops", "--role", "admin", input=f"{PASSWORD}\n{PASSWORD}\n")
    result = invoke(
        runner, "users", "create", "OPS", "--role", "admin", input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code != 0 and "taken" in result.output


def test_admin_needs_no_site(runner):
    result = invoke(
        runner, "users", "create", "ops", "--role", "admin", input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0 and "(no sites)" in result.output


def test_demo_loads_synthetic_data_and_prints_logins(runner, app):
    result = invoke(runner, "demo")
    assert result.exit_code == 0, result.output
    for username in ("demo-clinician", "demo-supervisor", "demo-admin"):
        assert username in result.output
    with app.app_context():
        identifiers = db.session.scalars(select(Patient.identifier)).all()
        assert identifiers and all(i.startswith("DEMO-") for i in identifiers)
        scales_used = set(db.session.scalars(select(Assessment.scale_key).distinct()))
        assert {"cows", "symptom_nrs", "sows", "gad7"} <= scales_used
        assert db.session.scalar(select(func.count(Assessment.id))) > 100
        span = db.session.execute(
            select(func.min(Assessment.observed_at), func.max(Assessment.observed_at))
        ).one()
        assert (span[1] - span[0]).days >= 12
        assert (
            db.session.scalar(
                select(func.count(Assessment.id)).where(Assessment.complete.is_(False))
            )
            >= 1
        )
    saved = Path(app.instance_path) / "demo_logins.txt"
    assert "demo-clinician" in saved.read_text()


def test_demo_if_empty_leaves_an_existing_database_alone(runner, app):
    invoke(runner, "demo")
    again = invoke(runner, "demo", "--if-empty")
    assert again.exit_code == 0
    assert "not loaded" in again.output and "demo-clinician" in again.output
    with app.app_context():
        assert db.session.scalar(select(func.count(Site.id))) == 1


def test_demo_logins_work(runner, app):
    output = invoke(runner, "demo").output
    password = next(line.split()[-1] for line in output.splitlines() if "demo-clinician" in line)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(
        "/login", data={"username": "demo-clinician", "password": password, "csrf_token": token}
    )
    assert response.status_code == 302
    assert b"DEMO-001" in client.get("/patients/").data


def test_audit_verify_passes_on_an_intact_chain(runner, world):
    result = invoke(runner, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "intact" in result.output


def _tamper(app, sql):
    """Change the audit table the way only a database owner could: around the triggers."""
    with app.app_context():
        with db.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.execute(text("DROP TRIGGER audit_event_no_update"))
                conn.execute(text("DROP TRIGGER audit_event_no_delete"))
            else:
                conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            conn.execute(text(sql))
            if conn.dialect.name == "postgresql":
                conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))


@pytest.mark.parametrize(
    "sql", ["UPDATE audit_event SET reason = 'x'", "DELETE FROM audit_event WHERE id = 1"]
)
def test_the_database_refuses_to_change_audit_events(app, world, sql):
    from sqlalchemy.exc import DBAPIError

    with app.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text(sql))
        assert db.session.scalar(select(func.count(AuditEvent.id))) > 0


def test_audit_verify_catches_an_altered_event(runner, app, world):
    with app.app_context():
        target = db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).all()[3]
    _tamper(app, f"UPDATE audit_event SET reason = 'changed later' WHERE id = {target}")
    result = invoke(runner, "audit", "verify")
    assert result.exit_code == 1
    assert f"event {target}" in result.output and "altered" in result.output


def test_audit_verify_catches_a_removed_event(runner, app, world):
    with app.app_context():
        target = db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).all()[2]
    _tamper(app, f"DELETE FROM audit_event WHERE id = {target}")
    result = invoke(runner, "audit", "verify")
    assert result.exit_code == 1
    assert f"event {target + 1}" in result.output and "removed or inserted" in result.output
