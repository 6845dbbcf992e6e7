"""Supervisor review: the queue of unreviewed entries and electronic sign-off, and the review
of emergency ("break-glass") access to the supervisor's sites.

A sign-off is an electronic signature: the supervisor re-enters their password, and the
signature keeps the printed name, the UTC time, the meaning ("reviewed") and a hash of the
exact version signed. Nobody signs an entry they recorded themselves.

Every emergency grant to a site stays in that site's queue until one of its supervisors has
reviewed it (who broke the glass, why, until when, which patients they opened); it can be
reviewed once it has ended, so the review covers everything done under it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import joinedload

from .. import audit
from ..assessments.services import fingerprint
from ..auth.services import PasswordRefused, confirm_password
from ..database import begin_write, now_utc
from ..exports.services import EXPORT_ACTION
from ..extensions import db
from ..identifiers import identifier_key
from ..models import (
    Assessment,
    AssessmentStatus,
    AuditEvent,
    Patient,
    Role,
    Signature,
    SiteAccessGrant,
    User,
    waiting_for_review,
)
from ..scale_registry import get_scale, scales
from ..timeutil import format_local

MEANING = "reviewed"


class ReviewError(ValueError):
    """A sign-off refused by a rule; ``field`` names the form field for the message."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class QueueEntry:
    assessment: Assessment
    own: bool  # recorded by the supervisor looking at the queue: someone else must sign
    after_review: Signature | None  # an earlier version's signature this amendment invalidated


QUEUE_LIMIT = 500
PAGE_SIZE = 50
# The count stops here: past it a number tells a supervisor nothing more, and counting every
# entry of a large backlog would cost the page what its size costs ("1,000+").
COUNT_CAP = 1000


@dataclass(frozen=True)
class QueueView:
    """What a queue page lists: one patient or all, one scale or all, oldest or newest first,
    and the entries to sign or the supervisor's own (which another supervisor signs)."""

    patient_id: int | None = None
    scale_key: str | None = None
    newest: bool = False
    own: bool | None = False  # None: both

    @classmethod
    def read(cls, patient_id: int | None, scale: str | None, order: str | None) -> QueueView:
        """The filters a link or form carried; an unknown scale or order is none (the whole
        queue, oldest first), as the filter form offers."""
        scale_key = scale if scale in scales() else None
        return cls(patient_id, scale_key, newest=order == "newest")

    def query(self) -> dict:
        """The filters as a query string, without defaults: what links and redirects carry
        (the tab is not among them: the entry page and "sign and next" are for signing)."""
        args = {"order": "newest" if self.newest else None, "patient": self.patient_id}
        args["scale"] = self.scale_key
        return {name: value for name, value in args.items() if value is not None}


@dataclass(frozen=True)
class QueuePage:
    entries: list[QueueEntry]
    has_next: bool  # entries follow the last one shown
    has_prev: bool  # entries come before the first one shown


def _queue_conditions(
    user: User, patient_id: int | None, scale_key: str | None, own: bool | None = None
) -> list:
    conditions = [Patient.site_id.in_(user.site_ids), *waiting_for_review()]
    if patient_id is not None:
        conditions.append(Assessment.patient_id == patient_id)
    if scale_key:
        conditions.append(Assessment.scale_key == scale_key)
    if own is not None:
        mine = Assessment.recorded_by_id == user.id
        conditions.append(mine if own else ~mine)
    return conditions


def count_waiting(user: User, view: QueueView, cap: int | None = None) -> int:
    """How many entries the view lists, counted no further than ``cap`` (``COUNT_CAP``): a
    walk of at most that many index entries, however long the backlog."""
    cap = COUNT_CAP if cap is None else cap
    some = (
        select(Assessment.id)
        .join(Patient, _site_join(view))
        .where(*_queue_conditions(user, view.patient_id, view.scale_key, view.own))
        .limit(cap)
        .subquery()
    )
    return db.session.scalar(select(func.count()).select_from(some))


def format_count(count: int, cap: int | None = None) -> str:
    """A capped count as the page says it: "1,000+" once the cap is reached."""
    cap = COUNT_CAP if cap is None else cap
    return f"{cap:,}+" if count >= cap else f"{count:,}"


