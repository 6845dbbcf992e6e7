"""Conversions between stored UTC and a site's wall clock. Only forms and templates use these:
everything inside the app is aware UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

LOCAL_INPUT_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
_LOCAL_INPUT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$")


class LocalTimeError(ValueError):
    """A wall-clock time that cannot be turned into one instant."""


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def to_local(value: datetime, tz_name: str) -> datetime:
    return value.astimezone(ZoneInfo(tz_name))


def parse_local_input(raw: str) -> datetime:
    """Parse an HTML datetime-local value strictly (no other spellings); return a naive datetime.

    strptime alone would take unpadded fields and non-ASCII digits; the pattern does not.
    """
    if not _LOCAL_INPUT.match(raw):
        raise LocalTimeError("Enter a date and time as shown (for example 2026-03-04T14:05).")
    # A year typed short in a browser's date field arrives zero-padded (2 -> 0002): name it.
    year = raw[:4]
    if int(year) < 1900:
        raise LocalTimeError(
            f"The year {year} is implausibly far in the past: check the year, with all four digits."
        )
    if int(year) > 2200:
        raise LocalTimeError(f"The year {year} is implausibly far in the future: check the year.")
    for fmt in LOCAL_INPUT_FORMATS:
        try:
            return datetime.strptime(raw, fmt)  # noqa: DTZ007 - naive on purpose: it is wall time
        except ValueError:
            continue
    raise LocalTimeError("Enter a date and time as shown (for example 2026-03-04T14:05).")


def local_to_utc(naive: datetime, tz_name: str, fold: int | None = None) -> datetime:
    """Interpret a wall-clock time in the site's zone.

    A time skipped by a clock change does not exist and is refused. A time that happens twice
    is refused unless ``fold`` says which occurrence was meant (0 the first, 1 the second):
    the app never guesses an instant for the user.
    """
    tz = ZoneInfo(tz_name)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) != naive:
        raise LocalTimeError(
            f"{naive:%Y-%m-%d %H:%M} does not exist in {tz_name}: the clocks went forward then."
        )
    if first == second:
        return first
    if fold is None:
        raise AmbiguousLocalTime(naive, tz_name, (first, second))
    return second if fold else first


class AmbiguousLocalTime(LocalTimeError):
    """The wall-clock time happens twice (clocks going back); the user must say which."""

    def __init__(self, naive: datetime, tz_name: str, instants: tuple[datetime, datetime]):
        self.instants = instants
        self.choices = [
            (
                str(fold),
                f"{label} ({instant.astimezone(ZoneInfo(tz_name)).strftime('%H:%M %Z, UTC%z')})",
            )
            for fold, (label, instant) in enumerate(
                zip(("first occurrence", "second occurrence"), instants, strict=True)
            )
        ]
        super().__init__(
            f"{naive:%Y-%m-%d %H:%M} happens twice in {tz_name} because the clocks go back: "
            "choose which one you mean."
        )


def format_local(value: datetime | None, tz_name: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    local = to_local(value, tz_name)
    return f"{local.strftime(fmt)} {local.tzname()}"


def input_value(value: datetime, tz_name: str) -> str:
    """The value a datetime-local input needs to show this instant in the site's zone."""
    return to_local(value, tz_name).strftime("%Y-%m-%dT%H:%M")


# Clocks on ward computers drift; five minutes ahead is tolerated, more is a typing error.
FUTURE_SKEW = timedelta(minutes=5)
# Nothing in this log can have happened before clinic_log-style records existed at all.
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)


def implausible_time(instant: datetime, now: datetime) -> str | None:
    """Why a clinical time cannot be right, or None when it is plausible."""
    if instant > now + FUTURE_SKEW:
        return "This time is in the future. Enter when it actually happened."
    if instant < EARLIEST_PLAUSIBLE:
        return "This date is implausibly far in the past; check the year."
    return None
