"""The patient at a glance: where each scale stands (the summary at the top of the patient
page) and the flowsheet of one scale (items down the side, entries across in time).

Active entries only: amended and voided versions stay in the timeline and the entry's history.
Both read a bounded number of rows however long the patient's record is: the summary the last
``SUMMARY_POINTS`` active entries of each installed scale, in one statement of one short range
of ``ix_assessment_patient_scale_observed`` per scale; the flowsheet one page of entries and
their item scores. Descriptive only: it shows what was recorded and suggests nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup
from sqlalchemy import bindparam, func, select, union_all

from ..dashboard.services import spark_svg
from ..dashboard.summary import SPARK_POINTS
from ..extensions import db
from ..models import Assessment, AssessmentStatus, ItemScore, Patient
from ..paging import PageNumbers
from ..scales import Item, Scale, Severity

SUMMARY_POINTS = SPARK_POINTS  # the same length of trend as the dashboard's
FLOWSHEET_PAGE = 12  # entries across one page: about two days of four-hourly COWS

_ACTIVE = AssessmentStatus.ACTIVE.value


@dataclass(frozen=True)
class ScaleGlance:
    """Where one scale stands for a patient: its latest active entry, the change since the
    one before, how long ago it was observed, and the trend of its last few totals."""

    scale: Scale
    latest_id: int
    total: int
    complete: bool
    severity: Severity
    observed_at: datetime
    age: str
    spark: Markup
    # The latest total minus the one before it (None for a first entry), and whether either
    # is incomplete (a lower bound, so the change is only as exact as the totals recorded).
    change: int | None = None
    change_incomplete: bool = False

    @property
    def band_class(self) -> str:
        """The CSS class of the severity label, as the dashboard names them."""
        shown = self.severity.ranked_band
        if shown is None:
            return "band-none" if self.complete else "band-incomplete"
        slug = "band-" + shown.label.lower().replace(" ", "-")
        return f"band-floor {slug}" if self.severity.floor else slug


def ago(elapsed: timedelta) -> str:
    """How long ago, as a ward reads it: minutes within the hour, hours (to a tenth) within
    two days, then days."""
    hours = max(elapsed.total_seconds(), 0.0) / 3600
    if hours < 1:
        return f"{int(hours * 60)} min ago"
    if hours < 48:
        return f"{hours:.1f} h ago"
    return f"{round(hours / 24)} d ago"


@functools.lru_cache(maxsize=8)
def _summary_statement(scale_keys: tuple[str, ...]):
    """The last ``SUMMARY_POINTS`` active entries of each scale, newest first: one probe of
    the patient-and-scale index per installed scale, in one statement. Built once per set of
    installed scales."""
    entries = Assessment.__table__
    probes = []
    for key in scale_keys:
        probe = (
            select(
                entries.c.scale_key,
                entries.c.id,
                entries.c.observed_at,
                entries.c.total,
                entries.c.complete,
                entries.c.not_assessed_count,
            )
            .where(
                entries.c.patient_id == bindparam("patient_id"),
                entries.c.scale_key == key,
                entries.c.status == _ACTIVE,
            )
            .order_by(entries.c.observed_at.desc(), entries.c.id.desc())
            .limit(SUMMARY_POINTS)
            .subquery()
        )
        probes.append(select(probe))
    return union_all(*probes)


def scale_summaries(
    patient: Patient, installed: Mapping[str, Scale], now: datetime
) -> list[ScaleGlance]:
    """Each installed scale the patient has active entries on, in the scales' order."""
    if not installed:
        return []
    statement = _summary_statement(tuple(installed))
    rows = db.session.connection().execute(statement, {"patient_id": patient.id})
    newest_first: dict[str, list] = {}
    for row in rows:
        newest_first.setdefault(row.scale_key, []).append(row)
    summaries = []
    for key, scale in installed.items():
        entries = newest_first.get(key)
        if entries:
            summaries.append(_glance(scale, entries, now))
    return summaries


