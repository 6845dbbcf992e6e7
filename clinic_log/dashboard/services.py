"""The supervisor dashboard: every patient with an open episode, most severe and most overdue
first. Descriptive only: it shows where things stand and suggests nothing.

Two queries whatever the number of patients: the patients with open episodes, and the
latest entries of every (patient, scale) pair via a window function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import contains_eager

from ..charts.spark import SparkShape, spark_shape
from ..extensions import db
from ..models import Assessment, AssessmentStatus, Episode, Patient, User
from ..scales import Scale

SPARK_POINTS = 12
SEVERITY_LADDER = {"minimal": 0.5, "mild": 1.0, "moderate": 2.0, "moderately severe": 3.0,
                   "severe": 4.0}  # fmt: skip


@dataclass
class ScaleStatus:
    scale: Scale
    latest_total: int
    latest_complete: bool
    latest_band: str | None
    latest_at: datetime
    spark: SparkShape

    @property
    def band_rank(self) -> int:
        """1 for the lowest published band up to len(bands); 0 when there is no band."""
        if not self.latest_complete or self.latest_band is None:
            return 0
        labels = [band.label for band in self.scale.bands]
        return labels.index(self.latest_band) + 1 if self.latest_band in labels else 0

    @property
    def severity(self) -> float:
        """The latest band on a common ladder (minimal < mild < moderate < moderately severe
        < severe), so that GAD-7 "Mild" and COWS "Mild" sort together; a label outside the
        ladder is placed by its position among its scale's bands."""
        if not self.band_rank:
            return 0.0
        common = SEVERITY_LADDER.get(self.latest_band.strip().lower())
        if common is not None:
            return common
        return 4.0 * self.band_rank / len(self.scale.bands)


@dataclass
class DashboardRow:
    patient: Patient
    episode: Episode
    scales: list[ScaleStatus] = field(default_factory=list)
    last_assessed_at: datetime | None = None
    hours_since: float = 0.0
    overdue: bool = False

    @property
    def severity(self) -> float:
        return max((s.severity for s in self.scales), default=0.0)

    @property
    def top_band(self) -> ScaleStatus | None:
        ranked = [s for s in self.scales if s.band_rank]
        return max(ranked, key=lambda s: s.severity) if ranked else None


def dashboard_rows(
    user: User, scales: dict[str, Scale], overdue_after: timedelta, now: datetime
) -> list[DashboardRow]:
    """Patients with an open episode at the user's sites, sorted for a supervisor's eye:
    highest current severity band first, then the longest time since any assessment."""
    open_episodes = db.session.execute(
        select(Episode)
        .join(Episode.patient)
        .options(contains_eager(Episode.patient).joinedload(Patient.site))
        .where(Episode.ended_at.is_(None), Patient.site_id.in_(user.site_ids))
    ).scalars()
    rows = {episode.patient_id: DashboardRow(episode.patient, episode) for episode in open_episodes}
    if not rows:
        return []

    recent = _recent_entries(user)
    for (patient_id, scale_key), entries in recent.items():
        row = rows.get(patient_id)
        scale = scales.get(scale_key)
        if row is None or scale is None:
            continue
        latest = entries[-1]
        row.scales.append(
            ScaleStatus(
                scale=scale,
                latest_total=latest.total,
                latest_complete=latest.complete,
                latest_band=latest.band,
                latest_at=latest.observed_at,
                spark=spark_shape(
                    [e.total for e in entries],
                    [e.complete for e in entries],
                    scale.total_min,
                    scale.total_max,
                ),
            )
        )
    for row in rows.values():
        row.scales.sort(key=lambda s: (s.scale.display_order, s.scale.key))
        row.last_assessed_at = max((s.latest_at for s in row.scales), default=None)
        since = row.last_assessed_at or row.episode.started_at
        row.hours_since = max((now - since).total_seconds() / 3600, 0.0)
        row.overdue = now - since > overdue_after
    return sorted(rows.values(), key=lambda r: (-r.severity, -r.hours_since))


def _recent_entries(user: User) -> dict[tuple[int, str], list]:
    """The last SPARK_POINTS active entries of each (patient, scale) in open episodes,
    oldest first, in one query."""
    position = (
        func.row_number()
        .over(
            partition_by=(Assessment.patient_id, Assessment.scale_key),
            order_by=(Assessment.observed_at.desc(), Assessment.id.desc()),
        )
        .label("position")
    )
    ranked = (
        select(
            Assessment.patient_id,
            Assessment.scale_key,
            Assessment.observed_at,
            Assessment.total,
            Assessment.complete,
            Assessment.band,
            Assessment.id,
            position,
        )
        .join(Episode, Episode.id == Assessment.episode_id)
        .join(Patient, Patient.id == Assessment.patient_id)
        .where(
            Episode.ended_at.is_(None),
            Assessment.status == AssessmentStatus.ACTIVE,
            Patient.site_id.in_(user.site_ids),
        )
        .subquery()
    )
    stmt = (
        select(ranked)
        .where(ranked.c.position <= SPARK_POINTS)
        .order_by(ranked.c.patient_id, ranked.c.scale_key, ranked.c.observed_at, ranked.c.id)
    )
    grouped: dict[tuple[int, str], list] = {}
    for entry in db.session.execute(stmt):
        grouped.setdefault((entry.patient_id, entry.scale_key), []).append(entry)
    return grouped
