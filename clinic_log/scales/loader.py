"""Read and strictly validate scale definition files (TOML).

A clinic adds an instrument by dropping a file in a directory, so every file is
treated as untrusted input: unknown fields, wrong types and inconsistent totals are
rejected at start-up with the file and the exact field named, instead of surfacing
later as a wrong total on a patient's chart.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, NoReturn

from .model import Anchor, Band, Item, Measurement, PointsRule, Scale

BUILTIN_DIR: Path = Path(__file__).resolve().parent / "definitions"

KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")

# Item keys become form field names next to these, so they must not collide.
RESERVED_FIELD_NAMES = frozenset(
    {"observed_at", "notes", "csrf_token", "submission_key", "episode_id", "version"}
)

SCALE_RESPONDENTS = ("clinician", "patient")
ITEM_RESPONDENTS = ("patient_reported", "clinician_observed")
DOMAINS = (
    "anxiety",
    "aches",
    "insomnia",
    "irritability",
    "autonomic",
    "gastrointestinal",
    "neuromuscular",
    "craving",
    "other",
)

# Product guard: this app records symptoms and never advises on treatment. A definition
# copied from a public form can carry an "action" column; refuse it rather than show it.
DOSING_WORDS = re.compile(
    r"\b(dose|doses|dosing|dosage|mg|mcg|medication|buprenorphine|methadone|naloxone"
    r"|induction|taper|titrat\w*)\b",
    re.IGNORECASE,
)

_SCALE_FIELDS = {
    "key": True,
    "name": True,
    "short_name": True,
    "version": True,
    "citation": True,
    "respondent": True,
    "recall_period": True,
    "instructions": True,
    "custom": True,
    # Whether the scale measures opioid withdrawal: only those rank the dashboard's triage.
    "withdrawal_measure": True,
    "display_order": True,
    "total_min": True,
    "total_max": True,
    "band_note": False,
    "bands": False,
    "items": True,
}
_BAND_FIELDS = {"low": True, "high": True, "label": True, "citation": False}
_ITEM_FIELDS = {
    "key": True,
    "label": True,
    "prompt": False,
    "respondent": True,
    "domain": True,
    "anchors": True,
    "measurement": False,
}
_ANCHOR_FIELDS = {"score": True, "text": True}
_MEASUREMENT_FIELDS = {
    "key": True,
    "label": True,
    "unit": True,
    "minimum": True,
    "maximum": True,
    "points": True,
}
_POINTS_FIELDS = {"up_to": False, "score": True}


class ScaleDefinitionError(Exception):
    """A scale definition file that cannot be used; names the file and the field."""

    def __init__(self, file: str, field: str, message: str) -> None:
        super().__init__(f"{file}: {field}: {message}")
        self.file = file
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


def _type_name(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Reader:
    """Typed access to one parsed file; every failure is raised with its dotted field path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, field: str, message: str) -> NoReturn:
        raise ScaleDefinitionError(self.file, field, message)

    def check_fields(self, table: dict[str, Any], path: str, spec: dict[str, bool]) -> None:
        # Unknown fields are errors, so a typo such as "lable" cannot silently drop a value.
        for name in table:
            if name not in spec:
                allowed = ", ".join(spec)
                self.fail(_join(path, name), f"unknown field (allowed fields: {allowed})")
        for name, required in spec.items():
            if required and name not in table:
                self.fail(_join(path, name), "required field is missing")

    def text(
        self, table: dict[str, Any], name: str, path: str, *, default: str | None = None
    ) -> str:
        field = _join(path, name)
        if name not in table:
            if default is None:
                self.fail(field, "required field is missing")
            return default
        value = table[name]
        if not isinstance(value, str):
            self.fail(field, f"expected a string, got {_type_name(value)}")
        if default is None and not value.strip():
            self.fail(field, "must not be empty")
        if DOSING_WORDS.search(value):
            self.fail(field, "dosing or medication wording is not allowed in a scale definition")
        return value

    def integer(self, table: dict[str, Any], name: str, path: str) -> int:
        field = _join(path, name)
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"expected an integer, got {_type_name(value)}")
        return value

    def boolean(self, table: dict[str, Any], name: str, path: str) -> bool:
        value = table[name]
        if not isinstance(value, bool):
            self.fail(_join(path, name), f"expected true or false, got {_type_name(value)}")
        return value

    def tables(
        self, table: dict[str, Any], name: str, path: str, *, allow_empty: bool
    ) -> list[dict[str, Any]]:
        field = _join(path, name)
        value = table.get(name, [])
        if not isinstance(value, list):
            self.fail(field, f"expected an array of tables, got {_type_name(value)}")
        for index, entry in enumerate(value):
            if not isinstance(entry, dict):
                self.fail(f"{field}[{index}]", f"expected a table, got {_type_name(entry)}")
        if not value and not allow_empty:
            self.fail(field, "must contain at least one entry")
        return value

    def key(self, table: dict[str, Any], name: str, path: str) -> str:
        value = self.text(table, name, path)
        if not KEY_PATTERN.fullmatch(value):
            self.fail(
                _join(path, name),
                f"{value!r} is not a valid key (lower-case letter, then up to 39 "
                "lower-case letters, digits or underscores)",
            )
        return value

    def choice(self, table: dict[str, Any], name: str, path: str, options: tuple[str, ...]) -> str:
        value = self.text(table, name, path)
        if value not in options:
            self.fail(_join(path, name), f"{value!r} is not one of: {', '.join(options)}")
        return value