def cursor_entry(user: User, assessment_id: int) -> Assessment | None:
    """The entry a page link continues from, if it is at one of the user's sites; signed or
    amended since does not matter, since only its place in the order is used."""
    return db.session.scalar(
        select(Assessment)
        .join(Assessment.patient)
        .where(Assessment.id == assessment_id, Patient.site_id.in_(user.site_ids))
    )


def queue_page(
    user: User,
    view: QueueView,
    after: Assessment | None = None,
    before: Assessment | None = None,
    size: int = PAGE_SIZE,
) -> QueuePage:
    """One page of the queue: the ``size`` entries that follow ``after`` (or precede
    ``before``) in the view's order, by observed time and then id.

    The page continues from an entry's place in that order (keyset paging), not from a
    count of rows: an entry signed or added between two page loads shifts nothing, so paging
    on never skips or repeats one. Each page walks the partial index from its start point,
    so the 4,000th page costs what the first does.
    """
    conditions = _queue_conditions(user, view.patient_id, view.scale_key, view.own)
    key = tuple_(Assessment.observed_at, Assessment.id)
    backward = before is not None
    descending = view.newest != backward  # walking back from ``before`` reverses the order
    if after is not None:
        start = (after.observed_at, after.id)
        conditions.append(key < start if view.newest else key > start)
    elif before is not None:
        start = (before.observed_at, before.id)
        conditions.append(key > start if view.newest else key < start)
    order = (
        (Assessment.observed_at.desc(), Assessment.id.desc())
        if descending
        else (Assessment.observed_at, Assessment.id)
    )
    ids = db.session.scalars(
        select(Assessment.id)
        .join(Patient, _site_join(view))
        .where(*conditions)
        .order_by(*order)
        .limit(size + 1)
    ).all()
    more = len(ids) > size
    ids = ids[:size]
    if backward:
        if not more:  # back at the start: show the first page whole
            return queue_page(user, view, size=size)
        ids.reverse()
    entries = _entries_by_id(ids)
    listed = [
        QueueEntry(a, a.recorded_by_id == user.id, signature)
        for a, signature in zip(entries, _last_signatures_before(entries), strict=True)
    ]
    if backward:
        return QueuePage(listed, has_next=True, has_prev=True)
    return QueuePage(listed, has_next=more, has_prev=after is not None)


def _site_join(view: QueueView):
    """How a page reaches its entries' patients (for their site): from each entry it walks.

    Without a patient filter the page must walk a partial index in its own order (of all
    waiting entries, or the supervisor's own) and stop once full. Joined plainly, SQLite,
    which keeps no statistics unless told, went the other way: from the site's patients to
    all their waiting entries, sorted whole for a page of 50. ``+ 0`` keeps the join off the
    entries' patient indexes, so both databases walk from the entries.
    """
    if view.patient_id is not None:
        return Patient.id == Assessment.patient_id
    return Patient.id == Assessment.patient_id + 0


def _entries_by_id(ids: list[int]) -> list[Assessment]:
    """The entries of ``ids`` with their patients, sites and recorders, in that order."""
    if not ids:
        return []
    found = {
        a.id: a
        for a in db.session.scalars(
            select(Assessment)
            .where(Assessment.id.in_(ids))
            .options(
                joinedload(Assessment.patient).joinedload(Patient.site),
                joinedload(Assessment.recorded_by),
            )
        ).unique()
    }
    return [found[i] for i in ids]


def next_waiting(user: User, signed: Assessment, view: QueueView) -> Assessment | None:
    """The entry "sign and next" opens after ``signed``: the next one in the view's order
    that waits for this supervisor, or else the first one (the queue wraps round)."""
    view = QueueView(view.patient_id, view.scale_key, view.newest, own=False)
    page = queue_page(user, view, after=signed, size=1)
    if not page.entries:
        page = queue_page(user, view, size=1)
    return page.entries[0].assessment if page.entries else None


def queue(
    user: User,
    patient_id: int | None = None,
    scale_key: str | None = None,
    limit: int = QUEUE_LIMIT,
) -> list[QueueEntry]:
    """Unreviewed active entries at the user's sites, the user's own too, oldest first."""
    return queue_page(user, QueueView(patient_id, scale_key, own=None), size=limit).entries


@dataclass(frozen=True)
class PatientFound:
    id: int
    identifier: str
    site_id: int


SEARCH_LIMIT = 10


