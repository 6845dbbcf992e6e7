"""A page of the trail as a supervisor reads it: the patient and entry an event is about, by
name, and one line for the chart views of one tracker visit.

Only the page changes: every event is still its own row in the table and in the hash chain,
and each collapsed line lists the events it holds.

Naming follows the site boundary strictly. An identifier, or an entry's scale and time, is
shown only for a patient of one of the viewer's own sites: never one reached through an
emergency grant (whose trail stays with that site's supervisors), never another site's, even
when an event of the viewer's site points at one. Anything else reads as before, by id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, not_, or_, select

from ..extensions import db
from ..models import Assessment, AuditEvent, Patient, Site, User
from ..scale_registry import get_scale
from ..timeutil import format_local

# A tracker asks for all its charts at once; a few minutes covers a slow ward connection and
# a change of date range on the same visit, not a second visit later in the shift.
VISIT_GAP = timedelta(minutes=5)
VISIT_SPAN = timedelta(minutes=15)
CHART_VIEW = "view_chart"


@dataclass(frozen=True)
class EntryName:
    """An entry of one of the viewer's own sites, as the trail names it."""

    identifier: str
    scale: str  # the scale's short name
    observed: str  # observed time, in the entry's site's timezone


@dataclass
class TrailLine:
    """One line of the trail page: one event, or the chart views of one visit (newest first)."""

    events: list[AuditEvent]
    patient: str | None = None  # identifier, when the viewer may read it
    entry: EntryName | None = None
    # What each event says was seen, in the events' order; empty when the patient is unnamed.
    views: list[str | None] = field(default_factory=list)

    @property
    def event(self) -> AuditEvent:
        return self.events[0]

    @property
    def oldest(self) -> AuditEvent:
        return self.events[-1]

    @property
    def is_visit(self) -> bool:
        return len(self.events) > 1

    @property
    def scales(self) -> list[str]:
        """The charts' scales, in the order they were viewed."""
        seen: list[str] = []
        for view in reversed(self.views):
            if view is None:
                continue
            name = view.rsplit(" ", 1)[0] if view.endswith((" trend", " items")) else view
            if name not in seen:
                seen.append(name)
        return seen


def trail_lines(user: User, events: Sequence[AuditEvent]) -> list[TrailLine]:
    """The page's events (newest first) as lines, with what the viewer may read named.

    A bounded number of statements, whatever the page holds: one for the patients, one for
    the entries and one for what lies between chart views.
    """
    own_sites = user.member_site_ids
    patients = _patient_names(own_sites, {_patient_id(event) for event in events})
    entries = _entry_names(
        own_sites, {e.entity_id for e in events if e.entity == "assessment" and e.entity_id}
    )
    lines = []
    for run in _visits(events):
        patient = patients.get(_patient_id(run[0]))
        entry = entries.get(run[0].entity_id) if run[0].entity == "assessment" else None
        views = [_view_label(event) for event in run] if patient else []
        lines.append(TrailLine(run, patient=patient, entry=entry, views=views))
    return lines


def _patient_id(event: AuditEvent) -> int | None:
    if event.patient_id is not None:
        return event.patient_id
    return event.entity_id if event.entity == "patient" else None


def _patient_names(own_sites: set[int], ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted or not own_sites:
        return {}
    return dict(
        db.session.execute(
            select(Patient.id, Patient.identifier).where(
                Patient.id.in_(wanted), Patient.site_id.in_(own_sites)
            )
        ).all()
    )


def _entry_names(own_sites: set[int], ids: set[int]) -> dict[int, EntryName]:
    if not ids or not own_sites:
        return {}
    rows = db.session.execute(
        select(
            Assessment.id,
            Assessment.scale_key,
            Assessment.observed_at,
            Patient.identifier,
            Site.timezone,
        )
        .join(Patient, Patient.id == Assessment.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .where(Assessment.id.in_(ids), Patient.site_id.in_(own_sites))
    )
    return {
        entry_id: EntryName(identifier, _scale_name(key), format_local(observed, timezone))
        for entry_id, key, observed, identifier, timezone in rows
    }


def _scale_name(key: str) -> str:
    scale = get_scale(key)
    return scale.short_name if scale is not None else key


def _view_label(event: AuditEvent) -> str | None:
    """What a view event says was seen ("COWS trend", "tracker"), from its details."""
    try:
        what = json.loads(event.details or "{}").get("what")
    except (ValueError, AttributeError):
        return None
    if not isinstance(what, str) or not what:
        return None
    if event.action != CHART_VIEW:
        return what
    # Chart views read "<scale> trend <range>", "<scale> items <range>", "symptom domains
    # <range>"; the range stays in the details, where it does not crowd a narrow column.
    words = [word for word in what.split() if ".." not in word]
    if len(words) == 2 and words[1] in ("trend", "items"):
        return f"{_scale_name(words[0])} {words[1]}"
    return " ".join(words)


def _visits(events: Sequence[AuditEvent]) -> list[list[AuditEvent]]:
    """Group adjacent chart views of one user, patient and address, each within
    ``VISIT_GAP`` of the next and all within ``VISIT_SPAN``; then split where that user did
    anything else in between, even something this page does not list (a login, a refusal,
    another site's page): a collapsed line never spans a new login or hides another kind of
    event."""
    runs: list[list[AuditEvent]] = []
    for event in events:
        last = runs[-1][-1] if runs else None
        if last is not None and _same_visit(last, event, runs[-1][0]):
            runs[-1].append(event)
        else:
            runs.append([event])
    candidates = [run for run in runs if len(run) > 1]
    if not candidates:
        return runs
    between = set(
        db.session.scalars(
            select(AuditEvent.id).where(
                or_(
                    *(
                        and_(
                            AuditEvent.id < run[0].id,
                            AuditEvent.id > run[-1].id,
                            AuditEvent.user_id == run[0].user_id,
                            not_(
                                and_(
                                    AuditEvent.action == CHART_VIEW,
                                    AuditEvent.patient_id == run[0].patient_id,
                                )
                            ),
                        )
                        for run in candidates
                    )
                )
            )
        )
    )
    if not between:
        return runs
    split: list[list[AuditEvent]] = []
    for run in runs:
        split.append([run[0]])
        for newer, older in zip(run, run[1:], strict=False):
            if any(older.id < other < newer.id for other in between):
                split.append([])
            split[-1].append(older)
    return split


def _same_visit(newer: AuditEvent, older: AuditEvent, newest: AuditEvent) -> bool:
    return (
        newer.action == older.action == CHART_VIEW
        and newer.user_id is not None
        and newer.user_id == older.user_id
        and newer.patient_id is not None
        and newer.patient_id == older.patient_id
        and newer.ip == older.ip
        and newer.at - older.at <= VISIT_GAP
        and newest.at - older.at <= VISIT_SPAN
    )
