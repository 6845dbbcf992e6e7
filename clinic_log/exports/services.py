"""CSV exports: what a user may export, the rows, the columns, and the de-identified profile.

Rows are read with plain Core queries from one read snapshot and streamed in batches, so memory
stays flat whatever the size of the export; the count in the provenance lines and the audit
event comes from the same snapshot as the rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain, groupby
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import DateTime, String, bindparam, func, select, type_coerce
from sqlalchemy.orm import aliased

from .. import audit
from ..config import instance_secret
from ..database import begin_write, now_utc
from ..extensions import db
from ..identifiers import identifier_key
from ..models import (
    Assessment,
    AssessmentStatus,
    AuditEvent,
    Episode,
    ItemScore,
    Patient,
    Site,
    User,
)
from ..params import parse_id
from ..product import NO_ADVICE_NOTICE
from ..scale_registry import scales
from ..scales import NOT_ASSESSED_REASONS, Scale
from ..timeutil import zone
from .csvwriter import CACHE_LIMIT, ROWS_PER_CHUNK, CellCache, csv_line, line_writer

LAYOUTS = ("wide", "long")
PROFILES = ("identified", "deidentified")
BATCH_ROWS = 2000
IDS_PER_QUERY = 500  # SQLite before 3.32 takes at most 999 parameters
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
ALL_SITES = "all of yours"  # the filter's value when no site is named
IDENTIFIER_LENGTH = 64  # Patient.identifier_key's column
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
        patient_id = parse_id(patient_raw)
        if patient_id is None:
            raise ExportError(404, "patient", "No such patient at your sites.")
        patient = db.session.get(Patient, patient_id)
        if patient is None or patient.site_id not in {s.id for s in sites}:
            raise ExportError(404, "patient", "No such patient at your sites.")
    typed = (args.get("patient_identifier") or "").strip()
    if typed:
        found = patient_by_identifier(typed, sites)
        if patient is not None and found.id != patient.id:
            raise ExportError(
                400,
                "patient_identifier",
                "This identifier is not the patient chosen by number: leave one of them empty.",
            )
        patient = found

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
        "site": site_code or ALL_SITES,
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


UNKNOWN_IDENTIFIER = (
    "No patient with this identifier at your sites. Check it, or leave it empty for all."
)


def patient_by_identifier(typed: str, sites: tuple[Site, ...]) -> Patient:
    """The patient of ``sites`` whose identifier is ``typed``, compared as identifiers are.

    Only ``sites`` are searched, so an identifier of a site the user cannot reach is answered
    exactly as one nobody has, and nothing is read from that site. Nor is it a refused access
    (no audit event): a form's lookup that finds nothing is a typing mistake until it reaches
    data, and this one never does.

    :raise ExportError: 400 on the identifier when none matches; 400 on the site when the
        identifier is used at two of ``sites`` (each site numbers its own patients).
    """
    key = identifier_key(typed)
    # Longer than the column, or with a control character (PostgreSQL refuses NUL in text):
    # no identifier is like that, so none is looked for.
    if len(key) > IDENTIFIER_LENGTH or any(unicodedata.category(ch) == "Cc" for ch in key):
        raise ExportError(400, "patient_identifier", UNKNOWN_IDENTIFIER)
    by_site = {site.id: site for site in sites}
    found = db.session.scalars(
        select(Patient)
        .where(Patient.site_id.in_(by_site), Patient.identifier_key == key)
        .order_by(Patient.site_id)
    ).all()
    if not found:
        raise ExportError(400, "patient_identifier", UNKNOWN_IDENTIFIER)
    if len(found) > 1:
        codes = sorted(by_site[p.site_id].code for p in found)
        raise ExportError(
            400,
            "site",
            f"Patient identifier {found[0].identifier} is used at "
            f"{', '.join(codes[:-1])} and {codes[-1]}: choose the site.",
        )
    return found[0]


def file_name(request: ExportRequest) -> str:
    """The download's name: sites, patient, profile, layout and scale, never an identifier.

    A patient is named by the number of its page in an identified file, and by its pseudonym
    in a de-identified one (which must not carry the number that links it back), so files of
    two profiles or two patients never share a name.
    """
    site = "all-sites"
    if request.filters["site"] != ALL_SITES:
        # A code is data: nothing in it may break the header's quoting.
        site = re.sub(r"[^A-Za-z0-9_-]", "_", request.sites[0].code)
    if request.patient is None:
        patient = "all-patients"
    elif request.profile == "deidentified":
        patient = Pseudonymiser(instance_secret(current_app, "export_key")).pseudonym(
            request.patient.site.code, request.patient.identifier_key
        )
    else:
        patient = f"patient-{request.patient.id}"
    scale = request.scale.key if request.scale else "all-scales"
    return f"clinic_log-{site}-{patient}-{request.profile}-{request.layout}-{scale}.csv"


# --- columns -------------------------------------------------------------------------------

# band_floor sits beside band and never changes what band means: an incomplete entry's band
# stays empty, and the band its lower bound has already reached goes in band_floor.
IDENTIFIED_BASE = [
    "patient_identifier", "site", "episode_id", "episode_started_at_utc", "scale",
    "scale_version", "assessment_id", "observed_at_utc", "observed_at_local", "total", "band",
    "band_floor", "completeness", "status", "status_reason", "replaces_id", "recorded_by",
    "recorded_at_utc", "reviewed_by", "reviewed_at_utc", "notes",
]  # fmt: skip
DEIDENTIFIED_BASE = [
    "patient_pseudonym", "site", "episode_number", "episode_started_at_utc", "scale",
    "scale_version", "assessment_id", "observed_at_utc", "observed_at_local", "total", "band",
    "band_floor", "completeness", "status", "replaces_id", "recorded_at_utc", "reviewed",
    "reviewed_at_utc",
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


def _stored(column, name: str):
    """A UTC column as the driver gives it, without the UTCDateTime decorator's per-value
    work (``_Times`` does it): SQLite's stored text, PostgreSQL's aware datetime."""
    return type_coerce(column, String).label(name)


# Where the columns of ``_assessments_statement`` are; the wide layout's answers follow them.
BASE_COLUMNS = 22
SCALE_KEY_COLUMN = 8


def _assessments_statement(request: ExportRequest, pivoted: bool = False):
    """One row per assessment, in export order, with everything but the item scores.

    The de-identified profile adds the episode number after the BASE_COLUMNS. ``pivoted``
    (wide layout) then adds the items of its scale, an outer join each: their scores, then
    their measurements, and last the number of item score rows the assessment has.
    """
    columns = [
        Assessment.id, Assessment.patient_id, Patient.identifier, Patient.identifier_key,
        Site.code, Site.timezone, Assessment.episode_id, _stored(Episode.started_at, "started_at"),
        Assessment.scale_key, Assessment.scale_version,
        _stored(Assessment.observed_at, "observed_at"), Assessment.total, Assessment.complete,
        Assessment.band, Assessment.status, Assessment.status_reason, Assessment.replaces_id,
        _recorder.display_name.label("recorded_by_name"),
        _stored(Assessment.recorded_at, "recorded_at"),
        _reviewer.display_name.label("reviewed_by_name"),
        _stored(Assessment.reviewed_at, "reviewed_at"), Assessment.notes,
    ]  # fmt: skip
    if request.profile == "deidentified":
        # Count the patient's episodes that started no later than this one (an alias, so the
        # subquery does not correlate to itself).
        earlier = aliased(Episode)
        episode_number = (
            select(func.count(earlier.id))
            .where(earlier.patient_id == Assessment.patient_id)
            .where(earlier.started_at <= Episode.started_at)
            .correlate(Assessment, Episode)
            .scalar_subquery()
        )
        columns.append(episode_number.label("episode_number"))
    statement = (
        select()
        .select_from(Assessment)
        .join(Patient, Patient.id == Assessment.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .join(Episode, Episode.id == Assessment.episode_id)
        .join(_recorder, _recorder.id == Assessment.recorded_by_id)
        .outerjoin(_reviewer, _reviewer.id == Assessment.reviewed_by_id)
    )
    if pivoted:
        answers = []
        for n, item in enumerate(request.scale.items):
            answer = aliased(ItemScore, name=f"item_{n}")
            statement = statement.outerjoin(
                answer, (answer.assessment_id == Assessment.id) & (answer.item_key == item.key)
            )
            answers.append((item, answer))
        columns += [answer.score for _item, answer in answers]
        columns += [answer.measured_value for item, answer in answers if item.measurement]
        item_rows = (
            select(func.count(ItemScore.id))
            .where(ItemScore.assessment_id == Assessment.id)
            .correlate(Assessment)
            .scalar_subquery()
        )
        columns.append(item_rows.label("item_rows"))
    return (
        statement.add_columns(*columns)
        .where(*_conditions(request))
        .order_by(Assessment.observed_at, Assessment.id)
    )


def _items_statement(request: ExportRequest):
    """The item scores of the same assessments, in the same order, each one's in scale order."""
    return (
        select(*_ITEM_COLUMNS)
        .select_from(Assessment)
        .join(Patient, Patient.id == Assessment.patient_id)
        .join(ItemScore, ItemScore.assessment_id == Assessment.id)
        .where(*_conditions(request))
        .order_by(Assessment.observed_at, Assessment.id, ItemScore.position)
    )


