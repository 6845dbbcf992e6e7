"""``flask`` commands for operators. They call the same services as the web pages."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from . import audit, storage
from .auth.services import AccountError, create_site, create_user
from .demo import DEMO_LOGINS_FILE, load_demo
from .exports import services as exports
from .exports.csvwriter import csv_chunks
from .extensions import db
from .models import Role, User

sites_cli = AppGroup("sites", help="Manage sites (clinics).")
users_cli = AppGroup("users", help="Manage user accounts.")
audit_cli = AppGroup("audit", help="Check the audit trail.")


@sites_cli.command("create")
@click.argument("code")
@click.option("--name", required=True, help="The clinic's name as users see it.")
@click.option("--timezone", "timezone", required=True, help="IANA name, e.g. Europe/London.")
def sites_create(code: str, name: str, timezone: str) -> None:
    """Create a site."""
    try:
        site = create_site(code, name, timezone)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created site {site.code} ({site.name}, {site.timezone}).")


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--site", "site_codes", multiple=True, help="Site code; repeat for several sites.")
@click.option("--display-name", default=None, help="The name shown on records and signatures.")
def users_create(
    username: str, role: str, site_codes: tuple[str, ...], display_name: str | None
) -> None:
    """Create a user account; the password is asked twice, or read as two lines from stdin."""
    password = _read_new_password()
    try:
        user = create_user(username, password, role, list(site_codes), display_name=display_name)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    sites = ", ".join(site.code for site in user.sites) or "no sites"
    click.echo(f"Created {user.role} {user.username} ({sites}).")


def _read_new_password() -> str:
    """Prompt on a terminal; otherwise read the password and its repetition from stdin.

    getpass would read from the controlling terminal even when a password is piped in, so a
    piped password is read from stdin directly.
    """
    if sys.stdin is not None and sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")
    lines = sys.stdin.read().splitlines()
    if len(lines) < 2:
        raise click.ClickException("Pipe the password twice, one per line, on standard input.")
    if lines[0] != lines[1]:
        raise click.ClickException("The two passwords do not match.")
    return lines[0]


@audit_cli.command("verify")
@click.option(
    "--expect-head",
    default=None,
    help="The last event hash printed by an earlier run: also catches events cut off the end.",
)
def audit_verify(expect_head: str | None) -> None:
    """Walk the audit chain; exit non-zero at the first altered, removed or inserted event."""
    checked, problem = audit.verify_chain()
    if problem is not None:
        click.echo(
            f"Audit chain BROKEN at event {problem.event_id}: {problem.message}. "
            f"{checked} events before it are intact.",
            err=True,
        )
        sys.exit(1)
    head = audit.head()
    if expect_head and (head is None or not audit.chain_contains(expect_head)):
        click.echo(
            f"Audit chain BROKEN: the event with hash {expect_head} recorded earlier is gone.",
            err=True,
        )
        sys.exit(1)
    click.echo(f"Audit chain intact: {checked} events verified.")
    if head is not None:
        # Nothing inside the table can prove its own tail was not cut off; keep this outside.
        click.echo(f"Head: event {head[0]}, hash {head[1]} (keep it to check with --expect-head)")


@click.command("demo")
@with_appcontext
@click.option("--if-empty", is_flag=True, help="Do nothing when any account already exists.")
def demo_command(if_empty: bool) -> None:
    """Load a demo site, one user per role and synthetic patients; print the logins."""
    if if_empty and db.session.scalar(select(User.id).limit(1)) is not None:
        click.echo("Database already has accounts; demo data not loaded.")
        saved = Path(current_app.instance_path) / DEMO_LOGINS_FILE
        if saved.exists():
            click.echo(saved.read_text().rstrip())
        return
    try:
        logins = load_demo()
    except AccountError as exc:
        raise click.ClickException(f"Demo data not loaded: {exc}") from exc
    click.echo("Demo data loaded (synthetic patients only). Demo logins:")
    for username, role, password in logins:
        click.echo(f"  {role:<11} {username:<16} {password}")


def register_commands(app: Flask) -> None:
    for command in (sites_cli, users_cli, audit_cli, demo_command, export_command, backup_command):
        app.cli.add_command(command)


@click.command("export")
@click.option(
    "--user", "username", required=True, help="Export as this user: their sites, audited."
)
@click.option("--site", default="", help="Site code (default: all the user's sites).")
@click.option("--patient", default="", help="Patient number (as in /patients/<number>).")
@click.option(
    "--patient-identifier",
    default="",
    help="Patient identifier, e.g. N-001 (with --site if two sites use it).",
)
@click.option("--scale", default="", help="Scale key; required for the wide layout.")
@click.option("--start", default="", help="First day, YYYY-MM-DD (site local).")
@click.option("--end", default="", help="Last day, YYYY-MM-DD, included.")
@click.option("--layout", type=click.Choice(["long", "wide"]), default="long")
@click.option("--profile", type=click.Choice(["identified", "deidentified"]), default="identified")
@click.option("--history", is_flag=True, help="Include amended and voided versions.")
@click.option("--excel", is_flag=True, help="Start with a UTF-8 byte-order mark for Excel.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="-", help="File, or -.")
@with_appcontext
def export_command(username: str, output: str, history: bool, excel: bool, **options) -> None:
    """Write the assessments CSV, exactly as /exports/assessments.csv would."""
    user = db.session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None or not user.active or not user.is_clinical:
        raise click.ClickException(f"No active clinician or supervisor {username!r}.")
    args = {**options, "history": "1" if history else "", "excel": "1" if excel else ""}
    try:
        request = exports.parse_request(args, user)
    except exports.ExportError as exc:
        raise click.ClickException(exc.message) from exc
    export = exports.open_export(request, user)
    chunks = csv_chunks(export.header, export.rows, preamble=export.preamble, bom=excel)
    try:
        if output == "-":
            for chunk in chunks:
                sys.stdout.write(chunk)
        else:
            # newline="": the CSV already has its CRLF line ends.
            with open(output, "w", encoding="utf-8", newline="") as stream:
                stream.writelines(chunks)
    finally:
        export.close()
    if output != "-":
        click.echo(f"Wrote {export.count} rows to {output}.", err=True)


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace PATH if it already exists.")
@with_appcontext
def backup_command(path: Path, force: bool) -> None:
    """Copy the SQLite database to PATH while the app runs, and check the copy."""
    url = db.engine.url
    if url.get_backend_name() != "sqlite":
        click.echo(storage.pg_dump_instructions(url, path), err=True)
        sys.exit(1)
    try:
        report = storage.backup_sqlite(
            url.database or "",
            path,
            force=force,
            busy_timeout_ms=current_app.config["SQLITE_BUSY_TIMEOUT_MS"],
        )
    except storage.BackupError as exc:
        raise click.ClickException(f"No backup made: {exc}") from exc
    click.echo(f"Backup written to {report.path} (integrity_check: {report.integrity}).")
    for table, count in report.counts.items():
        click.echo(f"  {table:<16} {count:>8} rows")
