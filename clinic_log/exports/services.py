"""CSV exports: what a user may export, the rows, the columns, and the de-identified profile.

Rows are read with plain Core queries from one read snapshot and streamed in batches, so memory
stays flat whatever the size of the export; the count in the provenance lines and the audit
event comes from the same snapshot as the rows.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby
from operator import itemgetter

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from .. import audit
from ..config import instance_secret
from ..database import begin_write, now_utc
from ..extensions import db
from ..models import Assessment, AssessmentStatus, Episode, ItemScore, Patient, Site, User
from ..product import NO_ADVICE_NOTICE
from ..scale_registry import scales
from ..scales import NOT_ASSESSED_REASONS, Scale
from ..timeutil import zone

LAYOUTS = ("wide", "long")
PROFILES = ("identified", "deidentified")
BATCH_ROWS = 2000
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
NA = "NA"  # how a not-assessed score is written: distinct from "" and from 0 (R reads it as NA)


class ExportError(ValueError):
    """A request that cannot be exported; ``status`` is 400 (bad input) or 404 (not yours)."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ExportRequest:
    sites: tuple[Site, ...]
    patient: Patient | None
    scale: Scale | None
    start: date | None
    end: date | None
    tz_name: str  # the zone the start/end dates are read in
    layout: str = "long"
    profile: str = "identified"
    history: bool = False  # include amended and voided versions
    excel: bool = False
    filters: dict = field(default_factory=dict)  # as asked, for the provenance and the audit

    @property
    def start_utc(self) -> datetime | None:
        return _day_start(self.start, self.tz_name) if self.start else None

    @property
    def end_utc(self) -> datetime | None:
        return _day_start(self.end + timedelta(days=1), self.tz_name) if self.end else None


def _day_start(day: date, tz_name: str) -> datetime:
    return datetime.combine(day, time(), zone(tz_name)).astimezone(UTC)


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def _date(raw: str | None, name: str) -> date | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        # The pattern first: fromisoformat alone also reads week dates such as 2026-W01-1.
        parsed = date.fromisoformat(raw) if _ISO_DATE.match(raw) else None
    except ValueError:
        parsed = None
    if parsed is None or not 2000 <= parsed.year <= 2100:
        raise ExportError(400, name, f"The {name} date must look like 2026-03-04.")
    return parsed


def parse_request(args: Mapping[str, str], user: User) -> ExportRequest:
    """Check an export request against the rules and the user's sites.

    :raise ExportError: 400 for an unknown scale or layout, ``wide`` without a scale, a
        malformed date or an end before the start; 404 for a site or patient the user does
        not belong to (or that does not exist).
    """
    site_code = (args.get("site") or "").strip().upper()
    if site_code:
        # A site reached through an emergency grant is exported only when named, never as part
        # of "all my sites", so the export's audit event carries it for its supervisors to see.
        sites = tuple(s for s in user.reachable_sites if s.code == site_code)
        if not sites:
            raise ExportError(404, "site", f"You have no site {site_code}.")
    else:
        sites = tuple(user.sites)
    if not sites:
        raise ExportError(404, "site", "You belong to no site, so there is nothing to export.")

    patient = None
    patient_raw = (args.get("patient") or "").strip()
    if patient_raw:
        if not (patient_raw.isdigit() and len(patient_raw) < 10):
            raise ExportError(404, "patient", "No such patient at your sites.")
        patient = db.session.get(Patient, int(patient_raw))
        if patient is None or patient.site_id not in {s.id for s in sites}:
            raise ExportError(404, "patient", "No such patient at your sites.")

    scale_key = (args.get("scale") or "").strip()
    scale = None
    if scale_key and scale_key != "all":
        scale = scales().get(scale_key)
        if scale is None:
            raise ExportError(400, "scale", f"Unknown scale {scale_key!r}.")
    layout = (args.get("layout") or "long").strip()
    if layout not in LAYOUTS:
        raise ExportError(400, "layout", "The layout must be 'wide' or 'long'.")
    if layout == "wide" and scale is None:
        raise ExportError(400, "scale", "The wide layout needs one scale: its items are columns.")
    profile = (args.get("profile") or "identified").strip()
    if profile not in PROFILES:
        raise ExportError(400, "profile", "The profile must be 'identified' or 'deidentified'.")
    start, end = _date(args.get("start"), "start"), _date(args.get("end"), "end")
    if start and end and end < start:
        raise ExportError(400, "end", "The end date is before the start date.")
    tz_name = sites[0].timezone if len({s.timezone for s in sites}) == 1 else "UTC"
    filters = {
        "site": site_code or "all of yours",
        "patient": patient.identifier if patient else "all",
        "scale": scale.key if scale else "all",
        "start": start.isoformat() if start else "",
        "end": end.isoformat() if end else "",
        "dates_in": tz_name,
        "layout": layout,
        "profile": profile,
        "versions": "all (amended and voided included)" if _flag(args.get("history")) else "active",
    }
    return ExportRequest(
        sites=sites,
        patient=patient,
        scale=scale,
        start=start,
        end=end,
        tz_name=tz_name,
        layout=layout,
        profile=profile,
        history=_flag(args.get("history")),
        excel=_flag(args.get("excel")),
        filters=filters,
    )