_ITEM_COLUMNS = (
    ItemScore.assessment_id, ItemScore.item_key, ItemScore.score, ItemScore.not_assessed_reason,
    ItemScore.measured_value,
)  # fmt: skip
# The item scores of some assessments (given by id), each one's in scale order.
_ITEMS_OF = (
    select(*_ITEM_COLUMNS)
    .where(ItemScore.assessment_id.in_(bindparam("ids", expanding=True)))
    .order_by(ItemScore.assessment_id, ItemScore.position)
)


def _patients_in_pseudonym_order(
    connection, request: ExportRequest, pseudonymiser: Pseudonymiser
) -> list[int]:
    """The ids of the patients with entries in the export, sorted by their pseudonyms."""
    found = connection.execute(
        select(Assessment.patient_id, Site.code, Patient.identifier_key)
        .distinct()
        .join(Patient, Patient.id == Assessment.patient_id)
        .join(Site, Site.id == Patient.site_id)
        .where(*_conditions(request))
    ).all()
    return [row[0] for row in sorted(found, key=lambda r: pseudonymiser.pseudonym(r[1], r[2]))]


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

    def assessment(self, assessment_id: int) -> str:
        """The entry's pseudonym (assessment_id, and replaces_id of its amendment): the real
        id is the row's number in the database, a key into every identified export."""
        return "E-" + self._digest(f"assessment:{assessment_id}").hex()[:16]


