"""The dashboard summary: where each open episode stands, kept in step with its assessments.

A page of the dashboard must not look at every entry of every open episode. So each open
episode has a ``DashboardEpisode`` row (its sort keys) and, per scale it was assessed on, a
``DashboardScale`` row (the latest active entry and the last few totals). The services that
change them call, in the same transaction and after their rows are flushed:

- ``episode_opened(episode)``: the episode joins the dashboard, not assessed yet;
- ``episode_ended(episode)``: it leaves it;
- ``entries_changed(episode_id, scale_key)``: an entry of that scale was recorded, amended or
  voided;
- ``schedule_changed(episode)``: its monitoring interval changed (the due time moves).

Nothing is added to or subtracted from what is stored: every change recomputes the scale's
row from the assessments themselves (the last ``SPARK_POINTS`` active entries, read from
``ix_assessment_episode_scale_recent``) and the episode's row from its scale rows. So the
summary says exactly what the assessments say, whatever the order of amendments and voids.
``rebuild()`` recomputes all of it (``flask dashboard rebuild``), after a bulk load or a
change to a scale's bands or to whether it is a withdrawal measure.

Triage ranks by *current* withdrawal severity, which changes as results age while nothing is
written. So the episode's row keeps what does not age, the highest band (or floor) of its
withdrawal measures and when the latest entry at that level was observed, and each scale row
its own ``withdrawal_rank``; the page compares those times with the recency window when it
is asked for (``services.py``).

The episode's row also keeps when the patient is next due (``due.py``): from the latest
withdrawal entry of the episode (or its start), ``due_from``, plus the episode's monitoring
interval, or the site's ``OVERDUE_AFTER_HOURS`` as it was when the row was written. After a
change to that setting, ``flask dashboard rebuild`` moves every open episode's due time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import click
from flask import current_app
from sqlalchemy import delete, func, insert, select

from .. import due
from ..database import begin_write
from ..extensions import db
from ..models import (
    Assessment,
    AssessmentStatus,
    DashboardEpisode,
    DashboardScale,
    Episode,
    Patient,
)
from ..scale_registry import scales
from ..scales import Band, Scale
from . import bp

SPARK_POINTS = 12
# Bands of different scales compared by their published label; a label off this ladder is
# placed by its position among its own scale's bands.
SEVERITY_LADDER = {"minimal": 0.5, "mild": 1.0, "moderate": 2.0, "moderately severe": 3.0,
                   "severe": 4.0}  # fmt: skip


def ladder_rank(scale: Scale, band: Band | None) -> float:
    """Where one of a scale's bands sits on the common ladder (minimal < mild < moderate <
    moderately severe < severe), so that bands of different scales compare by label; 0 for
    no band."""
    labels = [b.label for b in scale.bands]
    if band is None or band.label not in labels:
        return 0.0
    common = SEVERITY_LADDER.get(band.label.strip().lower())
    if common is not None:
        return common
    return 4.0 * (labels.index(band.label) + 1) / len(labels)


def withdrawal_rank(scale: Scale | None, total: int, complete: bool) -> float:
    """What a latest entry adds to triage while it is current: its band, or for an incomplete
    total the floor its recorded items have reached (``Severity.ranked_band``), on the common
    ladder; 0 for a scale that is not a withdrawal measure (or no longer installed) and for a
    total in no band."""
    if scale is None or not scale.withdrawal_measure:
        return 0.0
    return ladder_rank(scale, scale.severity(total, complete).ranked_band)


def default_interval_hours() -> float:
    """The site's monitoring interval for an episode that sets none (OVERDUE_AFTER_HOURS)."""
    return current_app.config["OVERDUE_AFTER_HOURS"]


def _due_at(due_from: datetime, assess_every_hours: int | None) -> datetime:
    hours = due.interval_hours(assess_every_hours, default_interval_hours())
    return due.due_time(due_from, hours)


