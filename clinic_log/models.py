"""The tables. Records are never overwritten or deleted: users are deactivated, assessments are
amended (a new row replaces the old) or voided, and audit events are append-only."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    literal,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from .database import UTCDateTime, now_utc
from .extensions import db
from .identifiers import identifier_skeleton


class Role(StrEnum):
    CLINICIAN = "clinician"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class SubstanceContext(StrEnum):
    OPIOID = "opioid"
    KRATOM = "kratom"
    OPIOID_AND_KRATOM = "opioid_and_kratom"
    OTHER = "other"


SUBSTANCE_LABELS = {
    SubstanceContext.OPIOID: "Opioid",
    SubstanceContext.KRATOM: "Kratom",
    SubstanceContext.OPIOID_AND_KRATOM: "Opioid and kratom",
    SubstanceContext.OTHER: "Other",
}


class AssessmentStatus(StrEnum):
    ACTIVE = "active"
    AMENDED = "amended"
    VOIDED = "voided"


def _in_check(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


# An entry waiting for sign-off. Queries that filter on it spell out the same literal (see
# waiting_for_review) so both databases can prove the partial indexes apply.
UNREVIEWED_SQL = f"status = '{AssessmentStatus.ACTIVE}' AND reviewed_at IS NULL"
_UNREVIEWED_COLUMNS = ("observed_at", "id", "status", "reviewed_at")


user_site = Table(
    "user_site",
    db.metadata,
    Column("user_id", ForeignKey("user.id", ondelete="RESTRICT"), primary_key=True),
    Column("site_id", ForeignKey("site.id", ondelete="RESTRICT"), primary_key=True),
)


class Site(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    def __repr__(self) -> str:
        return f"<Site {self.id} {self.code}>"


class User(UserMixin, db.Model):
    __table_args__ = (CheckConstraint(_in_check("role", Role), name="role_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Part of the login token: bumping it ends every session of this user on every worker.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # Password (and code) tries in the current run, counted before each is checked, so that
    # parallel tries can never exceed the limit; the run ends after a quiet lockout window.
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    last_try_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set with a one-time password from an administrator; unset once the user chose their own.
    one_time_password_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Time-based one-time codes (second factor): the shared secret once enrolled, and the
    # last time step accepted, so a code cannot be used twice.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    sites: Mapped[list[Site]] = relationship(secondary=user_site, order_by=Site.code)
    # Emergency grants not revoked; ``emergency_grants`` keeps the unexpired ones. The login
    # loader fills this with the unexpired ones only, in the same query as the user.
    open_access_grants: Mapped[list[SiteAccessGrant]] = relationship(
        primaryjoin=(
            "and_(SiteAccessGrant.user_id == User.id, SiteAccessGrant.revoked_at.is_(None))"
        ),
        order_by="SiteAccessGrant.expires_at",
        viewonly=True,
    )

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username}>"

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    # (own site ids, site ids of emergency grants in force), filled in by the login loader from
    # one small query (auth/guards.py), so that a request that only checks access never loads
    # the sites and grants as objects. Not mapped.
    loaded_site_ids = None

    @property
    def member_site_ids(self) -> set[int]:
        if self.loaded_site_ids is not None:
            return self.loaded_site_ids[0]
        return {site.id for site in self.sites}

    @property
    def emergency_grants(self) -> list[SiteAccessGrant]:
        """Emergency grants in force now: not revoked and not expired. Expiry is checked here,
        at request time, so access ends on the minute with no job to run. Non-clinical roles
        get none (an admin never reaches patients, even if a grant outlived a role change)."""
        if not self.is_clinical:
            return []
        if self.loaded_site_ids is not None and not self.loaded_site_ids[1]:
            return []  # the login loader found none in force: nothing to load
        now = now_utc()
        return [grant for grant in self.open_access_grants if grant.expires_at > now]

    @property
    def site_ids(self) -> set[int]:
        """The sites whose patients this user may reach: their own sites and the sites of
        emergency grants in force. Every access check and site-scoped list uses this."""
        if self.loaded_site_ids is not None:
            return self.loaded_site_ids[0] | self.loaded_site_ids[1]
        return self.member_site_ids | {grant.site_id for grant in self.emergency_grants}

    @property
    def reachable_sites(self) -> list[Site]:
        """The sites of ``site_ids`` as objects, by code (own sites and emergency grants)."""
        sites = {site.id: site for site in self.sites}
        for grant in self.emergency_grants:
            sites.setdefault(grant.site_id, grant.site)
        return sorted(sites.values(), key=lambda site: site.code)

    @property
    def is_clinical(self) -> bool:
        return self.role in (Role.CLINICIAN, Role.SUPERVISOR)


class SiteAccessGrant(db.Model):
    """Emergency ("break-glass") access: for a few hours a clinician or supervisor reaches the
    patients of one more site exactly as a member would.

    An admin grants it with a reason; it ends by itself at ``expires_at`` (checked on every
    request, no job needed) or earlier when revoked; a supervisor of the site then reviews it.
    Never deleted or extended: rows stay for review and the audit trail.
    """

    __table_args__ = (
        CheckConstraint("expires_at > granted_at", name="expires_after_grant"),
        CheckConstraint("reason <> ''", name="reason_given"),
        CheckConstraint("(revoked_at IS NULL) = (revoked_by_id IS NULL)", name="revoked_by_whom"),
        CheckConstraint(
            "(reviewed_at IS NULL) = (reviewed_by_id IS NULL)", name="reviewed_by_whom"
        ),
        Index("ix_site_access_grant_user_expires", "user_id", "expires_at"),
        Index("ix_site_access_grant_site_granted", "site_id", "granted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"))
    reason: Mapped[str] = mapped_column(String(500))
    granted_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    site: Mapped[Site] = relationship()
    granted_by: Mapped[User] = relationship(foreign_keys=[granted_by_id])
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_id])
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])

    def __repr__(self) -> str:
        return f"<SiteAccessGrant {self.id} user {self.user_id} site {self.site_id}>"

    def in_force(self, at: datetime) -> bool:
        return self.revoked_at is None and at < self.expires_at

    @property
    def ended_at(self) -> datetime:
        """When the access ended or will end: revocation, else expiry."""
        return self.revoked_at if self.revoked_at is not None else self.expires_at


class Patient(db.Model):
    __table_args__ = (
        UniqueConstraint("site_id", "identifier_key", name="uq_patient_site_identifier_key"),
        # "Does a patient at this site already have an identifier that looks like this one?"
        Index("ix_patient_site_identifier_skeleton", "site_id", "identifier_skeleton"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"), index=True)
    identifier: Mapped[str] = mapped_column(String(64))
    # NFKC + case-folded: uniqueness and search ignore case and look-alike forms everywhere,
    # also on SQLite, whose lower() folds ASCII only.
    identifier_key: Mapped[str] = mapped_column(String(64))
    # What the identifier looks like (identifiers.identifier_skeleton): set with the
    # identifier (below), so no code path can store a patient without it.
    identifier_skeleton: Mapped[str] = mapped_column(String(400))
    display_label: Mapped[str | None] = mapped_column(String(120))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    site: Mapped[Site] = relationship()
    created_by: Mapped[User] = relationship()
    episodes: Mapped[list[Episode]] = relationship(
        back_populates="patient", order_by="Episode.started_at.desc()"
    )

    def __repr__(self) -> str:
        return f"<Patient {self.id}>"

    @validates("identifier")
    def _keep_skeleton(self, _key: str, identifier: str) -> str:
        self.identifier_skeleton = identifier_skeleton(identifier)
        return identifier

    @property
    def open_episode(self) -> Episode | None:
        return next((e for e in self.episodes if e.ended_at is None), None)


OPEN_EPISODE_SQL = "ended_at IS NULL"


class Episode(db.Model):
    __table_args__ = (
        CheckConstraint(_in_check("substance_context", SubstanceContext), name="substance_known"),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ends_after_start"),
        CheckConstraint(
            "assess_every_hours IS NULL OR assess_every_hours BETWEEN 1 AND 72",
            name="assess_every_in_range",
        ),
        # At most one open episode per patient, held by the database: two "new episode"
        # posts at the same moment both pass the service's check on PostgreSQL.
        Index(
            "uq_episode_one_open_per_patient",
            "patient_id",
            unique=True,
            sqlite_where=text(OPEN_EPISODE_SQL),
            postgresql_where=text(OPEN_EPISODE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    substance_context: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    # How often the patient is to be assessed on a withdrawal scale while this episode is
    # open (a monitoring schedule); None follows the site's OVERDUE_AFTER_HOURS (due.py).
    assess_every_hours: Mapped[int | None] = mapped_column(Integer)

    patient: Mapped[Patient] = relationship(back_populates="episodes")
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    ended_by: Mapped[User | None] = relationship(foreign_keys=[ended_by_id])

    def __repr__(self) -> str:
        return f"<Episode {self.id}>"

    @property
    def substance_label(self) -> str:
        return SUBSTANCE_LABELS.get(self.substance_context, self.substance_context)


class Assessment(db.Model):
    __table_args__ = (
        CheckConstraint(_in_check("status", AssessmentStatus), name="status_known"),
        # status last: the patient list's latest entry and count of active entries per
        # patient come from the index alone, not from every entry's row (455 -> 48 ms for
        # 1,000 patients with 200 entries each).
        Index("ix_assessment_patient_observed", "patient_id", "observed_at", "status"),
        Index("ix_assessment_scale_observed", "scale_key", "observed_at"),
        # One scale of one patient, newest first: the patient page's summary (the last few
        # active entries of each scale), its timeline narrowed to a scale, and the flowsheet,
        # each a short range of this index however many entries the patient has.
        Index(
            "ix_assessment_patient_scale_observed",
            "patient_id",
            "scale_key",
            "observed_at",
            "id",
            "status",
        ),
        # The last active entries of one scale in one episode, newest first, from the index
        # alone: what the dashboard summary is rebuilt from after every change.
        Index(
            "ix_assessment_episode_scale_recent",
            "episode_id",
            "scale_key",
            "status",
            "observed_at",
            "id",
        ),
        # Entries waiting for sign-off, oldest first and per patient: the review queue, its
        # count and its patient filter. Partial, so they hold only what waits (few rows where
        # a clinic keeps up), and a backlog of thousands costs the queue one walk of its first
        # page instead of sorting every entry of every patient. They carry status and
        # reviewed_at too, so that they answer the queue's page and count alone: SQLite,
        # which keeps no statistics unless told, then prefers them to
        # ix_assessment_patient_observed.
        Index(
            "ix_assessment_unreviewed_observed",
            *_UNREVIEWED_COLUMNS,
            sqlite_where=text(UNREVIEWED_SQL),
            postgresql_where=text(UNREVIEWED_SQL),
        ),
        Index(
            "ix_assessment_unreviewed_patient",
            "patient_id",
            *_UNREVIEWED_COLUMNS,
            sqlite_where=text(UNREVIEWED_SQL),
            postgresql_where=text(UNREVIEWED_SQL),
        ),
        # The supervisor's own waiting entries, apart from the ones they sign: their tab and
        # its count walk only these, however many of other people's entries wait.
        Index(
            "ix_assessment_unreviewed_recorder",
            "recorded_by_id",
            *_UNREVIEWED_COLUMNS,
            sqlite_where=text(UNREVIEWED_SQL),
            postgresql_where=text(UNREVIEWED_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # patient_id repeats episode.patient_id so timelines and exports need no join.
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    episode_id: Mapped[int] = mapped_column(ForeignKey("episode.id"), index=True)
    scale_key: Mapped[str] = mapped_column(String(40))
    scale_version: Mapped[str] = mapped_column(String(20))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    # Computed by the scale at save time and stored with its version, so old entries keep the
    # rules they were scored under.
    total: Mapped[int] = mapped_column(Integer)
    complete: Mapped[bool] = mapped_column(Boolean)
    band: Mapped[str | None] = mapped_column(String(60))
    # How many items were not assessed (0 when complete). Stored with the total, so a list of
    # entries can word an incomplete total ("at least Severe — incomplete, 1 item not
    # assessed", Scale.severity) from its own row, without counting item scores per row.
    not_assessed_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    notes: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=AssessmentStatus.ACTIVE)
    status_reason: Mapped[str | None] = mapped_column(Text)
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("assessment.id"))
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # One per rendered entry form: a second submit of the same form finds the first row.
    submission_key: Mapped[str | None] = mapped_column(String(64), unique=True)

    patient: Mapped[Patient] = relationship()
    episode: Mapped[Episode] = relationship()
    recorded_by: Mapped[User] = relationship(foreign_keys=[recorded_by_id])
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])
    item_scores: Mapped[list[ItemScore]] = relationship(
        back_populates="assessment", order_by="ItemScore.position"
    )
    signatures: Mapped[list[Signature]] = relationship(
        foreign_keys="Signature.assessment_id", order_by="Signature.signed_at", viewonly=True
    )

    __mapper_args__ = {"version_id_col": version}

    @property
    def reviewed_by_name(self) -> str | None:
        """Named like the patient page's ``TimelineEntry``, so one template macro shows both."""
        return self.reviewed_by.display_name if self.reviewed_by is not None else None

    def __repr__(self) -> str:
        return f"<Assessment {self.id} {self.scale_key}>"


