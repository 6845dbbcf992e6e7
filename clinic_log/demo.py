"""Synthetic demo data: a demo site, one user per role and patients with two weeks of entries.

Everything is made up and goes through the same services as real entries, so the demo also
exercises scoring and the audit trail. No real patient data is ever used.
"""

from __future__ import annotations

import os
import random
import secrets
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from .assessments.services import Answers, amend_assessment, record_assessment, void_assessment
from .auth.services import create_site, create_user
from .database import now_utc
from .extensions import db
from .models import Assessment, AssessmentStatus, Patient, Role, User, waiting_for_review
from .patients.services import create_patient
from .review.services import sign_versions
from .scale_registry import scales
from .scales import Scale

DEMO_SITE = "DEMO"
DEMO_LOGINS_FILE = "demo_logins.txt"
DEMO_DAYS = 14
# (identifier, label, substance, peak severity 0..1, days to settle, hours since the last
# entry): kratom withdrawal in particular varies a great deal from person to person, so the
# courses differ on purpose; one patient has gone unassessed long enough to show as overdue.
DEMO_PATIENTS = [
    ("DEMO-001", "Synthetic A", "opioid", 0.75, 6, 0),
    ("DEMO-002", "Synthetic B", "kratom", 0.45, 4, 0),
    ("DEMO-003", "Synthetic C", "opioid_and_kratom", 0.9, 13, 0),
    ("DEMO-004", "Synthetic D", "kratom", 0.25, 3, 11),
]
# Hours between entries on each scale.
DEMO_CADENCE = {"cows": 6, "symptom_nrs": 12, "sows": 24, "gad7": 168}
DEMO_REVIEWED_DAYS = 9


def _password() -> str:
    return "demo-" + secrets.token_urlsafe(12)


def load_demo(seed: int = 20261125) -> list[tuple[str, str, str]]:
    """Create the demo site, users and patients; return (username, role, password) triples."""
    site = create_site(DEMO_SITE, "Demo Clinic (synthetic data)", current_app.config["TIMEZONE"])
    logins = []
    users: dict[str, User] = {}
    for role in (Role.CLINICIAN, Role.SUPERVISOR, Role.ADMIN):
        username, password = f"demo-{role.value}", _password()
        users[role] = create_user(
            username,
            password,
            role.value,
            [] if role == Role.ADMIN else [site.code],
            display_name=f"Demo {role.value.title()}",
        )
        logins.append((username, role.value, password))

    rng = random.Random(seed)  # noqa: S311 - synthetic demo values, not secrets
    now = now_utc().replace(second=0, microsecond=0)
    start = now - timedelta(days=DEMO_DAYS)
    recorders = [users[Role.CLINICIAN], users[Role.SUPERVISOR]]
    supervisor_password = logins[1][2]
    for identifier, label, substance, peak, settle_days, quiet_hours in DEMO_PATIENTS:
        patient = create_patient(
            users[Role.CLINICIAN],
            site,
            identifier,
            label,
            start,
            substance,
            "Synthetic demo patient.",
        )
        planned = sorted(_planned_entries(start, now - timedelta(hours=quiet_hours), rng))
        reviewed_until = start + timedelta(days=DEMO_REVIEWED_DAYS)
        signed = False
        for at, scale_key in planned:
            if not signed and at > reviewed_until:
                # The supervisor has reviewed the first days of the trend.
                _sign_so_far(users[Role.SUPERVISOR], patient, supervisor_password)
                signed = True
            scale = scales()[scale_key]
            days_in = (at - start).total_seconds() / 86400
            scores = _scores(scale, _course(peak, settle_days, days_in, rng), rng)
            reasons = {}
            # Now and then a patient is asleep at a night-time check.
            if scale_key == "cows" and at.hour in (2, 3) and rng.random() < 0.3:
                scores["gi_upset"], reasons["gi_upset"] = None, "asleep"
            record_assessment(
                rng.choices(recorders, weights=(85, 15))[0],
                patient,
                scale,
                scores,
                observed_at=at,
                not_assessed_reasons=reasons,
            )
    _corrections(users)
    _write_logins(logins)
    db.session.commit()
    return logins


def _planned_entries(start, until, rng: random.Random):
    for scale_key, every_hours in DEMO_CADENCE.items():
        at = start + timedelta(minutes=rng.randint(60, 180))
        while at < until:
            yield at, scale_key
            at += timedelta(hours=every_hours, minutes=rng.randint(-40, 40))


def _corrections(users: dict[str, User]) -> None:
    """One amendment of a reviewed entry and one void, so the history, the "invalidated by
    amendment" signature and the review queue's "what changed" have something to show."""
    first = db.session.scalars(
        select(Assessment)
        .join(Assessment.patient)
        .where(Patient.identifier == "DEMO-001", Assessment.scale_key == "cows")
        .where(Assessment.reviewed_at.is_not(None))
        .order_by(Assessment.observed_at)
    ).first()
    if first is not None:
        scores = {s.item_key: s.score for s in first.item_scores}
        reasons = {s.item_key: s.not_assessed_reason for s in first.item_scores if s.score is None}
        scores["sweating"] = 3 if scores.get("sweating") != 3 else 2
        amend_assessment(
            first.recorded_by,
            first,
            first.version,
            Answers(scores, first.observed_at, first.notes, reasons, None),
            "Sweating was transcribed from the wrong row of the paper flow sheet; corrected.",
        )
    duplicate = db.session.scalars(
        select(Assessment)
        .join(Assessment.patient)
        .where(Patient.identifier == "DEMO-002", Assessment.scale_key == "sows")
        .where(Assessment.status == AssessmentStatus.ACTIVE)
        .order_by(Assessment.observed_at.desc())
    ).first()
    if duplicate is not None:
        void_assessment(
            duplicate.recorded_by,
            duplicate,
            duplicate.version,
            "duplicate",
            "Entered twice from the same interview.",
        )


def _course(peak: float, settle_days: float, days_in: float, rng: random.Random) -> float:
    """Symptoms rise over the first day or two, peak, then settle; with day-to-day noise."""
    if days_in < 1.5:
        level = peak * (0.4 + 0.6 * days_in / 1.5)
    else:
        level = peak * max(0.08, 1 - (days_in - 1.5) / settle_days)
    return min(1.0, max(0.0, level + rng.gauss(0, 0.06)))


def _scores(scale: Scale, severity: float, rng: random.Random) -> dict[str, int | None]:
    scores: dict[str, int | None] = {}
    for item in scale.items:
        allowed = item.allowed_scores
        position = severity * (len(allowed) - 1) + rng.gauss(0, 0.6)
        scores[item.key] = allowed[min(len(allowed) - 1, max(0, round(position)))]
    return scores


def _write_logins(logins: list[tuple[str, str, str]]) -> None:
    """Keep the generated demo logins readable by the operator only, for `make run` to show."""
    os.makedirs(current_app.instance_path, exist_ok=True)
    path = Path(current_app.instance_path) / DEMO_LOGINS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("Demo logins (synthetic data only):\n")
        for username, role, password in logins:
            fh.write(f"  {role:<11} {username:<16} {password}\n")


def _sign_so_far(supervisor: User, patient: Patient, password: str) -> None:
    """The supervisor signs every entry of the patient waiting so far, except their own."""
    waiting = db.session.execute(
        select(Assessment.id, Assessment.version).where(
            Assessment.patient_id == patient.id,
            *waiting_for_review(),
            Assessment.recorded_by_id != supervisor.id,
        )
    ).all()
    sign_versions(supervisor, [tuple(row) for row in waiting], password, purpose="trend_sign")
