"""Write and verify the audit chain.

Every event is written by the server, with the server's UTC clock, in the same transaction as the
change it records. Each event's hash covers its own fields and the previous event's hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from flask import has_request_context, request
from sqlalchemy import select, text

from .database import now_utc
from .extensions import db
from .models import AuditEvent, User

GENESIS_HASH = "0" * 64
# Any constant works; it names the one lock that orders audit writers on PostgreSQL.
_PG_AUDIT_LOCK_ID = 7_346_001


def canonical_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    payload = canonical_json(
        {
            "prev": prev_hash,
            "at": _iso(event.at),
            "user_id": event.user_id,
            "username": event.username,
            "action": event.action,
            "entity": event.entity,
            "entity_id": event.entity_id,
            "site_id": event.site_id,
            "patient_id": event.patient_id,
            "reason": event.reason,
            "details": event.details,
            "ip": event.ip,
        }
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(
    action: str,
    *,
    user: User | None = None,
    user_id: int | None = None,
    username: str | None = None,
    entity: str | None = None,
    entity_id: int | None = None,
    site_id: int | None = None,
    patient_id: int | None = None,
    reason: str | None = None,
    details: dict | None = None,
) -> AuditEvent:
    """Add an audit event to the current transaction; the caller commits it with its change."""
    if db.engine.dialect.name == "postgresql":
        # Serialise writers so two transactions never chain onto the same previous event.
        db.session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_AUDIT_LOCK_ID})
    db.session.flush()
    prev_hash = (
        db.session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
        or GENESIS_HASH
    )
    event = AuditEvent(
        at=now_utc(),
        user_id=user.id if user is not None else user_id,
        username=user.username if user is not None else username,
        action=action,
        entity=entity,
        entity_id=entity_id,
        site_id=site_id,
        patient_id=patient_id,
        reason=reason,
        details=canonical_json(details or {}),
        ip=request.remote_addr if has_request_context() else None,
        prev_hash=prev_hash,
    )
    event.hash = event_hash(prev_hash, event)
    db.session.add(event)
    return event


@dataclass(frozen=True)
class ChainProblem:
    event_id: int
    message: str


def verify_chain(batch_size: int = 1000) -> tuple[int, ChainProblem | None]:
    """Walk every event in id order; return (events checked, first problem or None)."""
    expected_prev = GENESIS_HASH
    checked = 0
    last_id = 0
    while True:
        batch = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.id > last_id)
            .order_by(AuditEvent.id)
            .limit(batch_size)
        ).all()
        if not batch:
            return checked, None
        for event in batch:
            if event.prev_hash != expected_prev:
                return checked, ChainProblem(
                    event.id,
                    "does not follow the event before it: an event was removed or inserted here",
                )
            if event_hash(event.prev_hash, event) != event.hash:
                return checked, ChainProblem(event.id, "was altered after it was written")
            expected_prev = event.hash
            checked += 1
            last_id = event.id
        db.session.expunge_all()


def head() -> tuple[int, str] | None:
    """The last event's id and hash: an anchor to keep outside the database."""
    row = db.session.execute(
        select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def chain_contains(event_hash: str) -> bool:
    return db.session.scalar(select(AuditEvent.id).where(AuditEvent.hash == event_hash)) is not None