def waiting_for_review() -> tuple:
    """The conditions of an entry waiting for sign-off, as the partial indexes state them
    (``UNREVIEWED_SQL``). The status goes into the SQL as a literal, not a parameter:
    PostgreSQL's reused (generic) plans cannot prove that ``status = $1`` matches a partial
    index, and would go back to sorting every entry."""
    return (
        Assessment.status == literal(AssessmentStatus.ACTIVE.value, literal_execute=True),
        Assessment.reviewed_at.is_(None),
    )


class ItemScore(db.Model):
    __table_args__ = (
        UniqueConstraint("assessment_id", "item_key", name="uq_item_score_assessment_item"),
        # Exactly one of: a score, or the reason the item was not assessed.
        CheckConstraint("(score IS NULL) <> (not_assessed_reason IS NULL)", name="score_or_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(ForeignKey("assessment.id"))
    item_key: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    score: Mapped[int | None] = mapped_column(Integer)
    not_assessed_reason: Mapped[str | None] = mapped_column(String(32))
    # The measured value an item's points were derived from (COWS resting pulse in bpm).
    measured_value: Mapped[int | None] = mapped_column(Integer)

    assessment: Mapped[Assessment] = relationship(back_populates="item_scores")

    def __repr__(self) -> str:
        return f"<ItemScore {self.assessment_id} {self.item_key}>"


class Signature(db.Model):
    """An electronic sign-off: who, when, what it means, and a hash of the exact version signed.

    Amending the signed entry invalidates the signature (it is kept, never deleted)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(ForeignKey("assessment.id"), index=True)
    signer_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    # The printed name at signing time; a later rename does not change what was signed.
    signer_name: Mapped[str] = mapped_column(String(120))
    meaning: Mapped[str] = mapped_column(String(32), default="reviewed")
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    content_hash: Mapped[str] = mapped_column(String(64))
    invalidated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    invalidated_by_id: Mapped[int | None] = mapped_column(ForeignKey("assessment.id"))

    assessment: Mapped[Assessment] = relationship(foreign_keys=[assessment_id])
    signer: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<Signature {self.id} on {self.assessment_id}>"


class DashboardEpisode(db.Model):
    """Where an open episode stands on the supervisor dashboard: one row per open episode, kept
    in the same transaction as every change to its assessments (``dashboard/summary.py``).

    Derived data, so that a page of the dashboard is a range of one index whatever the number of
    patients and entries; ``flask dashboard rebuild`` recomputes it from the assessments.
    """

    episode_id: Mapped[int] = mapped_column(ForeignKey("episode.id"), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("site.id"))
    # The highest band (or an incomplete total's floor) over the latest entries of the
    # episode's withdrawal measures, on the dashboard's common ladder (0: none), and when the
    # latest entry at that level was observed. Triage is "current" severity, which ages
    # without any write, so the page ranks by these at query time against the recency window
    # (dashboard/services.py); the last entry on any scale, or the episode's start when none.
    severity: Mapped[float] = mapped_column(Float)
    severity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_assessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    since_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the next assessment is due (due.py): the latest withdrawal entry of the episode
    # (or its start), ``due_from``, plus its monitoring interval. Stored so that the patient
    # list sorts and filters by it from an index; an interval change or a rebuild moves it.
    due_from: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)

    episode: Mapped[Episode] = relationship()
    scales: Mapped[list[DashboardScale]] = relationship(
        back_populates="summary", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<DashboardEpisode {self.episode_id}>"


class DashboardScale(db.Model):
    """The latest active entry of one scale in an open episode, and the totals of the last few
    (oldest first, ``[total, complete]`` pairs) for its sparkline."""

    episode_id: Mapped[int] = mapped_column(
        ForeignKey("dashboard_episode.episode_id", ondelete="CASCADE"), primary_key=True
    )
    scale_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    assessment_id: Mapped[int] = mapped_column(ForeignKey("assessment.id"))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    total: Mapped[int] = mapped_column(Integer)
    complete: Mapped[bool] = mapped_column(Boolean)
    not_assessed_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    band: Mapped[str | None] = mapped_column(String(60))
    # The latest entry's band or floor on the common ladder when the scale is a withdrawal
    # measure, else 0: what this row adds to the episode's triage rank while it is current.
    withdrawal_rank: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    recent_totals: Mapped[list] = mapped_column(JSON)

    summary: Mapped[DashboardEpisode] = relationship(back_populates="scales")

    def __repr__(self) -> str:
        return f"<DashboardScale {self.episode_id} {self.scale_key}>"


# The dashboard's sort keys of one site's open episodes, read from the index alone: the rank
# depends on the time of the request (the recency window), so the page orders these narrow
# entries, never the wide rows, and joins only its own 25.
Index(
    "ix_dashboard_episode_order",
    DashboardEpisode.site_id,
    DashboardEpisode.severity.desc(),
    DashboardEpisode.severity_at,
    DashboardEpisode.since_at,
    DashboardEpisode.episode_id,
)


# The patient list's "soonest due first" and "due now or overdue": a range of one site's
# open episodes in due order, never every patient's due time.
Index(
    "ix_dashboard_episode_due",
    DashboardEpisode.site_id,
    DashboardEpisode.due_at,
    DashboardEpisode.episode_id,
)


class AuditEvent(db.Model):
    """Append-only. ``hash`` covers this row and the previous row's hash, so editing, removing
    or inserting a row breaks the chain from that point on."""

    __table_args__ = (
        # "This user's exports in the last minute" (the export limit) and "this account's
        # failed logins in the last 15 minutes" (the lockout): a short range of one index,
        # however many years of events the table holds.
        Index("ix_audit_event_action_user_at", "action", "user_id", "at"),
        Index("ix_audit_event_action_entity_at", "action", "entity", "entity_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"), index=True)
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40), index=True)
    entity: Mapped[str | None] = mapped_column(String(40))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str] = mapped_column(Text, default="{}")
    ip: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    def __repr__(self) -> str:
        return f"<AuditEvent {self.id} {self.action}>"


class LoginAttempt(db.Model):
    """One login attempt (password or code) from one client address, recorded before it is
    checked: the per-address rate limit counts these, so it holds across every worker.

    A counter, not a record: rows older than the window are deleted as new attempts come in.
    The outcome of each attempt is in the audit trail.
    """

    __table_args__ = (Index("ix_login_attempt_address_at", "address", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)

    def __repr__(self) -> str:
        return f"<LoginAttempt {self.id} {self.address}>"


# The database itself refuses to change or remove an audit event, whatever code asks. The
# same statements are in the migration; these cover tables built from the models (tests).
AUDIT_APPEND_ONLY_DDL = {
    "sqlite": [
        "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
        "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_event is append-only'; END $$",
        "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event "
        "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
    ],
}


@event.listens_for(AuditEvent.__table__, "after_create")
def _audit_append_only(target, connection, **_kw) -> None:
    for statement in AUDIT_APPEND_ONLY_DDL.get(connection.dialect.name, []):
        connection.exec_driver_sql(statement)


class HeldInput(db.Model):
    """What a user typed into a form that the session rules refused (a timeout, a pending
    password change or enrolment), held for that user only, for a short time, to be offered
    back after their next login (``auth/held.py``).

    Transient input, not a clinical record: it is deleted once restored, discarded or expired.
    Passwords, codes and CSRF tokens are never held.
    """

    __table_args__ = (CheckConstraint("expires_at > held_at", name="expires_after_held"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    endpoint: Mapped[str] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(String(500))
    # Which rule refused the post: idle, absolute, password (change pending), mfa (enrolment).
    why: Mapped[str] = mapped_column(String(20))
    # JSON: [[name, value], ...] in the order posted (a field may repeat).
    form: Mapped[str] = mapped_column(Text)
    held_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    def __repr__(self) -> str:
        return f"<HeldInput {self.id} user {self.user_id}>"

    def fields(self) -> list[tuple[str, str]]:
        return [(str(name), str(value)) for name, value in json.loads(self.form)]