def _read_anchors(r: _Reader, raw: dict[str, Any], path: str) -> tuple[Anchor, ...]:
    anchors: list[Anchor] = []
    for index, entry in enumerate(r.tables(raw, "anchors", path, allow_empty=False)):
        apath = f"{path}.anchors[{index}]"
        r.check_fields(entry, apath, _ANCHOR_FIELDS)
        score = r.integer(entry, "score", apath)
        if score < 0:
            r.fail(f"{apath}.score", f"scores must not be negative, got {score}")
        if any(a.score == score for a in anchors):
            r.fail(f"{apath}.score", f"duplicate score {score}")
        if anchors and score < anchors[-1].score:
            r.fail(f"{apath}.score", "anchors must be listed in ascending order of score")
        anchors.append(Anchor(score=score, text=r.text(entry, "text", apath)))
    return tuple(anchors)


def _read_measurement(
    r: _Reader, raw: dict[str, Any], path: str, allowed: tuple[int, ...]
) -> Measurement:
    mpath = f"{path}.measurement"
    if not isinstance(raw, dict):
        r.fail(mpath, f"expected a table, got {_type_name(raw)}")
    r.check_fields(raw, mpath, _MEASUREMENT_FIELDS)
    key = r.key(raw, "key", mpath)
    label = r.text(raw, "label", mpath)
    unit = r.text(raw, "unit", mpath)
    minimum = r.integer(raw, "minimum", mpath)
    maximum = r.integer(raw, "maximum", mpath)
    if minimum >= maximum:
        r.fail(f"{mpath}.maximum", f"must be greater than minimum ({minimum}), got {maximum}")

    rules: list[PointsRule] = []
    raw_points = r.tables(raw, "points", mpath, allow_empty=False)
    for index, entry in enumerate(raw_points):
        ppath = f"{mpath}.points[{index}]"
        r.check_fields(entry, ppath, _POINTS_FIELDS)
        score = r.integer(entry, "score", ppath)
        if score not in allowed:
            allowed_text = ", ".join(str(s) for s in allowed)
            r.fail(
                f"{ppath}.score",
                f"{score} is not an allowed score for this item (allowed: {allowed_text})",
            )
        last = index == len(raw_points) - 1
        # Exactly one open-ended rule, at the end, so every value in range gets points.
        if "up_to" not in entry:
            if not last:
                r.fail(f"{ppath}.up_to", "only the last rule may omit up_to")
            rules.append(PointsRule(up_to=None, score=score))
            continue
        if last:
            r.fail(f"{ppath}.up_to", "the last rule must omit up_to so it covers all higher values")
        up_to = r.integer(entry, "up_to", ppath)
        if not minimum <= up_to < maximum:
            r.fail(f"{ppath}.up_to", f"{up_to} is outside {minimum}..{maximum - 1}")
        if rules and rules[-1].up_to is not None and up_to <= rules[-1].up_to:
            r.fail(
                f"{ppath}.up_to", f"must be greater than the previous rule's ({rules[-1].up_to})"
            )
        rules.append(PointsRule(up_to=up_to, score=score))
    return Measurement(
        key=key, label=label, unit=unit, minimum=minimum, maximum=maximum, points=tuple(rules)
    )


def _read_items(r: _Reader, data: dict[str, Any]) -> tuple[Item, ...]:
    items: list[Item] = []
    seen: dict[str, str] = {}  # form field name -> where it was defined
    for index, raw in enumerate(r.tables(data, "items", "", allow_empty=False)):
        path = f"items[{index}]"
        r.check_fields(raw, path, _ITEM_FIELDS)
        key = r.key(raw, "key", path)
        _claim_field_name(r, seen, key, f"{path}.key")
        label = r.text(raw, "label", path)
        prompt = r.text(raw, "prompt", path, default="")
        respondent = r.choice(raw, "respondent", path, ITEM_RESPONDENTS)
        domain = r.choice(raw, "domain", path, DOMAINS)
        anchors = _read_anchors(r, raw, path)
        measurement = None
        if "measurement" in raw:
            measurement = _read_measurement(
                r, raw["measurement"], path, tuple(a.score for a in anchors)
            )
            _claim_field_name(r, seen, measurement.key, f"{path}.measurement.key")
        items.append(
            Item(
                key=key,
                label=label,
                prompt=prompt,
                respondent=respondent,
                domain=domain,
                anchors=anchors,
                measurement=measurement,
            )
        )
    return tuple(items)


