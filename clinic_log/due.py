"""When a patient is next due to be assessed, and whether that time has passed: one rule for
the patient list and the dashboard.

A monitoring schedule, nothing more: each open episode has an interval (``Episode.
assess_every_hours``, or the site's ``OVERDUE_AFTER_HOURS`` when it sets none), counted from
the latest active entry on any withdrawal scale in that episode, or from the episode's start
when there is none. The dashboard summary keeps the result per open episode (``due_at``), so
lists can sort and filter by it without computing every patient's.

Pure: UTC in, UTC out. An interval is real elapsed hours, so "every 4 hours" across a clock
change is four hours later whatever the wall clock shows; only the display is local.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .timeutil import format_local

INTERVAL_MIN_HOURS = 1
INTERVAL_MAX_HOURS = 72
INTERVAL_MESSAGE = (
    f"Enter a whole number of hours from {INTERVAL_MIN_HOURS} to {INTERVAL_MAX_HOURS}, "
    "or leave it empty for the site default."
)
# "Due now": within this much of the due time. Long enough to plan the next round of a
# shift, short enough that it is not most of the interval.
DUE_SOON = timedelta(hours=1)


def interval_hours(assess_every_hours: int | None, default_hours: int) -> int:
    """The episode's own interval, or the site's default when it sets none."""
    return assess_every_hours if assess_every_hours is not None else default_hours


def due_time(anchor: datetime, hours: int) -> datetime:
    """When the next assessment is due: ``hours`` of elapsed time after ``anchor`` (the
    latest withdrawal entry of the open episode, or its start)."""
    return anchor + timedelta(hours=hours)


def due_soon_before(now: datetime) -> datetime:
    """Due times up to this instant are "due now or overdue" at ``now``."""
    return now + DUE_SOON


@dataclass(frozen=True)
class DueStatus:
    due_at: datetime
    state: str  # "overdue", "soon" (due now: within DUE_SOON), "later"
    delta: timedelta  # how long overdue, or how long until due (never negative)

    @property
    def overdue(self) -> bool:
        return self.state == "overdue"

    @property
    def text(self) -> str:
        if self.state == "overdue":
            return f"Overdue by {format_duration(self.delta)}"
        if self.state == "soon":
            return f"Due now: in {format_duration(self.delta)}"
        return f"Due in {format_duration(self.delta)}"


def due_status(due_at: datetime, now: datetime) -> DueStatus:
    """Overdue once ``now`` is past ``due_at``; due now within ``DUE_SOON`` of it."""
    if now > due_at:
        return DueStatus(due_at, "overdue", now - due_at)
    state = "soon" if due_at <= due_soon_before(now) else "later"
    return DueStatus(due_at, state, due_at - now)


def format_duration(delta: timedelta) -> str:
    """Hours and minutes ("2 h 05 min", "40 min"); days past two days ("3 d 4 h")."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        return f"{hours // 24} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def format_due_at(due_at: datetime, tz_name: str) -> str:
    """A due time as every page shows it: the site's local date and time with its zone."""
    return format_local(due_at, tz_name, "%m-%d %H:%M")