# --- columns -------------------------------------------------------------------------------

IDENTIFIED_BASE = [
    "patient_identifier", "site", "episode_id", "episode_started_at_utc", "scale",
    "scale_version", "assessment_id", "observed_at_utc", "observed_at_local", "total", "band",
    "completeness", "status", "status_reason", "replaces_id", "recorded_by",
    "recorded_at_utc", "reviewed_by", "reviewed_at_utc", "notes",
]  # fmt: skip
DEIDENTIFIED_BASE = [
    "patient_pseudonym", "site", "episode_number", "episode_started_at_utc", "scale",
    "scale_version", "assessment_id", "observed_at_utc", "observed_at_local", "total", "band",
    "completeness", "status", "replaces_id", "recorded_at_utc", "reviewed", "reviewed_at_utc",
]  # fmt: skip
LONG_ITEM = ["item_key", "item_respondent", "item_domain", "score", "not_assessed_reason",
             "measured_value"]  # fmt: skip


def header(request: ExportRequest) -> list[str]:
    base = DEIDENTIFIED_BASE if request.profile == "deidentified" else IDENTIFIED_BASE
    if request.layout == "long":
        return base + LONG_ITEM
    items = []
    for item in request.scale.items:
        items.append(item.key)
        if item.measurement is not None:
            items.append(item.measurement.key)
    return base + items + ["not_assessed"]


# --- rows ----------------------------------------------------------------------------------

_recorder = aliased(User)
_reviewer = aliased(User)


def _conditions(request: ExportRequest) -> list:
    conditions = [Patient.site_id.in_([s.id for s in request.sites])]
    if request.patient is not None:
        conditions.append(Assessment.patient_id == request.patient.id)
    if request.scale is not None:
        conditions.append(Assessment.scale_key == request.scale.key)
    if request.start_utc is not None:
        conditions.append(Assessment.observed_at >= request.start_utc)
    if request.end_utc is not None:
        conditions.append(Assessment.observed_at < request.end_utc)
    if not request.history:
        conditions.append(Assessment.status == AssessmentStatus.ACTIVE)
    return conditions


