"""Database plumbing shared by every model: the UTC datetime type and SQLite connection settings."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from flask import current_app, has_app_context
from sqlalchemy import DateTime, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator


def now_utc() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite hands back naive values; PostgreSQL hands back values in the session's zone.
    Converting once here means no other code ever sees a naive or non-UTC time.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a timezone first")
        value = value.astimezone(UTC)
        # SQLite has no timezone storage; store naive UTC so string comparison sorts correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Connection execution option that marks a transaction as one that will write.
WRITE_OPTION = "clinic_log_write"


def configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Make every SQLite connection safe for clinical data.

    Foreign keys are off per connection by default; WAL lets readers run beside the writer;
    synchronous=FULL keeps committed rows across power loss. Write transactions start with
    BEGIN IMMEDIATE so ``busy_timeout`` applies: a deferred transaction that reads and then
    writes fails at once with "database is locked" when another writer got there first.
    Read-only transactions stay deferred so pages never queue behind each other.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record) -> None:
        # Let SQLAlchemy's "begin" event own transaction start (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def begin_write(session: Session) -> None:
    """Make the session's current transaction a write transaction before anything is read.

    Every service that changes data calls this first, so what it reads to decide is read
    under the write lock. A read-only transaction already open (the logged-in user was
    loaded, say) is ended first; it holds nothing worth keeping.
    """
    session = session() if callable(session) else session  # accept the scoped_session proxy
    if session.get_bind().dialect.name != "sqlite":
        return
    if session.in_transaction():
        if session.connection().get_execution_options().get(WRITE_OPTION):
            return
        session.commit()
    session.connection(execution_options={WRITE_OPTION: True})


@event.listens_for(Session, "before_flush")
def _guard_unmarked_writes(session, _context, _instances) -> None:
    """In tests, fail loudly when code writes without ``begin_write`` (the lock-upgrade trap)."""
    if not (has_app_context() and current_app.testing):
        return
    if session.get_bind().dialect.name != "sqlite":
        return
    if not session.connection().get_execution_options().get(WRITE_OPTION):
        raise RuntimeError("write without begin_write(): call it at the start of the service")


def render_migration_type(type_, obj, autogen_context):
    """Write UTCDateTime into migrations as a plain timezone-aware DateTime.

    Migrations must not import application code that may change after they are written.
    """
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False