def find_patients(user: User, text: str) -> list[PatientFound]:
    """Patients of the user's sites for the queue's search box: the one whose identifier is
    ``text`` (compared as identifiers are), or else those whose identifier contains it, at
    most ``SEARCH_LIMIT`` + 1 (so the page can say there are more)."""
    wanted = identifier_key(text)
    if not wanted:
        return []
    rows = db.session.execute(
        select(Patient.id, Patient.identifier, Patient.site_id, Patient.identifier_key)
        .where(
            Patient.site_id.in_(user.site_ids),
            Patient.identifier_key.like(f"%{_like_escape(wanted)}%", escape="\\"),
        )
        .order_by(Patient.identifier_key != wanted, Patient.identifier, Patient.id)
        .limit(SEARCH_LIMIT + 1)
    ).all()
    exact = [PatientFound(*row[:3]) for row in rows if row.identifier_key == wanted]
    return exact or [PatientFound(*row[:3]) for row in rows]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def names_of(ids: list[int]) -> dict[int, str]:
    """How a sign-off names each of these entries (``entry_name``), in one query."""
    return {a.id: entry_name(a) for a in _entries_by_id(list(ids))}


def _last_signatures_before(entries: list[Assessment]) -> list[Signature | None]:
    """For each amended-into entry, the latest signature on an earlier version of it (which
    the amendment invalidated), in two queries however long the chains are."""
    amended = [a for a in entries if a.replaces_id is not None]
    if not amended:
        return [None] * len(entries)
    patient_ids = {a.patient_id for a in amended}
    replaces = dict(
        db.session.execute(
            select(Assessment.id, Assessment.replaces_id).where(
                Assessment.patient_id.in_(patient_ids), Assessment.replaces_id.is_not(None)
            )
        ).all()
    )
    earlier: dict[int, list[int]] = {}
    for entry in amended:
        chain, current = [], entry.replaces_id
        while current is not None and len(chain) < 1000:
            chain.append(current)
            current = replaces.get(current)
        earlier[entry.id] = chain
    wanted = {i for chain in earlier.values() for i in chain}
    latest: dict[int, Signature] = {}
    for signature in db.session.scalars(
        select(Signature)
        .where(Signature.assessment_id.in_(wanted), Signature.invalidated_at.is_not(None))
        .order_by(Signature.signed_at)
    ):
        latest[signature.assessment_id] = signature
    found = {}
    for entry_id, chain in earlier.items():
        found[entry_id] = next((latest[i] for i in chain if i in latest), None)
    return [found.get(a.id) for a in entries]


def _check_signer(user: User, password: str, purpose: str) -> None:
    """A supervisor, with their password typed again: a try toward the lockout like a login's,
    checked and counted in transactions of its own, so call it before the sign-off's.

    :raise SessionEnded: this wrong password locked the account (see auth.services).
    """
    if user.role != Role.SUPERVISOR:
        raise ReviewError(None, "Only supervisors sign off entries.")
    try:
        confirm_password(
            user,
            password,
            purpose,
            wrong="That is not your password. Nothing was signed.",
            field="password",
        )
    except PasswordRefused as error:
        raise ReviewError("password", error.message) from error


def _sign(user: User, assessment: Assessment, when: datetime) -> Signature:
    signature = Signature(
        assessment_id=assessment.id,
        signer_id=user.id,
        signer_name=user.display_name,
        meaning=MEANING,
        signed_at=when,
        content_hash=fingerprint(assessment),
    )
    db.session.add(signature)
    assessment.reviewed_by_id = user.id
    assessment.reviewed_at = when
    db.session.flush()
    audit.record(
        "assessment_review",
        user=user,
        entity="assessment",
        entity_id=assessment.id,
        site_id=assessment.patient.site_id,
        patient_id=assessment.patient_id,
        details={"signature": signature.id, "meaning": MEANING, "hash": signature.content_hash},
    )
    return signature