def _rows_statement(request: ExportRequest):
    """One row per item score, in assessment order, with everything a CSV row needs."""
    # The row's episode is the joined Episode; count the patient's episodes that started no
    # later than it (an alias, so the subquery does not correlate to itself).
    earlier = aliased(Episode)
    episode_number = (
        select(func.count(earlier.id))
        .where(earlier.patient_id == Assessment.patient_id)
        .where(earlier.started_at <= Episode.started_at)
        .correlate(Assessment, Episode)
        .scalar_subquery()
    )
    return (
        select(
            Assessment.id, Assessment.patient_id, Patient.identifier, Patient.identifier_key,
            Site.code, Site.timezone, Assessment.episode_id, episode_number.label("episode_number"),
            Episode.started_at,
            Assessment.scale_key, Assessment.scale_version, Assessment.observed_at,
            Assessment.total, Assessment.complete, Assessment.band, Assessment.status,
            Assessment.status_reason, Assessment.replaces_id,
            _recorder.display_name.label("recorded_by_name"),
            Assessment.recorded_at, _reviewer.display_name.label("reviewed_by_name"),
            Assessment.reviewed_at,
            Assessment.notes, ItemScore.item_key, ItemScore.score,
            ItemScore.not_assessed_reason, ItemScore.measured_value,
        )
        .select_from(Assessment)
        .join(Patient, Patient.id == Assessment.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .join(Episode, Episode.id == Assessment.episode_id)
        .join(_recorder, _recorder.id == Assessment.recorded_by_id)
        .outerjoin(_reviewer, _reviewer.id == Assessment.reviewed_by_id)
        .join(ItemScore, ItemScore.assessment_id == Assessment.id)
        .where(*_conditions(request))
        .order_by(Assessment.observed_at, Assessment.id, ItemScore.position)
    )  # fmt: skip


def count_rows(connection, request: ExportRequest) -> int:
    """Rows the file will have: assessments (wide) or item scores (long)."""
    counted = ItemScore.id if request.layout == "long" else func.distinct(Assessment.id)
    stmt = (
        select(func.count(counted))
        .select_from(Assessment)
        .join(Patient, Patient.id == Assessment.patient_id)
        .join(ItemScore, ItemScore.assessment_id == Assessment.id)
        .where(*_conditions(request))
    )
    return connection.execute(stmt).scalar_one()


class Pseudonymiser:
    """Keyed hashes and per-patient date shifts, stable within this installation.

    The key lives in the instance folder; without it the pseudonyms cannot be linked back,
    and with it the same patient gets the same pseudonym and shift in every export.
    """

    def __init__(self, key: str):
        self._key = key.encode()

    def _digest(self, text: str) -> bytes:
        return hmac.new(self._key, text.encode(), hashlib.sha256).digest()

    def pseudonym(self, site_code: str, identifier_key: str) -> str:
        return "P-" + self._digest(f"patient:{site_code}:{identifier_key}").hex()[:16]

    def shift(self, patient_id: int) -> timedelta:
        """Whole days back, 1 to 364, the same for every date of one patient."""
        return timedelta(days=1 + int.from_bytes(self._digest(f"shift:{patient_id}")[:4]) % 364)


def _utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _local(value: datetime | None, tz_name: str) -> str:
    return value.astimezone(zone(tz_name)).isoformat(timespec="seconds") if value else ""


def rows(connection, request: ExportRequest) -> Iterator[list]:
    """The CSV rows, streamed from the connection's snapshot in batches.

    The query runs now, while the request's objects are loaded; only reading the result is
    left to the stream (which runs after the view has returned).
    """
    pseudonymiser = (
        Pseudonymiser(instance_secret(current_app, "export_key"))
        if request.profile == "deidentified"
        else None
    )
    result = connection.execution_options(yield_per=BATCH_ROWS).execute(_rows_statement(request))
    scale_items = {key: scale.items for key, scale in scales().items()}
    wide_items = request.scale.items if request.layout == "wide" else ()
    return _format_rows(result, request.layout, wide_items, scale_items, pseudonymiser)


def _format_rows(result, layout, wide_items, scale_items, pseudonymiser) -> Iterator[list]:
    for _assessment_id, group in groupby(result, key=itemgetter(0)):
        group = list(group)
        first = group[0]
        base = _base_columns(first, pseudonymiser)
        if layout == "long":
            items = {item.key: item for item in scale_items.get(first.scale_key, ())}
            for row in group:
                item = items.get(row.item_key)
                yield base + [
                    row.item_key,
                    item.respondent if item else "",
                    item.domain if item else "",
                    row.score if row.score is not None else NA,
                    row.not_assessed_reason or "",
                    row.measured_value if row.measured_value is not None else "",
                ]
        else:
            by_key = {row.item_key: row for row in group}
            values = []
            for item in wide_items:
                row = by_key.get(item.key)
                values.append(NA if row is None or row.score is None else row.score)
                if item.measurement is not None:
                    measured = row.measured_value if row is not None else None
                    values.append(measured if measured is not None else "")
            not_assessed = "; ".join(
                f"{row.item_key}: {NOT_ASSESSED_REASONS.get(row.not_assessed_reason, '?')}"
                for row in group
                if row.score is None
            )
            yield base + values + [not_assessed]


def _base_columns(row, pseudonymiser: Pseudonymiser | None) -> list:
    completeness = "complete" if row.complete else "incomplete"
    band = row.band if row.complete else ""
    if pseudonymiser is None:
        return [
            row.identifier, row.code, row.episode_id, _utc(row.started_at), row.scale_key,
            row.scale_version, row.id, _utc(row.observed_at), _local(row.observed_at, row.timezone),
            row.total, band, completeness, row.status, row.status_reason or "",
            row.replaces_id or "", row.recorded_by_name, _utc(row.recorded_at),
            row.reviewed_by_name or "", _utc(row.reviewed_at), row.notes,
        ]  # fmt: skip
    shift = pseudonymiser.shift(row.patient_id)

    def moved(value):
        return value - shift if value else None

    return [
        pseudonymiser.pseudonym(row.code, row.identifier_key), row.code, row.episode_number,
        _utc(moved(row.started_at)), row.scale_key, row.scale_version, row.id,
        _utc(moved(row.observed_at)), _local(moved(row.observed_at), row.timezone), row.total,
        band, completeness, row.status, row.replaces_id or "", _utc(moved(row.recorded_at)),
        "yes" if row.reviewed_at else "no", _utc(moved(row.reviewed_at)),
    ]  # fmt: skip


def preamble(request: ExportRequest, user: User, count: int, at: datetime) -> list[str]:
    """Provenance lines written above the header, each starting with '# '."""
    shown = scales()
    keys = [request.scale.key] if request.scale else list(shown)
    versions = "; ".join(f"{key} v{shown[key].version}" for key in keys)
    shown_filters = dict(request.filters)
    if request.profile == "deidentified":
        # The real identifier and real dates would undo the pseudonyms and the date shift.
        if request.patient is not None:
            shown_filters["patient"] = "one patient"
        for key in ("start", "end"):
            if shown_filters.get(key):
                shown_filters[key] = "(a real date, not shown)"
    filters = "; ".join(f"{k}={v}" for k, v in shown_filters.items() if v != "")
    return [
        "clinic_log export of withdrawal symptom assessments",
        NO_ADVICE_NOTICE,
        f"generated_at: {_utc(at)}",
        f"generated_by: {user.username} ({user.display_name})",
        f"filters: {filters}",
        f"rows: {count}",
        f"scale versions: {versions}",
        "times: *_utc columns are UTC (ISO 8601 with Z); observed_at_local is the site's "
        "local time with its UTC offset",
        f"not assessed items: {NA} in score columns; the reason is in not_assessed / "
        "not_assessed_reason",
        "text cells starting with = + - @ tab or a line break carry a protective leading "
        "apostrophe",
        "lines starting with # are these notes: skip them when reading (R: comment.char; "
        "pandas: comment)",
    ]


@dataclass
class Export:
    request: ExportRequest
    header: list[str]
    preamble: list[str]
    rows: Iterator[list]
    count: int
    close: Callable[[], None]


def open_export(request: ExportRequest, user: User) -> Export:
    """Take a read snapshot, count, write the audit event, and hand back the row stream.

    The caller streams ``rows`` and must call ``close`` (the stream's ``finally`` does).
    """
    connection = db.engine.connect()
    if connection.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    try:
        count = count_rows(connection, request)
        at = now_utc()
        begin_write(db.session)
        audit.record(
            "export",
            user=user,
            entity="export",
            site_id=request.sites[0].id if len(request.sites) == 1 else None,
            patient_id=request.patient.id if request.patient else None,
            details={**request.filters, "rows": count, "excel": request.excel},
        )
        db.session.commit()
    except Exception:
        connection.close()
        raise
    return Export(
        request=request,
        header=header(request),
        preamble=preamble(request, user, count, at),
        rows=rows(connection, request),
        count=count,
        close=connection.close,
    )
