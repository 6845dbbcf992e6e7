"""Scale definitions as immutable values, and scoring of one set of answers.

Pure Python with no Flask imports, so scoring can be tested and reused by the CLI,
the exports and the forms alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Why an item may be left unscored. The keys are what the forms store; the values are
# what people read. A not-assessed item makes the total a lower bound (see Scale.score).
NOT_ASSESSED_REASONS: dict[str, str] = {
    "asleep": "Asleep",
    "unable_to_communicate": "Unable to communicate",
    "not_measured": "Not measured",
}


class ScoreError(ValueError):
    """An answer that a scale cannot accept. ``item_key`` names the offending item."""

    def __init__(self, item_key: str | None, message: str) -> None:
        super().__init__(message)
        self.item_key = item_key
        self.message = message

    def __str__(self) -> str:
        return self.message


def _is_int(value: object) -> bool:
    # bool is a subclass of int, but True is never a meaningful symptom score.
    return isinstance(value, int) and not isinstance(value, bool)


def _format_scores(scores: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in scores)


@dataclass(frozen=True)
class Anchor:
    """One allowed score of an item and the words that describe it."""

    score: int
    text: str


@dataclass(frozen=True)
class PointsRule:
    """Raw values up to and including ``up_to`` earn ``score``; ``None`` means "all above"."""

    up_to: int | None
    score: int


@dataclass(frozen=True)
class Measurement:
    """A raw value (e.g. pulse in bpm) that is stored as measured and converted to item points.

    Storing the measurement rather than the points keeps the record auditable: the
    derivation can be re-checked later, and nobody has to do the banding by hand.
    """

    key: str
    label: str
    unit: str
    minimum: int
    maximum: int
    points: tuple[PointsRule, ...]

    def points_for(self, value: int) -> int:
        """Return the item score for a raw measured value."""
        if not _is_int(value):
            raise ScoreError(self.key, f"{self.label} must be a whole number")
        if not self.minimum <= value <= self.maximum:
            raise ScoreError(
                self.key,
                f"{value} is outside the plausible range for {self.label} "
                f"({self.minimum}–{self.maximum} {self.unit})",
            )
        for rule in self.points:
            if rule.up_to is None or value <= rule.up_to:
                return rule.score
        # The loader guarantees a final open-ended rule; reaching here means a hand-built object.
        raise ScoreError(self.key, f"no points rule covers {value} for {self.label}")


@dataclass(frozen=True)
class Item:
    """One question or observed sign of a scale."""

    key: str
    label: str
    prompt: str
    respondent: str
    domain: str
    anchors: tuple[Anchor, ...]
    measurement: Measurement | None = None

    @property
    def allowed_scores(self) -> tuple[int, ...]:
        # Sorted here too, so hand-built Items behave like loaded ones.
        return tuple(sorted(a.score for a in self.anchors))

    @property
    def min_score(self) -> int:
        return min(a.score for a in self.anchors)

    @property
    def max_score(self) -> int:
        return max(a.score for a in self.anchors)

    def anchor_text(self, score: int) -> str:
        """Return the anchor wording for ``score``; ScoreError if the score is not allowed."""
        for anchor in self.anchors:
            if anchor.score == score and _is_int(score):
                return anchor.text
        raise ScoreError(self.key, self._not_allowed_message(score))

    def _not_allowed_message(self, score: object) -> str:
        return (
            f"{score} is not an allowed score for {self.label} "
            f"(allowed: {_format_scores(self.allowed_scores)})"
        )


@dataclass(frozen=True)
class Band:
    """A published, descriptive severity category covering totals ``low``..``high``."""

    low: int
    high: int
    label: str
    citation: str = ""


@dataclass(frozen=True)
class ScoreResult:
    """The outcome of scoring one set of answers."""

    total: int  # sum of the assessed items (a lower bound when incomplete)
    complete: bool  # False when any item is "not assessed"
    band: Band | None  # None when incomplete, or when the total falls in no published band
    not_assessed: tuple[str, ...]  # item keys answered "not assessed", in item order
    # Incomplete only: the band the recorded items already reach. The true total can only be
    # higher, so at least this band is certain; it is never shown as the entry's band.
    floor: Band | None = None

    @property
    def band_label(self) -> str | None:
        return self.band.label if self.band is not None else None


@dataclass(frozen=True)
class Severity:
    """A total as it is shown: its band, or for an incomplete total the floor it has reached,
    and the text that says which (``Scale.severity``)."""

    band: Band | None  # a complete total's band
    floor: Band | None  # an incomplete total's certain minimum band
    text: str

    @property
    def ranked_band(self) -> Band | None:
        """What triage ranks by: the band, or the floor (a lower bound is at least this)."""
        return self.band or self.floor


@dataclass(frozen=True)
class Scale:
    """One instrument, as read from its TOML definition."""

    key: str
    name: str
    short_name: str
    version: str
    citation: str
    respondent: str
    recall_period: str
    instructions: str
    custom: bool
    display_order: int
    total_min: int
    total_max: int
    bands: tuple[Band, ...]
    band_note: str
    items: tuple[Item, ...]
    source_file: str
    # An opioid withdrawal scale (COWS, SOWS, OOWS, SOWS-Gossop): its current band ranks the
    # dashboard's triage. Anxiety and symptom ratings are shown there but rank nothing.
    withdrawal_measure: bool = False
    _by_key: dict[str, Item] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Frozen dataclass: build the lookup table once, bypassing the frozen __setattr__.
        object.__setattr__(self, "_by_key", {item.key: item for item in self.items})

    @property
    def item_keys(self) -> tuple[str, ...]:
        return tuple(item.key for item in self.items)

    def item(self, key: str) -> Item:
        """Return the item called ``key``; KeyError if the scale has no such item."""
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"scale {self.key!r} has no item {key!r}") from None

    def band_for(self, total: int) -> Band | None:
        """Return the published band containing ``total``, or None (e.g. COWS 0–4)."""
        for band in self.bands:
            if band.low <= total <= band.high:
                return band
        return None

    def floor_for(self, total: int, complete: bool) -> Band | None:
        """The band an incomplete total has certainly reached, or None.

        A total with items not assessed is a lower bound: the true total is ``total`` or more,
        and the bands rise with the total, so the band containing ``total`` is a floor ("at
        least Severe"). A complete total has a band, not a floor; a lower bound below every
        band reaches none ("Incomplete").
        """
        return None if complete else self.band_for(total)

    def severity(self, total: int, complete: bool, not_assessed: int = 0) -> Severity:
        """How a total reads wherever a band appears (pages, charts, alt text, exports):
        its band when complete, its floor ("at least Severe — incomplete, 1 item not
        assessed") when incomplete and already in a band, else "Incomplete" or "No published
        band". One wording everywhere, so no page shows a band the items have not reached."""
        if complete:
            band = self.band_for(total)
            return Severity(band, None, band.label if band else "No published band")
        floor = self.floor_for(total, complete)
        if floor is None:
            return Severity(None, None, "Incomplete")
        missing = (
            f"{not_assessed} item{'s' if not_assessed != 1 else ''} not assessed"
            if not_assessed
            else "items not assessed"
        )
        return Severity(None, floor, f"at least {floor.label} — incomplete, {missing}")

    def score(self, answers: Mapping[str, int | None]) -> ScoreResult:
        """Score a complete set of answers; ``None`` marks an item as not assessed.

        Every item must be answered, even if only as "not assessed", so a form that
        silently drops a field is caught here rather than producing a low total.

        :raise ScoreError: for a missing or unknown item key, a non-integer value or a
            score outside the item's allowed set.
        """
        for item in self.items:
            if item.key not in answers:
                raise ScoreError(item.key, f"no answer given for {item.label}")
        for key in answers:
            if key not in self._by_key:
                raise ScoreError(key, f"{key!r} is not an item of {self.short_name}")

        total = 0
        not_assessed: list[str] = []
        for item in self.items:
            value = answers[item.key]
            if value is None:
                not_assessed.append(item.key)
                continue
            if not _is_int(value):
                raise ScoreError(
                    item.key,
                    f"{item.label} needs a whole-number score or 'not assessed', "
                    f"not {type(value).__name__} {value!r}",
                )
            if value not in item.allowed_scores:
                raise ScoreError(item.key, item._not_allowed_message(value))
            total += value

        # A partial sum is only a lower bound, so it never gets a severity band: at most a
        # floor, the band it has already reached.
        complete = not not_assessed
        band = self.band_for(total) if complete else None
        return ScoreResult(
            total=total,
            complete=complete,
            band=band,
            not_assessed=tuple(not_assessed),
            floor=self.floor_for(total, complete),
        )