def _refuse(
    user: User,
    assessment: Assessment | None,
    message: str,
    *,
    trend_of: Patient | None = None,
    **details,
) -> None:
    """Record a refused sign-off in its own transaction, then raise.

    It is written at the patient's site (of ``assessment``, or ``trend_of``), so
    that site's supervisors see it and no other site's trail names the patient.
    """
    patient = assessment.patient if assessment is not None else trend_of
    site_id, patient_id = (patient.site_id, patient.id) if patient is not None else (None, None)
    db.session.rollback()
    begin_write(db.session)
    audit.record(
        "review_refused",
        user=user,
        entity="assessment" if assessment else None,
        entity_id=assessment.id if assessment else None,
        site_id=site_id,
        patient_id=patient_id,
        reason=message,
        details=details,
    )
    db.session.commit()


def sign_assessment(user: User, assessment: Assessment, password: str, expected_version: int):
    """Sign off one entry as reviewed.

    :raise ReviewError: wrong password, not a supervisor, the signer recorded it, it is not
        active, it is already reviewed, or it changed since the page was opened.
    """
    try:
        _check_signer(user, password, "sign")
    except ReviewError as error:
        _refuse(user, assessment, error.message)
        raise
    begin_write(db.session)
    # Locked until this transaction ends, so a second signer at the same moment waits and
    # then reads the first one's signature instead of failing on a stale version (a 500).
    db.session.execute(
        select(Assessment.id).where(Assessment.id == assessment.id).with_for_update()
    )
    db.session.refresh(assessment)
    try:
        if assessment.patient.site_id not in user.site_ids:
            raise ReviewError(None, "This entry is not at one of your sites.")
        if assessment.recorded_by_id == user.id:
            raise ReviewError(None, "You recorded this entry; another supervisor must sign it.")
        if assessment.status != AssessmentStatus.ACTIVE:
            raise ReviewError(None, f"This entry is {assessment.status}; sign its current version.")
        if assessment.reviewed_at is not None:
            raise ReviewError(
                None, f"This entry has already been signed off by {assessment.reviewed_by_name}."
            )
        if assessment.version != expected_version:
            raise ReviewError(None, "This entry changed while you were reviewing; look again.")
    except ReviewError as error:
        _refuse(user, assessment, error.message)
        raise
    signature = _sign(user, assessment, now_utc())
    db.session.commit()
    return signature


# A trend sign-off carries each (id, version) it shows in its form, about ten bytes an entry
# against the 64 KiB form limit; and nobody reviews more than a few hundred entries on one
# page. A longer range is narrowed first.
TREND_SIGN_LIMIT = 500


@dataclass(frozen=True)
class LeftOut:
    """An entry a sign-off of several left unsigned, named, and why."""

    assessment_id: int
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass(frozen=True)
class SignedBatch:
    signed: list[int]  # ids signed, in the order they were shown
    left_out: list[LeftOut]


def entry_name(assessment: Assessment) -> str:
    """How a sign-off names an entry: patient, scale and observed time (site time)."""
    scale = get_scale(assessment.scale_key)
    patient = assessment.patient
    observed = format_local(assessment.observed_at, patient.site.timezone)
    scale_name = scale.short_name if scale else assessment.scale_key
    return f"{patient.identifier}, {scale_name} observed {observed}"


def _why_not_signed(
    user: User,
    assessment: Assessment,
    version: int,
    scope: Callable[[Assessment], str | None] | None,
) -> str | None:
    if assessment.recorded_by_id == user.id:
        return "you recorded it; another supervisor must sign it"
    if scope is not None and (outside := scope(assessment)):
        return outside
    if assessment.status == AssessmentStatus.AMENDED:
        return "amended since you opened the page; its new version waits for sign-off"
    if assessment.status != AssessmentStatus.ACTIVE:
        return f"{assessment.status} since you opened the page"
    if assessment.reviewed_at is not None:
        return f"already signed off by {assessment.reviewed_by_name}"
    if assessment.version != version:
        return "changed since you opened the page; look at it again"
    return None