def _claim_field_name(r: _Reader, seen: dict[str, str], name: str, field: str) -> None:
    # Item and measurement keys share one form namespace with the fixed form fields.
    if name in RESERVED_FIELD_NAMES:
        r.fail(field, f"{name!r} is reserved for a form field of its own")
    if name in seen:
        r.fail(field, f"duplicate key {name!r} (already used at {seen[name]})")
    seen[name] = field


def _read_bands(
    r: _Reader, data: dict[str, Any], total_min: int, total_max: int
) -> tuple[Band, ...]:
    bands: list[Band] = []
    for index, raw in enumerate(r.tables(data, "bands", "", allow_empty=True)):
        path = f"bands[{index}]"
        r.check_fields(raw, path, _BAND_FIELDS)
        low = r.integer(raw, "low", path)
        high = r.integer(raw, "high", path)
        label = r.text(raw, "label", path)
        citation = r.text(raw, "citation", path, default="")
        if low > high:
            r.fail(f"{path}.low", f"low ({low}) is greater than high ({high})")
        if low < total_min:
            r.fail(f"{path}.low", f"{low} is below the total range {total_min}–{total_max}")
        if high > total_max:
            r.fail(f"{path}.high", f"{high} is above the total range {total_min}–{total_max}")
        # Gaps are allowed (COWS has no label for 0–4); overlaps and disorder are not.
        if bands and low <= bands[-1].high:
            r.fail(
                f"{path}.low",
                f"band {low}–{high} overlaps or comes before band "
                f"{bands[-1].low}–{bands[-1].high}; list bands in ascending, non-overlapping order",
            )
        bands.append(Band(low=low, high=high, label=label, citation=citation))
    return tuple(bands)


def _parse(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ScaleDefinitionError(str(path), "(file)", f"invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScaleDefinitionError(str(path), "(file)", f"cannot read file: {exc}") from None


def load_scale_file(path: Path) -> Scale:
    """Read and validate one definition file.

    :raise ScaleDefinitionError: naming the file and the dotted path of the first bad field.
    """
    path = Path(path)
    data = _parse(path)
    r = _Reader(str(path))
    r.check_fields(data, "", _SCALE_FIELDS)

    key = r.key(data, "key", "")
    if key != path.stem:
        r.fail("key", f"{key!r} must equal the file name without .toml ({path.stem!r})")
    name = r.text(data, "name", "")
    short_name = r.text(data, "short_name", "")
    version = r.text(data, "version", "")
    citation = r.text(data, "citation", "")
    respondent = r.choice(data, "respondent", "", SCALE_RESPONDENTS)
    recall_period = r.text(data, "recall_period", "")
    instructions = r.text(data, "instructions", "")
    custom = r.boolean(data, "custom", "")
    withdrawal_measure = r.boolean(data, "withdrawal_measure", "")
    display_order = r.integer(data, "display_order", "")
    total_min = r.integer(data, "total_min", "")
    total_max = r.integer(data, "total_max", "")
    band_note = r.text(data, "band_note", "", default="")

    items = _read_items(r, data)
    # The stated range is a cross-check on the anchors: a mistyped anchor score shows up here.
    expected_min = sum(item.min_score for item in items)
    expected_max = sum(item.max_score for item in items)
    if total_min != expected_min:
        r.fail(
            "total_min",
            f"must equal the sum of the item minimums ({expected_min}), got {total_min}",
        )
    if total_max != expected_max:
        r.fail(
            "total_max",
            f"must equal the sum of the item maximums ({expected_max}), got {total_max}",
        )
    bands = _read_bands(r, data, total_min, total_max)

    return Scale(
        key=key,
        name=name,
        short_name=short_name,
        version=version,
        citation=citation,
        respondent=respondent,
        recall_period=recall_period,
        instructions=instructions,
        custom=custom,
        display_order=display_order,
        total_min=total_min,
        total_max=total_max,
        bands=bands,
        band_note=band_note,
        items=items,
        source_file=str(path),
        withdrawal_measure=withdrawal_measure,
    )


def load_scales(*extra_dirs: Path) -> dict[str, Scale]:
    """Load the built-in scales, then every ``*.toml`` in each extra directory.

    :return: ``{key: Scale}`` ordered by ``(display_order, key)``.
    :raise ScaleDefinitionError: for the first bad file, a missing directory, or a scale
        key defined twice (naming the second file).
    """
    scales: dict[str, Scale] = {}
    for directory in (BUILTIN_DIR, *(Path(d) for d in extra_dirs)):
        if not directory.is_dir():
            raise ScaleDefinitionError(str(directory), "(directory)", "not a directory")
        # Sorted so the "second file" of a duplicate is the same on every machine.
        for path in sorted(directory.glob("*.toml")):
            scale = load_scale_file(path)
            if scale.key in scales:
                raise ScaleDefinitionError(
                    str(path),
                    "key",
                    f"duplicate scale key {scale.key!r} (already defined in "
                    f"{scales[scale.key].source_file})",
                )
            scales[scale.key] = scale
    ordered = sorted(scales.values(), key=lambda s: (s.display_order, s.key))
    return {scale.key: scale for scale in ordered}