def episode_opened(episode: Episode) -> None:
    """Put a newly opened (and flushed) episode on the dashboard: no entries yet, waiting
    since its start, and due one interval after it (a new episode restarts the clock)."""
    db.session.add(
        DashboardEpisode(
            episode_id=episode.id,
            site_id=episode.patient.site_id,
            severity=0.0,
            severity_at=None,
            last_assessed_at=None,
            since_at=episode.started_at,
            due_from=episode.started_at,
            due_at=_due_at(episode.started_at, episode.assess_every_hours),
        )
    )


def schedule_changed(episode: Episode) -> None:
    """Move an open episode's due time after its monitoring interval changed (flushed)."""
    summary = db.session.get(DashboardEpisode, episode.id, with_for_update=True)
    if summary is not None:
        summary.due_at = _due_at(summary.due_from, episode.assess_every_hours)


def episode_ended(episode: Episode) -> None:
    """Take an ended episode off the dashboard (its scale rows go with it)."""
    summary = db.session.get(DashboardEpisode, episode.id)
    if summary is not None:
        db.session.delete(summary)


def entries_changed(episode_id: int, scale_key: str) -> None:
    """Recompute one scale of an open episode, then the episode's sort keys, after an entry of
    that scale was recorded, amended or voided (and flushed). An ended episode has no row and
    nothing to do.

    The episode's row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite's write lock is
    already held), so two changes to one episode at once recompute one after the other, the
    second seeing the first's entries.
    """
    summary = db.session.scalar(
        select(DashboardEpisode)
        .where(DashboardEpisode.episode_id == episode_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if summary is None:
        return
    latest_first = db.session.execute(_recent_entries(episode_id, scale_key)).all()
    row = next((r for r in summary.scales if r.scale_key == scale_key), None)
    if not latest_first:
        if row is not None:
            summary.scales.remove(row)
    else:
        if row is None:
            row = DashboardScale(scale_key=scale_key)
            summary.scales.append(row)
        _fill_scale_row(row, latest_first, scales().get(scale_key))
    episode = summary.episode
    _fill_sort_keys(summary, episode.started_at, episode.assess_every_hours, scales())


def _recent_entries(episode_id: int, scale_key: str):
    return (
        select(
            Assessment.id,
            Assessment.observed_at,
            Assessment.total,
            Assessment.complete,
            Assessment.not_assessed_count,
            Assessment.band,
        )
        .where(
            Assessment.episode_id == episode_id,
            Assessment.scale_key == scale_key,
            Assessment.status == AssessmentStatus.ACTIVE,
        )
        .order_by(Assessment.observed_at.desc(), Assessment.id.desc())
        .limit(SPARK_POINTS)
    )


def _fill_scale_row(row: DashboardScale, latest_first: list, scale: Scale | None) -> None:
    latest = latest_first[0]
    row.assessment_id = latest.id
    row.observed_at = latest.observed_at
    row.total = latest.total
    row.complete = bool(latest.complete)
    row.not_assessed_count = latest.not_assessed_count or 0
    row.band = latest.band
    row.withdrawal_rank = withdrawal_rank(scale, latest.total, bool(latest.complete))
    row.recent_totals = [[e.total, bool(e.complete)] for e in reversed(latest_first)]


def _fill_sort_keys(
    summary: DashboardEpisode,
    started_at: datetime,
    assess_every_hours: int | None,
    installed: dict[str, Scale],
) -> None:
    """Severity and waiting time over the scales this installation has (an entry on a scale
    no longer installed is not shown, so it does not count either).

    The severity is the highest withdrawal rank of any scale, and ``severity_at`` the latest
    observation at that rank: while that one is within the recency window it is the current
    severity, and once it has aged out the page looks at the scale rows for the next."""
    shown = [r for r in summary.scales if r.scale_key in installed]
    ranked = [(r.withdrawal_rank, r.observed_at) for r in shown if r.withdrawal_rank > 0]
    summary.severity = max((rank for rank, _ in ranked), default=0.0)
    summary.severity_at = max((at for rank, at in ranked if rank == summary.severity), default=None)
    summary.last_assessed_at = max((r.observed_at for r in shown), default=None)
    summary.since_at = summary.last_assessed_at or started_at
    # Due counts from withdrawal scales only: an anxiety rating is not the assessment due.
    withdrawal = [r.observed_at for r in shown if installed[r.scale_key].withdrawal_measure]
    summary.due_from = max(withdrawal, default=started_at)
    summary.due_at = _due_at(summary.due_from, assess_every_hours)


def rebuild(episode_ids: Iterable[int] | None = None) -> int:
    """Recompute the summary of every open episode (or of these episodes) from the assessments,
    in one transaction; returns the number of open episodes summarised.

    For what bypasses the services: a bulk load, or a scale file whose bands changed.
    """
    begin_write(db.session)
    wanted = None if episode_ids is None else sorted(set(episode_ids))
    cleared = delete(DashboardEpisode)
    open_episodes = (
        select(Episode.id, Episode.started_at, Episode.assess_every_hours, Patient.site_id)
        .join(Patient, Patient.id == Episode.patient_id)
        .where(Episode.ended_at.is_(None))
    )
    if wanted is not None:
        cleared = cleared.where(DashboardEpisode.episode_id.in_(wanted))
        open_episodes = open_episodes.where(Episode.id.in_(wanted))
    db.session.execute(cleared, execution_options={"synchronize_session": False})
    episodes = db.session.execute(open_episodes).all()
    if not episodes:
        db.session.commit()
        return 0
    by_episode = _recent_entries_of_open_episodes(wanted)
    installed = scales()
    summaries, scale_rows = [], []
    for episode_id, started_at, assess_every_hours, site_id in episodes:
        summary = DashboardEpisode(episode_id=episode_id, site_id=site_id)
        for scale_key, latest_first in sorted(by_episode.get(episode_id, {}).items()):
            row = DashboardScale(episode_id=episode_id, scale_key=scale_key)
            _fill_scale_row(row, latest_first, installed.get(scale_key))
            summary.scales.append(row)
        _fill_sort_keys(summary, started_at, assess_every_hours, installed)
        summaries.append(_columns(summary, DashboardEpisode))
        scale_rows += [_columns(row, DashboardScale) for row in summary.scales]
    db.session.execute(insert(DashboardEpisode), summaries)
    if scale_rows:
        db.session.execute(insert(DashboardScale), scale_rows)
    db.session.commit()
    return len(summaries)


def _recent_entries_of_open_episodes(episode_ids: list[int] | None) -> dict[int, dict]:
    """The last SPARK_POINTS active entries of every scale of the open episodes, newest first:
    ``{episode_id: {scale_key: [entry, ...]}}``, in one pass over their entries."""
    position = (
        func.row_number()
        .over(
            partition_by=(Assessment.episode_id, Assessment.scale_key),
            order_by=(Assessment.observed_at.desc(), Assessment.id.desc()),
        )
        .label("position")
    )
    ranked = (
        select(
            Assessment.episode_id,
            Assessment.scale_key,
            Assessment.id,
            Assessment.observed_at,
            Assessment.total,
            Assessment.complete,
            Assessment.not_assessed_count,
            Assessment.band,
            position,
        )
        .join(Episode, Episode.id == Assessment.episode_id)
        .where(Episode.ended_at.is_(None), Assessment.status == AssessmentStatus.ACTIVE)
    )
    if episode_ids is not None:
        ranked = ranked.where(Assessment.episode_id.in_(episode_ids))
    ranked = ranked.subquery()
    stmt = (
        select(ranked)
        .where(ranked.c.position <= SPARK_POINTS)
        .order_by(ranked.c.episode_id, ranked.c.scale_key, ranked.c.position)
    )
    grouped: dict[int, dict] = {}
    for entry in db.session.execute(stmt):
        grouped.setdefault(entry.episode_id, {}).setdefault(entry.scale_key, []).append(entry)
    return grouped


def _columns(obj, model) -> dict:
    return {column.key: getattr(obj, column.key) for column in model.__table__.columns}


@bp.cli.command("rebuild")
def rebuild_command() -> None:
    """Recompute the dashboard summary of every open episode from the assessments."""
    count = rebuild()
    click.echo(f"Dashboard summary rebuilt for {count} open episodes.")