def _glance(scale: Scale, newest_first: list, now: datetime) -> ScaleGlance:
    # A row's order within its probe is the database's; sort again rather than trust a union.
    newest_first = sorted(newest_first, key=lambda r: (r.observed_at, r.id), reverse=True)
    latest = newest_first[0]
    change, change_incomplete = None, False
    if len(newest_first) > 1:
        before = newest_first[1]
        change = latest.total - before.total
        change_incomplete = not (latest.complete and before.complete)
    totals = json.dumps([[r.total, bool(r.complete)] for r in reversed(newest_first)])
    return ScaleGlance(
        scale=scale,
        latest_id=latest.id,
        total=latest.total,
        complete=bool(latest.complete),
        severity=scale.severity(latest.total, bool(latest.complete), latest.not_assessed_count),
        observed_at=latest.observed_at,
        age=ago(now - latest.observed_at),
        spark=spark_svg(scale.short_name, scale.total_min, scale.total_max, totals),
        change=change,
        change_incomplete=change_incomplete,
    )


# --------------------------------------------------------------------------- the flowsheet


@dataclass(frozen=True, slots=True)
class FlowsheetColumn:
    """One active entry, a column of the flowsheet (named as ``band()`` in the entry macros
    needs them)."""

    id: int
    observed_at: datetime
    scale_key: str
    total: int
    complete: bool
    band: str | None
    not_assessed_count: int


@dataclass(frozen=True, slots=True)
class FlowsheetCell:
    score: int | None
    not_assessed_reason: str | None
    measured_value: int | None


@dataclass(frozen=True)
class FlowsheetPage(PageNumbers):
    """A page of one scale's active entries, oldest first across the page; page 1 holds the
    newest entries, page 2 the ones before them."""

    scale: Scale
    columns: list[FlowsheetColumn]
    cells: dict[tuple[str, int], FlowsheetCell]
    page: int
    per_page: int
    total: int

    @property
    def first(self) -> int:
        """The position in time (from 1, oldest) of this page's first column."""
        return self.last - len(self.columns) + 1 if self.columns else 0

    @property
    def last(self) -> int:
        return self.total - (self.page - 1) * self.per_page if self.columns else 0

    def rows(self) -> list[tuple[Item, list[FlowsheetCell | None]]]:
        """Each item of the scale with its cell in every column."""
        return [
            (item, [self.cells.get((item.key, column.id)) for column in self.columns])
            for item in self.scale.items
        ]


def _flowsheet_statements():
    entries = Assessment.__table__
    scores = ItemScore.__table__
    of_scale = (
        entries.c.patient_id == bindparam("patient_id"),
        entries.c.scale_key == bindparam("scale_key"),
        entries.c.status == _ACTIVE,
    )
    count = select(func.count()).where(*of_scale)
    page = (
        select(
            entries.c.id,
            entries.c.observed_at,
            entries.c.scale_key,
            entries.c.total,
            entries.c.complete,
            entries.c.band,
            entries.c.not_assessed_count,
        )
        .where(*of_scale)
        .order_by(entries.c.observed_at.desc(), entries.c.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    cells = select(
        scores.c.assessment_id,
        scores.c.item_key,
        scores.c.score,
        scores.c.not_assessed_reason,
        scores.c.measured_value,
    ).where(scores.c.assessment_id.in_(bindparam("ids", expanding=True)))
    return count, page, cells


_FLOWSHEET_COUNT, _FLOWSHEET_PAGE, _FLOWSHEET_CELLS = _flowsheet_statements()


def flowsheet(
    patient: Patient, scale: Scale, page: int, per_page: int = FLOWSHEET_PAGE
) -> FlowsheetPage:
    """One page of the patient's active entries on ``scale`` with their item scores, in at
    most three statements. A page past the end is empty (its pager still counts the pages)."""
    connection = db.session.connection()
    keys = {"patient_id": patient.id, "scale_key": scale.key}
    total = connection.execute(_FLOWSHEET_COUNT, keys).scalar_one()
    columns: list[FlowsheetColumn] = []
    cells: dict[tuple[str, int], FlowsheetCell] = {}
    offset = (page - 1) * per_page
    if total > offset:
        rows = connection.execute(_FLOWSHEET_PAGE, keys | {"limit": per_page, "offset": offset})
        columns = [FlowsheetColumn(*row) for row in rows][::-1]
        for row in connection.execute(_FLOWSHEET_CELLS, {"ids": [c.id for c in columns]}):
            cells[(row.item_key, row.assessment_id)] = FlowsheetCell(
                row.score, row.not_assessed_reason, row.measured_value
            )
    return FlowsheetPage(
        scale=scale, columns=columns, cells=cells, page=page, per_page=per_page, total=total
    )