def _moved(value: datetime | None, shift: timedelta) -> datetime | None:
    """A de-identified time: ``shift`` earlier, to the minute. The seconds (a server clock's
    recorded_at above all) would match a row of the identified file at once."""
    return (value - shift).replace(second=0, microsecond=0) if value else None


def _utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _local(value: datetime | None, tz_name: str) -> str:
    return value.astimezone(zone(tz_name)).isoformat(timespec="seconds") if value else ""


class _Times:
    """Stored UTC times as the driver gives them, read as UTCDateTime would read them.

    SQLite gives the text SQLAlchemy stored: naive UTC, "2026-07-15 10:30:15.123456".
    PostgreSQL gives an aware datetime.
    """

    def __init__(self, dialect):
        self._parse = DateTime().dialect_impl(dialect).result_processor(dialect, None)

    def aware(self, value) -> datetime | None:
        """The instant as an aware UTC datetime (None stays None)."""
        if value is None:
            return None
        if isinstance(value, str):
            if _canonical(value):
                return datetime.fromisoformat(value + "+00:00")
            value = (self._parse or datetime.fromisoformat)(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def utc_text(self, value) -> str:
        """``_utc`` of the instant: the stored text rearranged, when it is canonical."""
        if value.__class__ is str and len(value) == 26 and value[10] == " " and value[0] != "0":
            return value[:10] + "T" + value[11:19] + "Z"  # _canonical, inline: it runs a lot
        return _utc_text(self.aware(value))


def _canonical(stored: str) -> bool:
    """Stored as SQLAlchemy writes a datetime on SQLite, in the years 1000 to 9999 (below,
    strftime would write the year without its leading zero)."""
    return len(stored) == 26 and stored[10] == " " and stored[0] != "0"


def rows(connection, request: ExportRequest) -> ExportRows:
    """The CSV rows, streamed from the connection's snapshot in batches.

    The queries run now, while the request's objects are loaded; only reading the results is
    left to the stream (which runs after the view has returned).
    """
    pseudonymiser = (
        Pseudonymiser(instance_secret(current_app, "export_key"))
        if request.profile == "deidentified"
        else None
    )
    return ExportRows(connection, request, pseudonymiser)


class ExportRows:
    """The rows of one export, read from the connection's snapshot a batch at a time.

    Iterating gives every row as a list of values, which ``csv_chunks`` writes through
    ``csv_cell``: the plain reading of the columns, and the reference. ``csv_text`` gives the
    same rows already written as text, which ``csv_chunks`` takes instead (``_FastWriter``
    says how it saves work). tests/test_exports.py checks that both give the same bytes.
    Either is read once.

    The item scores come one of two ways. As a stream beside the assessments, in the same
    order from the same snapshot, so an assessment's arrive exactly where it does: the long
    layout, and the wide one on PostgreSQL. Or, for the wide layout on SQLite, pivoted into
    the assessment's row by the database (an index lookup per item, cheaper there than
    sorting every item score; PostgreSQL would hash-join each item with a full scan).
    """

    def __init__(self, connection, request: ExportRequest, pseudonymiser: Pseudonymiser | None):
        self.connection = connection
        self.layout = request.layout
        self.pseudonymiser = pseudonymiser
        self.wide_items = request.scale.items if request.layout == "wide" else ()
        self.installed = scales()
        self.scale_items = {key: scale.items for key, scale in self.installed.items()}
        self.times = _Times(connection.dialect)
        self.pivoted = request.layout == "wide" and connection.dialect.name == "sqlite"
        assessments = _assessments_statement(request, self.pivoted)
        items = None if self.pivoted else _items_statement(request)
        self.patient_order: list[int] | None = None
        if pseudonymiser is not None:
            # De-identified: patient by patient in pseudonym order, read a group of patients
            # at a time. The database's order (observation time, then id: the order entries
            # were made in) would line the rows up with an identified export's.
            chunk = Assessment.patient_id.in_(bindparam("patients", expanding=True))
            self.by_patients = tuple(
                None if s is None else s.where(chunk).execution_options(yield_per=BATCH_ROWS)
                for s in (assessments, items)
            )
            self.patient_order = _patients_in_pseudonym_order(connection, request, pseudonymiser)
            return
        self.assessments = connection.execute(assessments.execution_options(yield_per=BATCH_ROWS))
        self.items = None
        if items is not None:
            self.items = connection.execute(items.execution_options(yield_per=BATCH_ROWS))

    def entries(self, needs_items: Callable[[Any], bool] | None = None) -> Iterator[tuple]:
        """(assessment row, its item score rows), in export order; an assessment without item
        scores is in no export.

        Pivoted rows: a batch's item score rows are read with one more query, for every
        assessment, or only where ``needs_items(row)`` (the others come with None).
        """
        if self.patient_order is None:
            yield from self._entries(self.assessments, self.items, needs_items)
            return
        assessments_of, items_of = self.by_patients
        for start in range(0, len(self.patient_order), IDS_PER_QUERY):
            chunk = {"patients": self.patient_order[start : start + IDS_PER_QUERY]}
            by_patient: dict[int, list] = {}
            found = self._entries(
                self.connection.execute(assessments_of, chunk),
                None if items_of is None else self.connection.execute(items_of, chunk),
                needs_items,
            )
            for entry in found:
                by_patient.setdefault(entry[0].patient_id, []).append(entry)
            for patient_id in chunk["patients"]:
                yield from sorted(by_patient.get(patient_id, ()), key=self._deidentified_order)

    def _deidentified_order(self, entry: tuple) -> tuple:
        """One patient's entries: by the minute observed (what the file shows), then by
        pseudonym, never by id."""
        row = entry[0]
        observed = _moved(self.times.aware(row.observed_at), timedelta(0))
        return observed, self.pseudonymiser.assessment(row.id)

    def _entries(self, assessments, items, needs_items) -> Iterator[tuple]:
        if items is not None:
            yield from self._streamed(assessments, items)
            return
        for batch in assessments.partitions():
            needed = [needs_items is None or needs_items(row) for row in batch]
            wanted = [row[0] for row, need in zip(batch, needed, strict=True) if need]
            found = {}
            for start in range(0, len(wanted), IDS_PER_QUERY):
                ids = wanted[start : start + IDS_PER_QUERY]
                result = self.connection.execute(_ITEMS_OF, {"ids": ids}).fetchall()
                found.update((key, list(group)) for key, group in groupby(result, itemgetter(0)))
            for row, need in zip(batch, needed, strict=True):
                if not need:
                    if row[-1]:  # the number of item score rows
                        yield row, None
                elif row[0] in found:
                    yield row, found[row[0]]

    def _streamed(self, assessments, items) -> Iterator[tuple]:
        groups = groupby(chain.from_iterable(items.partitions()), key=itemgetter(0))
        key, group = next(groups, (None, ()))
        for batch in assessments.partitions():
            for row in batch:
                if row[0] == key:
                    yield row, list(group)
                    key, group = next(groups, (None, ()))
        if key is not None:
            raise RuntimeError("export: item scores of an assessment the export did not read")

    def __iter__(self) -> Iterator[list]:
        return _format_rows(
            self.entries(), self.layout, self.wide_items, self.scale_items, self.pseudonymiser,
            self.times.aware, self.installed,
        )  # fmt: skip

    def csv_text(self) -> Iterator[str]:
        """The rows as CSV text, whole lines, a few hundred rows a chunk."""
        return _FastWriter(self).chunks()


def _format_rows(
    entries, layout, wide_items, scale_items, pseudonymiser, aware, installed
) -> Iterator[list]:
    """Each row as a list of values: what the columns mean, spelled out plainly."""
    for first, group in entries:
        base = _base_columns(first, pseudonymiser, aware, installed)
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
            yield base + _wide_values(wide_items, group)


def _wide_values(wide_items, group) -> list:
    """The wide layout's item columns and not_assessed, from the assessment's item rows."""
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
    return values + [not_assessed]


def band_floor(installed: Mapping[str, Scale], scale_key: str, total: int, complete: bool) -> str:
    """The band an incomplete total has already reached (``Scale.floor_for``), certain as a
    floor; empty for a complete entry, a lower bound below every band, or a scale no longer
    installed."""
    scale = installed.get(scale_key)
    floor = scale.floor_for(total, complete) if scale is not None else None
    return floor.label if floor is not None else ""


def _base_columns(row, pseudonymiser: Pseudonymiser | None, aware, installed) -> list:
    completeness = "complete" if row.complete else "incomplete"
    band = row.band if row.complete else ""
    floor = band_floor(installed, row.scale_key, row.total, row.complete)
    started, observed = aware(row.started_at), aware(row.observed_at)
    recorded, reviewed = aware(row.recorded_at), aware(row.reviewed_at)
    if pseudonymiser is None:
        return [
            row.identifier, row.code, row.episode_id, _utc(started), row.scale_key,
            row.scale_version, row.id, _utc(observed), _local(observed, row.timezone),
            row.total, band, floor, completeness, row.status, row.status_reason or "",
            row.replaces_id or "", row.recorded_by_name, _utc(recorded),
            row.reviewed_by_name or "", _utc(reviewed), row.notes,
        ]  # fmt: skip
    shift = pseudonymiser.shift(row.patient_id)
    return [
        pseudonymiser.pseudonym(row.code, row.identifier_key), row.code, row.episode_number,
        _utc(_moved(started, shift)), row.scale_key, row.scale_version,
        pseudonymiser.assessment(row.id), _utc(_moved(observed, shift)),
        _local(_moved(observed, shift), row.timezone), row.total, band, floor, completeness,
        row.status, pseudonymiser.assessment(row.replaces_id) if row.replaces_id else "",
        _utc(_moved(recorded, shift)), "yes" if reviewed else "no",
        _utc(_moved(reviewed, shift)),
    ]  # fmt: skip


def _utc_text(value: datetime | None) -> str:
    """``_utc``, quicker: isoformat instead of strftime (they agree from year 1000 on)."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    if value.year < 1000:
        return _utc(value)
    return value.isoformat(timespec="seconds")[:19] + "Z"


class _FastWriter:
    """``ExportRows.csv_text``: the rows of ``_format_rows`` written with less work per cell.

    What it leaves out, and why no byte changes:
    - ``csv_cell`` on numbers (it returns them as they are) and on text that cannot start
      with a formula trigger: the times it formats (they start with a digit), pseudonyms
      ("P-", "E-"), its fixed words (complete, yes, NA). Every other text value goes through
      ``CellCache``: ``csv_cell`` once per distinct value.
    - Long layout: an assessment's columns are written once, in front of each of its item
      rows; an item's columns once per distinct (scale, item, score, reason, measurement).
      ``csv.writer`` writes every cell on its own, so the joined text is the line it writes.
    - Wide layout, pivoted (SQLite): the item columns come from the database. Where they
      cannot say everything (an item not assessed or missing, for ``not_assessed``; an item
      score row of an item the scale does not have) the assessment's item rows are read, in
      one query per batch, and used as the reference uses them.
    - Times: from the stored text (SQLite) or the driver's datetime, with isoformat rather
      than strftime, and an episode's start once per episode.
    """

    def __init__(self, export_rows: ExportRows):
        self.rows = export_rows
        self.times = export_rows.times
        self.cells = CellCache()
        self.zones: dict[str, ZoneInfo] = {}
        self.started: dict[int, str] = {}
        self.shifts: dict[int, timedelta] = {}
        self.pseudonyms: dict[tuple[str, str], str] = {}
        self.floors: dict[tuple[str, int], str] = {}
        self.suffixes = {
            key: _ItemSuffixes({item.key: (item.respondent, item.domain) for item in items})
            for key, items in export_rows.scale_items.items()
        }
        items = export_rows.wide_items
        start = BASE_COLUMNS + (export_rows.pseudonymiser is not None)
        self.scores = slice(start, start + len(items))
        measured = [n for n, item in enumerate(items) if item.measurement is not None]
        # Where each measurement goes among the item cells (right after its item), last first.
        self.measured_at = [
            (n + 1 + k, start + len(items) + k) for k, n in reversed(list(enumerate(measured)))
        ]

    def chunks(self) -> Iterator[str]:
        lines: list[str] = []
        write_row = line_writer(lines.append).writerow
        prefixes: list[str] = []
        write_prefix = line_writer(prefixes.append, line_end=",").writerow
        base = self.identified if self.rows.pseudonymiser is None else self.deidentified
        if self.rows.layout == "long":
            suffixes = self.suffixes
            for row, group in self.rows.entries():
                write_prefix(base(row))
                prefix = prefixes.pop()
                table = suffixes.get(row[SCALE_KEY_COLUMN])
                if table is None:  # a scale no longer installed: no respondent, no domain
                    table = suffixes[row[SCALE_KEY_COLUMN]] = _ItemSuffixes({})
                for item in group:
                    lines.append(prefix + table[item[1:]])
                if len(lines) >= ROWS_PER_CHUNK:
                    yield "".join(lines)
                    lines.clear()
        else:
            needs_items = self.needs_items if self.rows.pivoted else None
            for row, group in self.rows.entries(needs_items):
                write_row(base(row) + self.wide_cells(row, group))
                if len(lines) >= ROWS_PER_CHUNK:
                    yield "".join(lines)
                    lines.clear()
        if lines:
            yield "".join(lines)

    def needs_items(self, row) -> bool:
        """Whether the pivoted columns cannot say everything: an item of the scale without a
        score, or a number of item score rows other than the scale's items."""
        scores = row[self.scores]
        return None in scores or row[-1] != len(scores)

    def wide_cells(self, row, group) -> list:
        if group is not None:
            return [
                self.cells[v] if isinstance(v, str) else v
                for v in _wide_values(self.rows.wide_items, group)
            ]
        cells = list(row[self.scores])
        for at, column in self.measured_at:
            cells.insert(at, "" if row[column] is None else row[column])
        cells.append("")
        return cells

    def started_text(self, episode_id: int, started, shift: timedelta | None) -> str:
        text = self.started.get(episode_id)
        if text is None:
            if shift is None:
                text = self.times.utc_text(started)
            else:
                text = _utc_text(_moved(self.times.aware(started), shift))
            if len(self.started) < CACHE_LIMIT:
                self.started[episode_id] = text
        return text

    def floor_text(self, scale_key: str, total: int, complete: bool) -> str:
        """``band_floor``, once per scale and total."""
        if complete:
            return ""
        text = self.floors.get((scale_key, total))
        if text is None:
            text = self.cells[band_floor(self.rows.installed, scale_key, total, complete)]
            if len(self.floors) < CACHE_LIMIT:
                self.floors[scale_key, total] = text
        return text

    def local_text(self, instant: datetime, tz_name: str) -> str:
        tz = self.zones.get(tz_name)
        if tz is None:
            tz = self.zones[tz_name] = zone(tz_name)
        return instant.astimezone(tz).isoformat(timespec="seconds")

    def identified(self, row) -> list:
        (
            assessment_id, _patient_id, identifier, _identifier_key, code, tz_name, episode_id,
            started, scale_key, scale_version, observed, total, complete, band, status, reason,
            replaces_id, recorded_by, recorded, reviewed_by, reviewed, notes,
        ) = row[:BASE_COLUMNS]  # fmt: skip
        cells, utc_text = self.cells, self.times.utc_text
        return [
            cells[identifier], cells[code], episode_id,
            self.started_text(episode_id, started, None), cells[scale_key], cells[scale_version],
            assessment_id, utc_text(observed),
            self.local_text(self.times.aware(observed), tz_name), total,
            cells[band] if complete else "", self.floor_text(scale_key, total, complete),
            "complete" if complete else "incomplete",
            cells[status], cells[reason], replaces_id or "", cells[recorded_by],
            utc_text(recorded), cells[reviewed_by], utc_text(reviewed) if reviewed else "",
            cells[notes],
        ]  # fmt: skip

    def deidentified(self, row) -> list:
        (
            assessment_id, patient_id, _identifier, identifier_key, code, tz_name, episode_id,
            started, scale_key, scale_version, observed, total, complete, band, status, _reason,
            replaces_id, _recorded_by, recorded, _reviewed_by, reviewed, _notes, episode_number,
        ) = row[: BASE_COLUMNS + 1]  # fmt: skip
        shift = self.shifts.get(patient_id)
        if shift is None:
            shift = self.rows.pseudonymiser.shift(patient_id)
            if len(self.shifts) < CACHE_LIMIT:
                self.shifts[patient_id] = shift
        pseudonym = self.pseudonyms.get((code, identifier_key))
        if pseudonym is None:
            pseudonym = self.rows.pseudonymiser.pseudonym(code, identifier_key)
            if len(self.pseudonyms) < CACHE_LIMIT:
                self.pseudonyms[code, identifier_key] = pseudonym
        cells, aware, entry = self.cells, self.times.aware, self.rows.pseudonymiser.assessment
        observed = _moved(aware(observed), shift)
        return [
            pseudonym, cells[code], episode_number, self.started_text(episode_id, started, shift),
            cells[scale_key], cells[scale_version], entry(assessment_id), _utc_text(observed),
            self.local_text(observed, tz_name), total, cells[band] if complete else "",
            self.floor_text(scale_key, total, complete), "complete" if complete else "incomplete",
            cells[status],
            entry(replaces_id) if replaces_id else "", _utc_text(_moved(aware(recorded), shift)),
            "yes" if reviewed else "no",
            _utc_text(_moved(aware(reviewed), shift)) if reviewed else "",
        ]  # fmt: skip


class _ItemSuffixes(dict):
    """One scale's item columns of a long row as CSV text, ``table[(item_key, score, reason,
    measured_value)]``, written through ``csv_cell`` once per distinct answer."""

    __slots__ = ("meta",)

    def __init__(self, meta: dict[str, tuple[str, str]]):
        super().__init__()
        self.meta = meta

    def __missing__(self, answer: tuple) -> str:
        item_key, score, reason, measured = answer
        respondent, domain = self.meta.get(item_key, ("", ""))
        text = csv_line(
            [
                item_key, respondent, domain, NA if score is None else score, reason or "",
                "" if measured is None else measured,
            ]
        )  # fmt: skip
        if len(self) < CACHE_LIMIT:
            self[answer] = text
        return text


def _wait_for_export(user: User, events: list[AuditEvent], per_minute: int) -> int:
    """Seconds until ``user`` may start another export; 0 if this one (``events``, one per
    site it covers) is within the limit.

    Runs in the write transaction that adds ``events``: on SQLite it holds the write lock, and
    on PostgreSQL ``audit.record`` took the audit lock, so two workers never both count the
    same free place.
    """
    at = events[0].at
    since = at - EXPORT_WINDOW
    db.session.flush()  # ``events`` get their ids, to be left out of the count below
    # A range of ix_audit_event_action_user_at: this user's exports of the last minute.
    started: dict[str, datetime] = {}
    for event_id, event_at, details in db.session.execute(
        select(AuditEvent.id, AuditEvent.at, AuditEvent.details).where(
            AuditEvent.action == EXPORT_ACTION,
            AuditEvent.user_id == user.id,
            AuditEvent.at > since,
            AuditEvent.id.not_in([event.id for event in events]),
        )
    ):
        # An export of several sites wrote one event per site: it counts once.
        key = json.loads(details).get("export_id") or f"event {event_id}"
        started[key] = min(event_at, started.get(key, event_at))
    earlier = sorted(started.values())
    if len(earlier) < per_minute:
        return 0
    # Free when all but per_minute - 1 of the earlier ones have left the window.
    frees_at = earlier[len(earlier) - per_minute] + EXPORT_WINDOW
    return max(1, math.ceil((frees_at - at).total_seconds()))


def _sites_exported(request: ExportRequest) -> tuple[Site, ...]:
    """The sites whose rows the export can hold: the patient's alone when it names one."""
    if request.patient is not None:
        return tuple(site for site in request.sites if site.id == request.patient.site_id)
    return request.sites


def _grant_details(user: User, site_id: int) -> dict:
    """``via`` and ``grant`` when ``site_id`` is reached through an emergency grant: the
    export is then a use of that grant, shown in its review."""
    if site_id in user.member_site_ids:
        return {}
    grant = next((g for g in user.emergency_grants if g.site_id == site_id), None)
    return {"via": "emergency_access", "grant": grant.id} if grant is not None else {}


def _audit_export(
    request: ExportRequest, user: User, sites: tuple[Site, ...], counts: list[int]
) -> list[AuditEvent]:
    """One ``export`` event per site the export covers, each with that site's row count
    only, so a site's trail never names another site's patients or numbers; the events of
    one export share ``export_id``."""
    export_id = uuid.uuid4().hex
    return [
        audit.record(
            EXPORT_ACTION,
            user=user,
            entity="export",
            site_id=site.id,
            patient_id=request.patient.id if request.patient else None,
            details={
                **request.filters,
                "rows": rows,
                "excel": request.excel,
                "export_id": export_id,
                **_grant_details(user, site.id),
            },
        )
        for site, rows in zip(sites, counts, strict=True)
    ]


def _audit_refused_export(
    request: ExportRequest, user: User, per_minute: int, retry_after: int
) -> None:
    """Write the refusal in a transaction of its own (the export's was rolled back): at the
    site it was for, or without a site (and then naming no patient) when it spans several."""
    sites = _sites_exported(request)
    site_id = sites[0].id if len(sites) == 1 else None
    begin_write(db.session)
    audit.record(
        "export_rate_limited",
        user=user,
        entity="export",
        site_id=site_id,
        patient_id=request.patient.id if request.patient else None,
        details={
            **request.filters,
            "limit_per_minute": per_minute,
            "retry_after_seconds": retry_after,
            **(_grant_details(user, site_id) if site_id is not None else {}),
        },
    )
    db.session.commit()


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
    if request.profile == "deidentified":
        # The day it was made dates the file against the identified exports of that day, and
        # a name says which clinic and team; the audit trail keeps both.
        made = [
            "generated_at: withheld (de-identified; the audit trail holds it)",
            "de-identified: ids are keyed pseudonyms; each patient's times are moved back by "
            "that patient's whole number of days and cut to the minute; rows are in pseudonym "
            "order (the data dictionary lists what is removed; shifted and kept)",
        ]
    else:
        made = [f"generated_at: {_utc(at)}", f"generated_by: {user.username} ({user.display_name})"]
    return [
        "clinic_log export of withdrawal symptom assessments",
        NO_ADVICE_NOTICE,
        *made,
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
    rows: ExportRows
    count: int
    close: Callable[[], None]


class TooManyExports(Exception):
    """The user has started ``limit`` exports in the last minute; in ``retry_after`` whole
    seconds enough of them have left the window for one more."""

    def __init__(self, limit: int, retry_after: int):
        self.limit = limit
        self.retry_after = retry_after
        self.message = (
            f"Too many exports: each user may start {limit} a minute. "
            f"Try again in {retry_after} seconds."
        )
        super().__init__(self.message)


EXPORT_WINDOW = timedelta(minutes=1)
EXPORT_ACTION = "export"  # the audit action of an export; the rate limit counts these


def open_export(request: ExportRequest, user: User, *, per_minute: int | None = None) -> Export:
    """Take a read snapshot, count, write the audit event, and hand back the row stream.

    The caller streams ``rows`` and must call ``close`` (the stream's ``finally`` does).

    :param per_minute: the most exports ``user`` may start in a minute (None: no limit, as
        for ``flask export``). The count is of their exports in the audit trail, in the
        transaction that writes this one, so every worker and process sees the same count.
    :raise TooManyExports: over the limit; the refusal is audited and nothing is read.
    """
    connection = db.engine.connect()
    if connection.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    try:
        sites = _sites_exported(request)
        if len(sites) == 1:
            counts = [count_rows(connection, request)]
        else:
            counts = [count_rows(connection, replace(request, sites=(site,))) for site in sites]
        count = sum(counts)
        at = now_utc()
        begin_write(db.session)
        events = _audit_export(request, user, sites, counts)
        if per_minute is not None:
            retry_after = _wait_for_export(user, events, per_minute)
            if retry_after:
                db.session.rollback()
                _audit_refused_export(request, user, per_minute, retry_after)
                raise TooManyExports(per_minute, retry_after)
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