def sign_versions(
    user: User,
    shown: Iterable[tuple[int, int]],
    password: str,
    *,
    purpose: str = "batch_sign",
    scope: Callable[[Assessment], str | None] | None = None,
    refusal_of: Patient | None = None,
) -> SignedBatch:
    """Sign the entries a page showed, each as the exact version shown, with one password:
    the one signing function for every sign-off of several entries (a batch ticked in the
    review queue, a trend on the tracker).

    ``shown`` holds (assessment id, version) pairs as the page showed them. Each entry gets a
    signature of its own, audited (``assessment_review``). An entry that may not be signed
    (of another site, the signer's own, amended, voided, already signed, another version, or
    outside ``scope``) is left out and named, its refusal audited at its site
    (``review_refused``); the rest are signed. All of it commits together or not at all.
    Rows are locked in id order, so two signers at once cannot deadlock and each entry is
    signed once: the second finds it signed and leaves it out.

    :param purpose: names the password try in the audit trail and the lockout's events.
    :param scope: the caller's own bound, e.g. the trend's patient, range and scales: given
        an entry of the user's sites, the reason it lies outside, or None.
    :param refusal_of: the patient a refused password is recorded against (its site).
    :raise ReviewError: wrong password (counted toward the lockout) or not a supervisor;
        nothing is signed and the refusal is audited.
    """
    versions: dict[int, int] = {}
    for assessment_id, version in shown:
        versions.setdefault(assessment_id, version)
    try:
        _check_signer(user, password, purpose)
    except ReviewError as error:
        details = (
            {"patient": refusal_of.id} if refusal_of is not None else {"entries": len(versions)}
        )
        _refuse(user, None, error.message, trend_of=refusal_of, **details)
        raise
    begin_write(db.session)
    db.session.execute(
        select(Assessment.id)
        .where(Assessment.id.in_(versions))
        .order_by(Assessment.id)
        .with_for_update()
    )
    found = {
        assessment.id: assessment
        for assessment in db.session.scalars(
            select(Assessment)
            .where(Assessment.id.in_(versions))
            .options(joinedload(Assessment.patient).joinedload(Patient.site))
            .execution_options(populate_existing=True)
        )
    }
    when, signed, left_out = now_utc(), [], []
    for assessment_id, version in versions.items():
        assessment = found.get(assessment_id)
        if assessment is None or assessment.patient.site_id not in user.site_ids:
            # Named by id only: the patient of a site the user cannot see stays unnamed.
            reason, name = "not at one of your sites", f"entry #{assessment_id}"
        else:
            reason, name = _why_not_signed(user, assessment, version, scope), None
        if reason is None:
            _sign(user, assessment, when)
            signed.append(assessment_id)
            continue
        left_out.append(LeftOut(assessment_id, name or entry_name(assessment), reason))
        audit.record(
            "review_refused",
            user=user,
            entity="assessment",
            entity_id=assessment_id,
            site_id=assessment.patient.site_id if assessment else None,
            patient_id=assessment.patient_id if assessment else None,
            reason=reason,
            details={"purpose": purpose, "version": version},
        )
    db.session.commit()
    return SignedBatch(signed, left_out)


@dataclass(frozen=True)
class TrendShown:
    """What a tracker page showed: one patient, a range of observed times ([start, end),
    UTC; an open end is None) and the scales on the page."""

    patient: Patient
    start: datetime | None
    end: datetime | None
    scale_keys: frozenset[str]

    def outside(self, assessment: Assessment) -> str | None:
        """Why an entry was not on this page, or None when it was within it."""
        if (
            assessment.patient_id != self.patient.id
            or assessment.scale_key not in self.scale_keys
            or (self.start is not None and assessment.observed_at < self.start)
            or (self.end is not None and assessment.observed_at >= self.end)
        ):
            return "not on the page you signed from"
        return None


@dataclass(frozen=True)
class TrendToSign:
    """What the tracker's sign-off form offers: the entries shown that this supervisor may
    sign, and the waiting entries it leaves (never counting the supervisor's own as waiting
    for them)."""

    entries: list[Assessment]  # shown, waiting, not the supervisor's own; oldest first
    own_shown: int  # shown and waiting, but recorded by the supervisor
    elsewhere: int  # waiting for this supervisor but not shown (other days or scales)

    @property
    def too_many(self) -> bool:
        return len(self.entries) > TREND_SIGN_LIMIT

    @property
    def limit(self) -> int:
        return TREND_SIGN_LIMIT


