"""The per-address login rate limit, kept in the database so that it holds across workers.

Each attempt is counted and recorded before its password or code is checked, in one short
transaction that holds the address's lock (PostgreSQL: an advisory lock per address; SQLite:
the write lock). So attempts sent in parallel, to one worker or to many, are admitted one at
a time, and never more than ``limit`` within any ``window`` seconds (as the servers' clocks
tell it).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, text

from ..database import begin_write, now_utc
from ..extensions import db
from ..models import LoginAttempt

# Any constant works: it keeps these advisory locks apart from the audit chain's.
_PG_LOCK_NAMESPACE = 7_346_002
# Deleted at each attempt: enough to keep up with any rate of attempts, small enough to be quick.
_PRUNE_BATCH = 100


class LoginRateLimiter:
    """At most ``limit`` login attempts within ``window`` seconds from one address, across
    all workers."""

    def __init__(self, limit: int, window: float = 60.0):
        self.limit = limit
        self.window = window

    def allow(self, address: str) -> bool:
        """Record an attempt from ``address`` and return True, or return False (recording
        nothing) when the address has used up its attempts. Commits."""
        begin_write(db.session)
        if db.session.get_bind().dialect.name == "postgresql":
            db.session.execute(
                text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:address))"),
                {"namespace": _PG_LOCK_NAMESPACE, "address": address},
            )
        now = now_utc()
        since = now - timedelta(seconds=self.window)
        recent = db.session.scalar(
            select(func.count(LoginAttempt.id)).where(
                LoginAttempt.address == address, LoginAttempt.at > since
            )
        )
        allowed = recent < self.limit
        if allowed:
            db.session.add(LoginAttempt(address=address, at=now))
            self._prune(now - timedelta(seconds=2 * self.window))
        db.session.commit()
        return allowed

    @staticmethod
    def _prune(before) -> None:
        """Delete a batch of attempts no window can count any more (twice the window old, so a
        transaction with a slightly earlier clock still counts what it should). Rows another
        transaction is deleting are skipped, not waited for."""
        old = (
            select(LoginAttempt.id)
            .where(LoginAttempt.at < before)
            .limit(_PRUNE_BATCH)
            .with_for_update(skip_locked=True)
        )
        db.session.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(old)))
