"""Database plumbing shared by every model: the UTC datetime type and SQLite connection settings."""

from __future__ import annotations

import functools
import logging
import random
import sqlite3
import time
from contextvars import ContextVar
from datetime import UTC, datetime

from flask import current_app, has_app_context
from sqlalchemy import DateTime, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
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


# PostgreSQL aborts a transaction with these when it conflicts with another one; running the
# whole unit of work again is the documented remedy (serialization_failure, deadlock_detected).
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
_in_retried_unit: ContextVar[bool] = ContextVar("clinic_log_in_retried_unit", default=False)
_retry_log = logging.getLogger("clinic_log.database")


def is_retryable_conflict(error: BaseException) -> bool:
    """True for a PostgreSQL serialization failure (40001) or deadlock (40P01)."""
    return getattr(getattr(error, "orig", None), "sqlstate", None) in RETRYABLE_SQLSTATES


def retry_on_conflict(func=None, *, retries: int = 3, base_delay: float = 0.02):
    """Run a unit of work again, at most ``retries`` times, when PostgreSQL aborts it with
    40001 or 40P01; after that the error propagates (the web layer answers 503, input kept).

    Use it around a whole service call that begins, writes and commits, e.g.
    ``@retry_on_conflict`` on ``record_assessment``: the session is rolled back before each new
    attempt, so the function must start from its arguments and do nothing outside the database
    it cannot repeat. Inside another retried unit it runs once: the outer one retries the whole.
    SQLite never raises these (it waits ``busy_timeout`` instead), so there it costs nothing.
    """
    if func is None:
        return functools.partial(retry_on_conflict, retries=retries, base_delay=base_delay)

    @functools.wraps(func)
    def run(*args, **kwargs):
        if _in_retried_unit.get():
            return func(*args, **kwargs)
        token = _in_retried_unit.set(True)
        try:
            for attempt in range(retries + 1):
                try:
                    return func(*args, **kwargs)
                except DBAPIError as error:
                    if attempt == retries or not is_retryable_conflict(error):
                        raise
                    if has_app_context():
                        from .extensions import db

                        db.session.rollback()
                    _retry_log.info(
                        "%s: PostgreSQL %s, attempt %d of %d, retrying",
                        func.__qualname__,
                        error.orig.sqlstate,
                        attempt + 1,
                        retries + 1,
                    )
                    # Jitter, so two transactions that collided do not collide again in step.
                    time.sleep(base_delay * 2**attempt * random.uniform(0.5, 1.5))  # noqa: S311
        finally:
            _in_retried_unit.reset(token)

    return run


def render_migration_type(type_, obj, autogen_context):
    """Write UTCDateTime into migrations as a plain timezone-aware DateTime.

    Migrations must not import application code that may change after they are written.
    """
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False
