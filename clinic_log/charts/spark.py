"""Sparklines as inline SVG coordinates: a dashboard of 200 patients draws 200 of them, so
they are plain polylines in the page, not 200 matplotlib renders and image requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 96
HEIGHT = 24
PAD = 2


@dataclass(frozen=True)
class SparkMark:
    x: float
    y: float
    complete: bool


@dataclass(frozen=True)
class SparkShape:
    line: str  # "x,y x,y ..." through the complete totals only
    marks: tuple[SparkMark, ...]
    width: int = WIDTH
    height: int = HEIGHT


def spark_shape(
    values: Sequence[int], complete: Sequence[bool], y_min: int, y_max: int
) -> SparkShape:
    """Place totals (oldest first) on a WIDTH x HEIGHT box, y_min at the bottom.

    Incomplete totals get a mark but no line through them: they are lower bounds.
    """
    span = max(y_max - y_min, 1)
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    marks = []
    for index, (value, whole) in enumerate(zip(values, complete, strict=True)):
        x = PAD + index * step if len(values) > 1 else WIDTH / 2
        y = HEIGHT - PAD - (min(max(value, y_min), y_max) - y_min) / span * (HEIGHT - 2 * PAD)
        marks.append(SparkMark(round(x, 1), round(y, 1), whole))
    line = " ".join(f"{m.x},{m.y}" for m in marks if m.complete)
    return SparkShape(line=line, marks=tuple(marks))