def trend_to_sign(user: User, patient: Patient, shown: Iterable[Assessment]) -> TrendToSign:
    """Split the active entries a tracker page shows into those the user may sign and the
    user's own, and count the patient's other entries waiting for the user.

    :raise: nothing of its own (read only).
    """
    waiting = [a for a in shown if a.reviewed_at is None and a.status == AssessmentStatus.ACTIVE]
    mine = [a for a in waiting if a.recorded_by_id != user.id]
    mine.sort(key=lambda a: (a.observed_at, a.id))
    all_waiting = db.session.scalar(
        select(func.count(Assessment.id)).where(
            Assessment.patient_id == patient.id,
            *waiting_for_review(),
            Assessment.recorded_by_id != user.id,
        )
    )
    return TrendToSign(mine, len(waiting) - len(mine), max(all_waiting - len(mine), 0))


def sign_trend(
    user: User, shown: TrendShown, versions: Iterable[tuple[int, int]], password: str
) -> SignedBatch:
    """Sign the entries a tracker page showed, as shown (see ``sign_versions``); an entry
    named but not within the page's patient, range and scales is left out and named.

    :raise ReviewError: wrong password or not a supervisor; nothing is signed.
    """
    return sign_versions(
        user,
        versions,
        password,
        purpose="trend_sign",
        scope=shown.outside,
        refusal_of=shown.patient,
    )


def signature_intact(signature: Signature) -> bool:
    """True when the signed version still hashes to what was signed."""
    return fingerprint(signature.assessment) == signature.content_hash


# --------------------------------------------------------------------------- emergency access

EMERGENCY_USE = "emergency_access_use"
EMERGENCY_LIST = "emergency_access_list"


@dataclass(frozen=True)
class GrantForReview:
    grant: SiteAccessGrant
    in_force: bool
    own: bool  # the supervisor looking at the queue used it: another supervisor reviews it
    patients: list[tuple[int, str]]  # (id, identifier) of every patient opened through it
    lists: list[tuple[str, int]]  # (list name, lines written) of the lists that showed its site
    exports: list[GrantExport]  # the exports made through it, oldest first


@dataclass(frozen=True)
class GrantExport:
    event_id: int
    at: datetime
    rows: int
    patient: str  # the identifier asked for, or "all"


def emergency_grants_to_review(user: User, limit: int = 100) -> list[GrantForReview]:
    """Emergency grants to the user's own sites (not sites they reach through a grant) that
    no supervisor has reviewed yet, newest first, with the patients opened through each.

    :raise: nothing of its own (read only).
    """
    grants = (
        db.session.scalars(
            select(SiteAccessGrant)
            .options(
                joinedload(SiteAccessGrant.user),
                joinedload(SiteAccessGrant.site),
                joinedload(SiteAccessGrant.granted_by),
                joinedload(SiteAccessGrant.revoked_by),
            )
            .where(
                SiteAccessGrant.site_id.in_(user.member_site_ids),
                SiteAccessGrant.reviewed_at.is_(None),
            )
            .order_by(SiteAccessGrant.granted_at.desc(), SiteAccessGrant.id.desc())
            .limit(limit)
        )
        .unique()
        .all()
    )
    opened = _patients_opened([grant.id for grant in grants])
    listed = _lists_seen([grant.id for grant in grants])
    exported = _exports_made(grants)
    now = now_utc()
    return [
        GrantForReview(
            grant,
            grant.in_force(now),
            grant.user_id == user.id,
            opened.get(grant.id, []),
            listed.get(grant.id, []),
            exported.get(grant.id, []),
        )
        for grant in grants
    ]


def _patients_opened(grant_ids: list[int]) -> dict[int, list[tuple[int, str]]]:
    """grant id -> the patients opened through it (from the audit trail), in one query."""
    if not grant_ids:
        return {}
    rows = db.session.execute(
        select(AuditEvent.entity_id, Patient.id, Patient.identifier)
        .join(Patient, Patient.id == AuditEvent.patient_id)
        .where(
            AuditEvent.action == EMERGENCY_USE,
            AuditEvent.entity == "site_access_grant",
            AuditEvent.entity_id.in_(grant_ids),
        )
        .distinct()
        .order_by(Patient.identifier)
    ).all()
    opened: dict[int, list[tuple[int, str]]] = {}
    for grant_id, patient_id, identifier in rows:
        opened.setdefault(grant_id, []).append((patient_id, identifier))
    return opened


