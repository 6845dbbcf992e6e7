"""Read access to patient data is audited (HIPAA §164.312(b)): who saw which patient, when.

A patient page shows several charts, and the browser asks again for each of them on every
visit, so one line per request would bury the trail in repeats and put a write on every
image. A view is therefore written once per user, login, patient and thing seen within a
window (``CLINIC_LOG_VIEW_AUDIT_WINDOW_MINUTES``, default 15; 0 writes every request): the
trail still answers who saw which patient and when, and the first view of a login is never
skipped.

The line is written after the page or chart is ready and before it is sent: if the audit
write fails the user gets the storage error, never unaudited data.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from flask import Flask, current_app, request, session

from .. import audit
from ..database import begin_write
from ..extensions import db
from ..models import Patient, User
from .sessions import AUTH_AT

_EXTENSION = "clinic_log.recent_views"


class RecentViews:
    """Views this process wrote lately, forgotten after the window or beyond ``capacity``.

    Held per process: with several workers a view may be written once per worker in a
    window, never less than once.
    """

    def __init__(self, window_seconds: float, capacity: int = 50_000):
        self.window = window_seconds
        self.capacity = capacity
        self._written: OrderedDict[tuple, float] = OrderedDict()
        self._lock = threading.Lock()

    def due(self, key: tuple, now: float) -> bool:
        if self.window <= 0:
            return True
        with self._lock:
            at = self._written.get(key)
        return at is None or now - at >= self.window

    def written(self, key: tuple, now: float) -> None:
        if self.window <= 0:
            return
        with self._lock:
            self._written[key] = now
            self._written.move_to_end(key)
            while len(self._written) > self.capacity:
                self._written.popitem(last=False)


def init_app(app: Flask) -> None:
    app.extensions[_EXTENSION] = RecentViews(float(app.config["VIEW_AUDIT_WINDOW_MINUTES"]) * 60)


def record_view(action: str, user: User, patient: Patient, what: str, **details) -> None:
    """Write ``action`` (``view_patient``, ``view_chart``, ``view_assessment``) for ``patient``
    in its own transaction, unless this login already has it within the window."""
    # Read everything before the transaction ends: committing expires the loaded objects.
    user_id, username = user.id, user.username
    patient_id, site_id = patient.id, patient.site_id
    if site_id not in user.member_site_ids:
        details["via"] = "emergency_access"  # seen through a break-glass grant
    key = (user_id, session.get(AUTH_AT), action, patient_id, what)
    views: RecentViews = current_app.extensions[_EXTENSION]
    now = time.monotonic()
    if not views.due(key, now):
        return
    # Its own transaction: a refused form's page (422, 409) is written after the service
    # gave up, and nothing the view left unsaved may be committed along with the line.
    db.session.rollback()
    begin_write(db.session)
    audit.record(
        action,
        user_id=user_id,
        username=username,
        entity="patient",
        entity_id=patient_id,
        site_id=site_id,
        patient_id=patient_id,
        details={"what": what, "path": request.path, **details},
    )
    db.session.commit()
    views.written(key, now)


def record_emergency_listing(user: User, what: str, shown: list[tuple[int, int]]) -> None:
    """Write ``emergency_access_list`` for the patients of an emergency-grant site that a list
    (the dashboard, the patient list, the review queue) showed: one line per grant, naming the
    list and the patients on it, so the site's supervisors see what was listed as well as what
    was opened. ``shown`` is (patient id, site id) for each row. The same list with the same
    patients is written once per login within the view window, like a view.
    """
    member = user.member_site_ids
    by_site: dict[int, set[int]] = {}
    for patient_id, site_id in shown:
        if site_id not in member:
            by_site.setdefault(site_id, set()).add(patient_id)
    if not by_site:
        return  # the common case: nothing from a grant site, nothing to load or write
    views: RecentViews = current_app.extensions[_EXTENSION]
    now = time.monotonic()
    due = []
    for grant in user.emergency_grants:
        if grant.site_id in by_site:
            patients = sorted(by_site[grant.site_id])
            key = (user.id, session.get(AUTH_AT), "emergency_access_list", grant.id, what)
            if views.due((*key, *patients), now):
                due.append(((*key, *patients), grant.id, grant.site_id, patients))
    if not due:
        return
    user_id, username, path = user.id, user.username, request.full_path.rstrip("?")
    begin_write(db.session)
    for _key, grant_id, site_id, patients in due:
        audit.record(
            "emergency_access_list",
            user_id=user_id,
            username=username,
            entity="site_access_grant",
            entity_id=grant_id,
            site_id=site_id,
            details={"via": "emergency_access", "list": what, "path": path, "patients": patients},
        )
    db.session.commit()
    for key, *_ in due:
        views.written(key, now)