def _lists_seen(grant_ids: list[int]) -> dict[int, list[tuple[str, int]]]:
    """grant id -> the lists (dashboard, patient list, review queue) that showed the grant's
    site's patients, each with how many times it was written, in one query."""
    if not grant_ids:
        return {}
    counts: dict[int, dict[str, int]] = {}
    for grant_id, details in db.session.execute(
        select(AuditEvent.entity_id, AuditEvent.details).where(
            AuditEvent.action == EMERGENCY_LIST,
            AuditEvent.entity == "site_access_grant",
            AuditEvent.entity_id.in_(grant_ids),
        )
    ):
        name = json.loads(details).get("list", "list")
        counts.setdefault(grant_id, {}).setdefault(name, 0)
        counts[grant_id][name] += 1
    return {grant_id: sorted(by_list.items()) for grant_id, by_list in counts.items()}


def _exports_made(grants: list[SiteAccessGrant]) -> dict[int, list[GrantExport]]:
    """grant id -> the exports made through it, in one query: the ``export`` events of the
    grants' users at their sites since the earliest grant began (a range of the index on
    action, user and time), kept where ``grant`` names one of these grants."""
    if not grants:
        return {}
    wanted = {grant.id for grant in grants}
    made: dict[int, list[GrantExport]] = {}
    for event_id, at, details in db.session.execute(
        select(AuditEvent.id, AuditEvent.at, AuditEvent.details)
        .where(
            AuditEvent.action == EXPORT_ACTION,
            AuditEvent.user_id.in_({grant.user_id for grant in grants}),
            AuditEvent.at >= min(grant.granted_at for grant in grants),
            AuditEvent.site_id.in_({grant.site_id for grant in grants}),
        )
        .order_by(AuditEvent.id)
    ):
        data = json.loads(details)
        if data.get("via") == "emergency_access" and data.get("grant") in wanted:
            made.setdefault(data["grant"], []).append(
                GrantExport(event_id, at, data.get("rows", 0), str(data.get("patient", "all")))
            )
    return made


def review_emergency_access(user: User, grant: SiteAccessGrant) -> None:
    """Record that a supervisor of the grant's site has reviewed an ended emergency grant
    (``emergency_access_review``, with what it covered).

    :raise ReviewError: not a supervisor of the site, the supervisor's own grant, still in
        force, or already reviewed. The refusal is audited (``review_refused``).
    """
    begin_write(db.session)
    db.session.execute(
        select(SiteAccessGrant.id).where(SiteAccessGrant.id == grant.id).with_for_update()
    )
    db.session.refresh(grant)
    now = now_utc()
    try:
        if user.role != Role.SUPERVISOR or grant.site_id not in user.member_site_ids:
            raise ReviewError(None, "Only a supervisor of the site reviews its emergency access.")
        if grant.user_id == user.id:
            raise ReviewError(
                None, "You used this emergency access; another supervisor reviews it."
            )
        if grant.in_force(now):
            raise ReviewError(
                None,
                "This emergency access is still in force; review it once it has ended "
                "(an administrator can revoke it sooner).",
            )
        if grant.reviewed_at is not None:
            raise ReviewError(None, "This emergency access has already been reviewed.")
    except ReviewError as error:
        _refuse_grant_review(user, grant, error.message)
        raise
    grant.reviewed_at, grant.reviewed_by_id = now, user.id
    opened = _patients_opened([grant.id]).get(grant.id, [])
    listed = _lists_seen([grant.id]).get(grant.id, [])
    exported = _exports_made([grant]).get(grant.id, [])
    audit.record(
        "emergency_access_review",
        user=user,
        entity="site_access_grant",
        entity_id=grant.id,
        site_id=grant.site_id,
        details={
            "username": grant.user.username,
            "site": grant.site.code,
            "granted_at": grant.granted_at.isoformat(),
            "ended_at": grant.ended_at.isoformat(),
            "revoked": grant.revoked_at is not None,
            "patients_opened": [patient_id for patient_id, _identifier in opened],
            "lists_seen": dict(listed),
            "exports": [made.event_id for made in exported],
        },
    )
    db.session.commit()


def _refuse_grant_review(user: User, grant: SiteAccessGrant, message: str) -> None:
    """Record a refused grant review in its own transaction."""
    grant_id, site_id = grant.id, grant.site_id
    db.session.rollback()
    begin_write(db.session)
    audit.record(
        "review_refused",
        user=user,
        entity="site_access_grant",
        entity_id=grant_id,
        site_id=site_id,
        reason=message,
    )
    db.session.commit()
