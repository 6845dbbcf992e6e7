"""Scale definitions, scoring and the definition loader (pure Python, no Flask).

The expected values below are copied by hand from shared/reference/scales.md, never
derived from the definition files, so a wrong edit to a file fails here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from clinic_log.scales import (
    BUILTIN_DIR,
    NOT_ASSESSED_REASONS,
    Anchor,
    Item,
    Measurement,
    PointsRule,
    Scale,
    ScaleDefinitionError,
    ScoreError,
    load_scale_file,
    load_scales,
)

# --------------------------------------------------------------------------- golden data

SOWS_KEYS = (
    "anxious", "yawning", "perspiring", "eyes_tearing", "nose_running", "gooseflesh",
    "shaking", "hot_flashes", "cold_flashes", "bones_muscles_ache", "restless", "nauseous",
    "feel_like_vomiting", "muscles_twitch", "stomach_cramps", "craving_to_use",
)  # fmt: skip
OOWS_KEYS = (
    "yawning", "rhinorrhoea", "piloerection", "perspiration", "lacrimation", "tremor_hands",
    "mydriasis", "hot_cold_flushes", "restlessness", "vomiting", "muscle_twitches",
    "abdominal_cramps", "anxiety",
)  # fmt: skip
GOSSOP_KEYS = (
    "feeling_sick", "stomach_cramps", "muscle_spasms", "feeling_cold", "heart_pounding",
    "muscular_tension", "aches_pains", "yawning", "runny_eyes", "insomnia",
)  # fmt: skip
GAD7_KEYS = (
    "nervous", "cannot_stop_worrying", "worry_too_much", "trouble_relaxing", "restless",
    "irritable", "afraid",
)  # fmt: skip
NRS_KEYS = ("anxiety", "aches", "insomnia", "irritability")

# scale -> item -> published allowed scores, in published item order.
EXPECTED_ALLOWED: dict[str, dict[str, tuple[int, ...]]] = {
    "cows": {
        "resting_pulse": (0, 1, 2, 4),
        "sweating": (0, 1, 2, 3, 4),
        "restlessness": (0, 1, 3, 5),
        "pupil_size": (0, 1, 2, 5),
        "bone_joint_aches": (0, 1, 2, 4),
        "runny_nose_tearing": (0, 1, 2, 4),
        "gi_upset": (0, 1, 2, 3, 5),
        "tremor": (0, 1, 2, 4),
        "yawning": (0, 1, 2, 4),
        "anxiety_irritability": (0, 1, 2, 4),
        "gooseflesh": (0, 3, 5),
    },
    "sows": {key: (0, 1, 2, 3, 4) for key in SOWS_KEYS},
    "oows": {key: (0, 1) for key in OOWS_KEYS},
    "sows_gossop": {key: (0, 1, 2, 3) for key in GOSSOP_KEYS},
    "gad7": {key: (0, 1, 2, 3) for key in GAD7_KEYS},
    "symptom_nrs": {key: (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10) for key in NRS_KEYS},
}

EXPECTED_TOTALS = {
    "cows": (0, 48),
    "sows": (0, 64),
    "oows": (0, 13),
    "sows_gossop": (0, 30),
    "gad7": (0, 21),
    "symptom_nrs": (0, 40),
}

ALL_ITEMS = [
    (scale, item, allowed)
    for scale, items in EXPECTED_ALLOWED.items()
    for item, allowed in items.items()
]
ALL_VALUES = [(scale, item, value) for scale, item, allowed in ALL_ITEMS for value in allowed]
DISALLOWED_VALUES = [
    (scale, item, value)
    for scale, item, allowed in ALL_ITEMS
    for value in sorted({-1, max(allowed) + 1} | (set(range(max(allowed))) - set(allowed)))
]

COWS_OBSERVED = {
    "resting_pulse", "sweating", "restlessness", "pupil_size", "runny_nose_tearing", "tremor",
    "yawning", "gooseflesh",
}  # fmt: skip
COWS_REPORTED = {"bone_joint_aches", "gi_upset", "anxiety_irritability"}

DOSING = re.compile(
    r"\b(dose|doses|dosing|dosage|mg|mcg|medication|buprenorphine|methadone|naloxone"
    r"|induction|taper|titrat\w*)\b",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def scales() -> dict[str, Scale]:
    return load_scales()


def zeros(scale: Scale) -> dict[str, int | None]:
    return dict.fromkeys(scale.item_keys, 0)


# --------------------------------------------------------------------------- built-ins


def test_builtin_scales_load_in_display_order(scales):
    assert list(scales) == ["cows", "sows", "oows", "sows_gossop", "gad7", "symptom_nrs"]
    assert [s.display_order for s in scales.values()] == [10, 20, 30, 40, 50, 60]


@pytest.mark.parametrize("key", list(EXPECTED_ALLOWED))
def test_each_builtin_file_loads_on_its_own(key):
    scale = load_scale_file(BUILTIN_DIR / f"{key}.toml")
    assert scale.key == key
    assert scale.version == "1"
    assert scale.source_file.endswith(f"{key}.toml")
    assert scale.name and scale.short_name and scale.citation
    assert scale.recall_period and scale.instructions


@pytest.mark.parametrize("key", list(EXPECTED_ALLOWED))
def test_items_are_in_published_order(scales, key):
    assert scales[key].item_keys == tuple(EXPECTED_ALLOWED[key])


@pytest.mark.parametrize(("scale_key", "item_key", "allowed"), ALL_ITEMS)
def test_item_allowed_scores_match_published_values(scales, scale_key, item_key, allowed):
    item = scales[scale_key].item(item_key)
    assert item.allowed_scores == allowed
    assert item.min_score == allowed[0]
    assert item.max_score == allowed[-1]


@pytest.mark.parametrize(("key", "expected"), EXPECTED_TOTALS.items())
def test_total_range(scales, key, expected):
    scale = scales[key]
    assert (scale.total_min, scale.total_max) == expected
    assert scale.score(dict.fromkeys(scale.item_keys, 0)).total == expected[0]
    maxima = {item.key: item.max_score for item in scale.items}
    assert scale.score(maxima).total == expected[1]


def test_custom_flag_only_on_symptom_nrs(scales):
    assert {k for k, s in scales.items() if s.custom} == {"symptom_nrs"}


def test_scale_respondents(scales):
    assert {k: s.respondent for k, s in scales.items()} == {
        "cows": "clinician",
        "sows": "patient",
        "oows": "clinician",
        "sows_gossop": "patient",
        "gad7": "patient",
        "symptom_nrs": "patient",
    }


def test_cows_mixes_observed_and_reported_items(scales):
    cows = scales["cows"]
    observed = {i.key for i in cows.items if i.respondent == "clinician_observed"}
    reported = {i.key for i in cows.items if i.respondent == "patient_reported"}
    assert observed == COWS_OBSERVED
    assert reported == COWS_REPORTED


@pytest.mark.parametrize(
    ("key", "respondent"),
    [
        ("sows", "patient_reported"),
        ("oows", "clinician_observed"),
        ("sows_gossop", "patient_reported"),
        ("gad7", "patient_reported"),
        ("symptom_nrs", "patient_reported"),
    ],
)
def test_single_respondent_scales(scales, key, respondent):
    assert {item.respondent for item in scales[key].items} == {respondent}


@pytest.mark.parametrize(
    ("scale_key", "item_key", "domain"),
    [
        ("cows", "anxiety_irritability", "anxiety"),
        ("cows", "bone_joint_aches", "aches"),
        ("sows", "anxious", "anxiety"),
        ("sows", "bones_muscles_ache", "aches"),
        ("sows", "craving_to_use", "craving"),
        ("oows", "anxiety", "anxiety"),
        ("sows_gossop", "aches_pains", "aches"),
        ("sows_gossop", "insomnia", "insomnia"),
        ("gad7", "nervous", "anxiety"),
        ("gad7", "afraid", "anxiety"),
        ("gad7", "irritable", "irritability"),
        ("symptom_nrs", "anxiety", "anxiety"),
        ("symptom_nrs", "aches", "aches"),
        ("symptom_nrs", "insomnia", "insomnia"),
        ("symptom_nrs", "irritability", "irritability"),
    ],
)
def test_tracked_domains_follow_reference_mapping(scales, scale_key, item_key, domain):
    assert scales[scale_key].item(item_key).domain == domain


@pytest.mark.parametrize(
    ("key", "anchors"),
    [
        ("sows", ["Not at all", "A little", "Moderately", "Quite a bit", "Extremely"]),
        ("sows_gossop", ["None", "Mild", "Moderate", "Severe"]),
        ("gad7", ["Not at all", "Several days", "More than half the days", "Nearly every day"]),
    ],
)
def test_uniform_anchor_texts(scales, key, anchors):
    for item in scales[key].items:
        assert [a.text for a in item.anchors] == anchors


def test_gad7_has_no_difficulty_item_and_no_not_at_all_sure(scales):
    gad7 = scales["gad7"]
    assert "difficulty" not in gad7.item_keys
    assert all("sure" not in a.text.lower() for i in gad7.items for a in i.anchors)


def test_oows_anchors_are_absent_and_present_with_criterion(scales):
    oows = scales["oows"]
    assert {item.key: item.anchor_text(1) for item in oows.items} == {
        "yawning": "Present: at least one yawn",
        "rhinorrhoea": "Present: three or more sniffs",
        "piloerection": "Present",
        "perspiration": "Present",
        "lacrimation": "Present",
        "tremor_hands": "Present",
        "mydriasis": "Present: pupils 3 mm or more",
        "hot_cold_flushes": "Present: shivering or huddling for warmth",
        "restlessness": "Present: frequent shifts of position",
        "vomiting": "Present",
        "muscle_twitches": "Present",
        "abdominal_cramps": "Present: holding stomach",
        "anxiety": "Present: mild to severe anxiety",
    }
    assert {item.anchor_text(0) for item in oows.items} == {"Absent"}


def test_sows_item_16_keeps_original_wording(scales):
    assert scales["sows"].item("craving_to_use").label == "I feel like shooting up now"


def test_symptom_nrs_items_and_anchors(scales):
    nrs = scales["symptom_nrs"]
    assert nrs.custom is True
    assert "custom" in nrs.name.lower()
    assert nrs.item_keys == ("anxiety", "aches", "insomnia", "irritability")
    for item in nrs.items:
        assert item.allowed_scores == tuple(range(11))
        assert item.anchor_text(0) == "None"
        assert item.anchor_text(10) == "Worst imaginable"
        assert [item.anchor_text(v) for v in range(1, 10)] == [str(v) for v in range(1, 10)]


def test_bands_are_published_descriptive_labels(scales):
    assert [(b.low, b.high, b.label) for b in scales["cows"].bands] == [
        (5, 12, "Mild"),
        (13, 24, "Moderate"),
        (25, 36, "Moderately severe"),
        (37, 48, "Severe"),
    ]
    assert [(b.low, b.high, b.label) for b in scales["gad7"].bands] == [
        (0, 4, "Minimal"),
        (5, 9, "Mild"),
        (10, 14, "Moderate"),
        (15, 21, "Severe"),
    ]


@pytest.mark.parametrize("key", ["sows", "oows", "sows_gossop", "symptom_nrs"])
def test_scales_without_published_bands_explain_why(scales, key):
    scale = scales[key]
    assert scale.bands == ()
    assert scale.band_note
    result = scale.score({k: scale.item(k).max_score for k in scale.item_keys})
    assert result.complete and result.band is None and result.band_label is None


def test_no_builtin_text_contains_dosing_wording(scales):
    def texts(obj):
        if isinstance(obj, str):
            yield obj
        elif dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                if not f.name.startswith("_"):
                    yield from texts(getattr(obj, f.name))
        elif isinstance(obj, tuple):
            for part in obj:
                yield from texts(part)

    for scale in scales.values():
        found = [t for t in texts(scale) if DOSING.search(t)]
        assert found == [], scale.key
    for path in BUILTIN_DIR.glob("*.toml"):
        assert not DOSING.search(path.read_text(encoding="utf-8")), path.name


# --------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(("scale_key", "item_key", "value"), ALL_VALUES)
def test_every_allowed_value_is_accepted(scales, scale_key, item_key, value):
    scale = scales[scale_key]
    answers = zeros(scale)
    answers[item_key] = value
    result = scale.score(answers)
    assert result.total == value
    assert result.complete is True
    assert result.not_assessed == ()


@pytest.mark.parametrize(("scale_key", "item_key", "value"), DISALLOWED_VALUES)
def test_disallowed_values_are_rejected_naming_the_item(scales, scale_key, item_key, value):
    scale = scales[scale_key]
    item = scale.item(item_key)
    answers = zeros(scale)
    answers[item_key] = value
    with pytest.raises(ScoreError) as excinfo:
        scale.score(answers)
    assert excinfo.value.item_key == item_key
    assert item.label in str(excinfo.value)
    allowed = ", ".join(str(v) for v in EXPECTED_ALLOWED[scale_key][item_key])
    assert f"(allowed: {allowed})" in str(excinfo.value)


@pytest.mark.parametrize(
    ("item_key", "value"),
    [
        ("gooseflesh", 1),
        ("gooseflesh", 2),
        ("gooseflesh", 4),
        ("restlessness", 2),
        ("restlessness", 4),
        ("pupil_size", 3),
        ("pupil_size", 4),
        ("gi_upset", 4),
        ("resting_pulse", 3),
        ("tremor", 3),
        ("yawning", 3),
        ("anxiety_irritability", 3),
        ("bone_joint_aches", 3),
        ("runny_nose_tearing", 3),
    ],
)
def test_cows_in_range_gaps_are_rejected(scales, item_key, value):
    cows = scales["cows"]
    answers = zeros(cows)
    answers[item_key] = value
    with pytest.raises(ScoreError) as excinfo:
        cows.score(answers)
    assert excinfo.value.item_key == item_key


def test_score_error_message_names_label_and_allowed_values(scales):
    answers = zeros(scales["cows"])
    answers["gooseflesh"] = 2
    with pytest.raises(ScoreError) as excinfo:
        scales["cows"].score(answers)
    assert str(excinfo.value) == "2 is not an allowed score for Gooseflesh skin (allowed: 0, 3, 5)"
    assert excinfo.value.message == str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


COWS_BOUNDARIES = [
    (0, None),
    (4, None),
    (5, "Mild"),
    (12, "Mild"),
    (13, "Moderate"),
    (24, "Moderate"),
    (25, "Moderately severe"),
    (36, "Moderately severe"),
    (37, "Severe"),
    (48, "Severe"),
]
GAD7_BOUNDARIES = [
    (0, "Minimal"),
    (4, "Minimal"),
    (5, "Mild"),
    (9, "Mild"),
    (10, "Moderate"),
    (14, "Moderate"),
    (15, "Severe"),
    (21, "Severe"),
]


def answers_totalling(scale: Scale, total: int) -> dict[str, int | None]:
    """Greedy fill from the largest allowed scores; every total used below is reachable."""
    answers: dict[str, int | None] = {}
    remaining = total
    for item in scale.items:
        choice = max(s for s in item.allowed_scores if s <= remaining)
        answers[item.key] = choice
        remaining -= choice
    assert remaining == 0, f"{total} not reachable greedily"
    return answers


@pytest.mark.parametrize(
    ("scale_key", "total", "label"),
    [("cows", t, lab) for t, lab in COWS_BOUNDARIES]
    + [("gad7", t, lab) for t, lab in GAD7_BOUNDARIES],
)
def test_band_boundaries(scales, scale_key, total, label):
    scale = scales[scale_key]
    result = scale.score(answers_totalling(scale, total))
    assert result.total == total
    assert result.complete is True
    assert result.band_label == label
    assert (scale.band_for(total).label if scale.band_for(total) else None) == label


def test_band_for_outside_every_band_is_none(scales):
    assert scales["cows"].band_for(-1) is None
    assert scales["cows"].band_for(49) is None


@pytest.mark.parametrize("key", list(EXPECTED_ALLOWED))
def test_incomplete_total_is_lower_bound_without_band(scales, key):
    scale = scales[key]
    answers: dict[str, int | None] = {item.key: item.max_score for item in scale.items}
    first, last = scale.item_keys[0], scale.item_keys[-1]
    answers[last] = None
    answers[first] = None
    result = scale.score(answers)
    expected = sum(item.max_score for item in scale.items[1:-1])
    assert result.total == expected
    assert result.complete is False
    assert result.band is None
    assert result.band_label is None
    assert result.floor == scale.band_for(expected)  # at most a floor, never the band
    assert result.not_assessed == (first, last)  # item order, not answer order


def test_incomplete_cows_in_a_band_range_still_gets_no_band(scales):
    cows = scales["cows"]
    answers = answers_totalling(cows, 30)  # pulse scores 4 here
    answers["resting_pulse"] = None
    result = cows.score(answers)
    assert result.total == 26  # would be "Moderately severe" if complete
    assert result.complete is False
    assert result.band is None
    assert result.not_assessed == ("resting_pulse",)
    # The true total is 26 or more, so "Moderately severe" is certain as a floor.
    assert result.floor.label == "Moderately severe"


def test_an_incomplete_cows_of_43_is_at_least_severe(scales):
    cows = scales["cows"]
    answers: dict[str, int | None] = {item.key: item.max_score for item in cows.items}  # 48
    answers["resting_pulse"] = None  # 4 points not assessed
    answers["sweating"] = 3  # one point less: the recorded items add up to 43
    result = cows.score(answers)
    assert (result.total, result.complete, result.band) == (43, False, None)
    assert result.floor.label == "Severe"


@pytest.mark.parametrize(
    ("total", "complete", "floor"),
    [
        (0, False, None),  # reaches no band: "Incomplete"
        (4, False, None),
        (5, False, "Mild"),  # the lowest total of a band is already that band
        (12, False, "Mild"),
        (13, False, "Moderate"),
        (36, False, "Moderately severe"),
        (37, False, "Severe"),
        (48, False, "Severe"),
        (30, True, None),  # a complete total has a band, never a floor
    ],
)
def test_floor_is_the_band_a_lower_bound_has_reached(scales, total, complete, floor):
    found = scales["cows"].floor_for(total, complete)
    assert (found.label if found else None) == floor


def test_scales_without_bands_have_no_floor(scales):
    for key in ("sows", "oows", "sows_gossop", "symptom_nrs"):
        assert scales[key].floor_for(scales[key].total_max, False) is None


@pytest.mark.parametrize("key", list(EXPECTED_ALLOWED))
def test_all_items_not_assessed(scales, key):
    scale = scales[key]
    result = scale.score(dict.fromkeys(scale.item_keys))
    assert result.total == 0
    assert result.complete is False
    assert result.band is None
    assert result.not_assessed == scale.item_keys


def test_missing_item_is_rejected(scales):
    answers = zeros(scales["cows"])
    del answers["tremor"]
    with pytest.raises(ScoreError) as excinfo:
        scales["cows"].score(answers)
    assert excinfo.value.item_key == "tremor"


def test_unknown_item_is_rejected(scales):
    answers = zeros(scales["gad7"])
    answers["difficulty"] = 0
    with pytest.raises(ScoreError) as excinfo:
        scales["gad7"].score(answers)
    assert excinfo.value.item_key == "difficulty"


@pytest.mark.parametrize("bad", [True, False, 1.0, "1", b"1", [1]])
def test_non_integer_scores_are_rejected(scales, bad):
    answers: dict[str, object] = dict(zeros(scales["sows"]))
    answers["anxious"] = bad
    with pytest.raises(ScoreError) as excinfo:
        scales["sows"].score(answers)  # type: ignore[arg-type]
    assert excinfo.value.item_key == "anxious"


def test_item_lookup_and_anchor_text(scales):
    cows = scales["cows"]
    assert cows.item("gooseflesh").anchor_text(5) == "Prominent piloerection"
    with pytest.raises(KeyError):
        cows.item("no_such_item")
    with pytest.raises(ScoreError):
        cows.item("gooseflesh").anchor_text(4)


def test_not_assessed_reasons():
    assert NOT_ASSESSED_REASONS == {
        "asleep": "Asleep",
        "unable_to_communicate": "Unable to communicate",
        "not_measured": "Not measured",
    }


def test_scale_objects_are_immutable(scales):
    with pytest.raises(dataclasses.FrozenInstanceError):
        scales["cows"].name = "changed"  # type: ignore[misc]


# --------------------------------------------------------------------------- pulse


def test_cows_pulse_measurement_definition(scales):
    measurement = scales["cows"].item("resting_pulse").measurement
    assert measurement is not None
    assert (measurement.key, measurement.unit) == ("resting_pulse_bpm", "beats per minute")
    assert (measurement.minimum, measurement.maximum) == (20, 250)
    assert measurement.points == (
        PointsRule(80, 0),
        PointsRule(100, 1),
        PointsRule(120, 2),
        PointsRule(None, 4),
    )
    assert all(item.measurement is None for item in scales["cows"].items[1:])


@pytest.mark.parametrize(
    ("bpm", "points"),
    [(20, 0), (80, 0), (81, 1), (100, 1), (101, 2), (120, 2), (121, 4), (250, 4)],
)
def test_cows_pulse_points_boundaries(scales, bpm, points):
    assert scales["cows"].item("resting_pulse").measurement.points_for(bpm) == points


@pytest.mark.parametrize("bpm", [19, 251, -80, 0, True, 80.0, "80"])
def test_cows_pulse_out_of_range_or_wrong_type_is_rejected(scales, bpm):
    with pytest.raises(ScoreError) as excinfo:
        scales["cows"].item("resting_pulse").measurement.points_for(bpm)
    assert excinfo.value.item_key == "resting_pulse_bpm"


def test_hand_built_items_behave_like_loaded_ones():
    measurement = Measurement("m", "M", "u", 0, 10, (PointsRule(5, 0), PointsRule(None, 2)))
    item = Item(
        "x", "X", "", "patient_reported", "other", (Anchor(2, "b"), Anchor(0, "a")), measurement
    )
    assert item.allowed_scores == (0, 2)
    assert measurement.points_for(6) == 2


# --------------------------------------------------------------------------- loader errors

COWS_TEXT = (BUILTIN_DIR / "cows.toml").read_text(encoding="utf-8")

MINIMAL = """\
key = "{key}"
name = "Tiny test scale"
short_name = "Tiny"
version = "1"
citation = "Synthetic test definition"
respondent = "patient"
recall_period = "Now"
instructions = "Rate it."
custom = true
withdrawal_measure = false
display_order = {order}
total_min = 0
total_max = 1

[[items]]
key = "thing"
label = "Thing"
respondent = "patient_reported"
domain = "other"

[[items.anchors]]
score = 0
text = "No"

[[items.anchors]]
score = 1
text = "Yes"
"""


def broken_cows(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    assert old in COWS_TEXT, f"test setup: {old!r} not in cows.toml"
    path = tmp_path / "cows.toml"
    path.write_text(COWS_TEXT.replace(old, new, count), encoding="utf-8")
    return path


PULSE_LAST_RULE = "[[items.measurement.points]]\nscore = 4\n"

# A table reads better than formatter-exploded tuples here.
# fmt: off
BROKEN_CASES = [
    # (id, old, new, field, message fragment)
    ("missing_field", 'short_name = "COWS"\n', "", "short_name", "required field is missing"),
    ("missing_item_field", 'label = "Tremor"\n', "", "items[7].label", "missing"),
    ("unknown_field", "band_note =", "band_notes =", "band_notes", "unknown field"),
    ("unknown_item_field", 'prompt = "Measured', 'promt = "Measured', "items[0].promt",
     "unknown field"),
    ("unknown_anchor_field", 'text = "Skin is smooth"', 'txt = "Skin is smooth"',
     "items[10].anchors[0].txt", "unknown field"),
    ("wrong_type_int", "display_order = 10", 'display_order = "10"', "display_order",
     "expected an integer"),
    ("bool_is_not_int", "total_min = 0", "total_min = false", "total_min", "expected an integer"),
    ("wrong_type_bool", "custom = false", "custom = 0", "custom", "expected true or false"),
    ("wrong_type_string", 'version = "1"', "version = 1", "version", "expected a string"),
    ("wrong_type_anchor_score", "score = 5\ntext = \"Prominent", "score = 5.0\ntext = \"Prominent",
     "items[10].anchors[2].score", "expected an integer"),
    ("bad_scale_key", 'key = "cows"', 'key = "COWS"', "key", "not a valid key"),
    ("bad_item_key", 'key = "sweating"', 'key = "2sweating"', "items[1].key", "not a valid key"),
    ("long_item_key", 'key = "sweating"', 'key = "' + "s" * 41 + '"', "items[1].key",
     "not a valid key"),
    ("duplicate_item_key", 'key = "sweating"', 'key = "resting_pulse"', "items[1].key",
     "duplicate"),
    ("reserved_item_key", 'key = "sweating"', 'key = "notes"', "items[1].key", "reserved"),
    ("reserved_item_key_csrf", 'key = "tremor"', 'key = "csrf_token"', "items[7].key",
     "reserved"),
    ("measurement_key_clash", 'key = "resting_pulse_bpm"', 'key = "resting_pulse"',
     "items[0].measurement.key", "duplicate"),
    ("measurement_key_reserved", 'key = "resting_pulse_bpm"', 'key = "observed_at"',
     "items[0].measurement.key", "reserved"),
    ("bad_scale_respondent", 'respondent = "clinician"\n', 'respondent = "nurse"\n',
     "respondent", "not one of"),
    ("bad_item_respondent", 'respondent = "clinician_observed"', 'respondent = "observer"',
     "items[0].respondent", "not one of"),
    ("bad_domain", 'domain = "autonomic"', 'domain = "cardiac"', "items[0].domain", "not one of"),
    ("negative_anchor_score", "score = 5\ntext = \"Prominent", "score = -5\ntext = \"Prominent",
     "items[10].anchors[2].score", "negative"),
    ("duplicate_anchor_score", "score = 3\ntext = \"Piloerection",
     "score = 0\ntext = \"Piloerection", "items[10].anchors[1].score", "duplicate score"),
    ("unsorted_anchor_scores", "score = 3\ntext = \"Piloerection",
     "score = 6\ntext = \"Piloerection", "items[10].anchors[2].score", "ascending"),
    ("empty_anchor_text", 'text = "Prominent piloerection"', 'text = ""',
     "items[10].anchors[2].text", "must not be empty"),
    ("no_anchors", "[[items.anchors]]\nscore = 0\ntext = \"Skin is smooth\"\n\n"
     "[[items.anchors]]\nscore = 3\ntext = \"Piloerection of skin can be felt or hairs "
     "standing up on arms\"\n\n[[items.anchors]]\nscore = 5\ntext = \"Prominent piloerection\"\n",
     "anchors = []\n", "items[10].anchors", "at least one"),
    ("total_max_mismatch", "total_max = 48", "total_max = 47", "total_max", "sum of the item"),
    ("total_min_mismatch", "total_min = 0", "total_min = 1", "total_min", "sum of the item"),
    ("anchor_change_breaks_total", 'score = 5\ntext = "Prominent',
     'score = 6\ntext = "Prominent', "total_max", "(49)"),
    ("overlapping_bands", "low = 13", "low = 12", "bands[1].low", "overlaps"),
    ("band_above_range", "high = 48", "high = 49", "bands[3].high", "above the total range"),
    ("band_below_range", "low = 5", "low = -1", "bands[0].low", "below the total range"),
    ("band_low_above_high", "high = 12", "high = 4", "bands[0].low", "greater than high"),
    ("empty_band_label", 'label = "Mild"', 'label = " "', "bands[0].label", "must not be empty"),
    ("points_not_increasing", "up_to = 100", "up_to = 80",
     "items[0].measurement.points[1].up_to", "greater than the previous"),
    ("points_score_not_allowed", "up_to = 120\nscore = 2", "up_to = 120\nscore = 3",
     "items[0].measurement.points[2].score", "not an allowed score"),
    ("points_middle_rule_open", "up_to = 100\n", "", "items[0].measurement.points[1].up_to",
     "only the last rule"),
    ("points_last_rule_bounded", PULSE_LAST_RULE, PULSE_LAST_RULE + "up_to = 200\n",
     "items[0].measurement.points[3].up_to", "must omit up_to"),
    ("points_up_to_out_of_range", "up_to = 80", "up_to = 10",
     "items[0].measurement.points[0].up_to", "outside"),
    ("measurement_min_not_below_max", "maximum = 250", "maximum = 20",
     "items[0].measurement.maximum", "greater than minimum"),
    ("measurement_unknown_field", 'unit = "beats per minute"', 'units = "beats per minute"',
     "items[0].measurement.units", "unknown field"),
    ("dosing_in_instructions", 'instructions = "For each item',
     'instructions = "Check the dose. For each item', "instructions",
     "dosing or medication wording is not allowed"),
    ("dosing_in_band_label", 'label = "Severe"', 'label = "Severe: start induction"',
     "bands[3].label", "dosing or medication wording"),
    ("dosing_in_anchor", 'text = "Prominent piloerection"', 'text = "Give 4 MG"',
     "items[10].anchors[2].text", "dosing or medication wording"),
    ("dosing_in_prompt", 'prompt = "Piloerection."', 'prompt = "Titrated response."',
     "items[10].prompt", "dosing or medication wording"),
    ("dosing_in_band_note", 'band_note = "Totals', 'band_note = "Methadone totals',
     "band_note", "dosing or medication wording"),
    ("dosing_in_item_label", 'label = "Tremor"', 'label = "Tremor after medication"',
     "items[7].label", "dosing or medication wording"),
    ("invalid_toml", 'key = "cows"', 'key = "cows', "(file)", "invalid TOML"),
]
# fmt: on


@pytest.mark.parametrize(
    ("old", "new", "field", "fragment"),
    [case[1:] for case in BROKEN_CASES],
    ids=[case[0] for case in BROKEN_CASES],
)
def test_broken_definition_names_file_and_field(tmp_path, old, new, field, fragment):
    path = broken_cows(tmp_path, old, new)
    with pytest.raises(ScaleDefinitionError) as excinfo:
        load_scale_file(path)
    error = excinfo.value
    assert error.file == str(path)
    assert error.field == field
    assert fragment in error.message
    assert str(error) == f"{path}: {field}: {error.message}"
    assert "cows.toml" in str(error)


def test_broken_definition_in_extra_dir_stops_load_scales(tmp_path):
    broken_cows(tmp_path, "total_max = 48", "total_max = 47")
    with pytest.raises(ScaleDefinitionError) as excinfo:
        load_scales(tmp_path)
    assert excinfo.value.field == "total_max"


def test_key_must_equal_file_stem(tmp_path):
    path = tmp_path / "other.toml"
    path.write_text(COWS_TEXT, encoding="utf-8")
    with pytest.raises(ScaleDefinitionError) as excinfo:
        load_scale_file(path)
    assert excinfo.value.field == "key"
    assert "other.toml" in str(excinfo.value)


def test_extra_dir_adds_scales_in_display_order(tmp_path):
    (tmp_path / "tiny.toml").write_text(MINIMAL.format(key="tiny", order=15), encoding="utf-8")
    (tmp_path / "last.toml").write_text(MINIMAL.format(key="last", order=99), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a definition", encoding="utf-8")
    scales = load_scales(tmp_path)
    assert list(scales) == [
        "cows", "tiny", "sows", "oows", "sows_gossop", "gad7", "symptom_nrs", "last",
    ]  # fmt: skip
    tiny = scales["tiny"]
    assert tiny.bands == () and tiny.band_note == ""
    assert tiny.item("thing").prompt == ""
    assert tiny.score({"thing": 1}).total == 1


def test_minimal_scale_without_items_is_rejected(tmp_path):
    text = MINIMAL.format(key="tiny", order=1).split("[[items]]")[0] + "items = []\n"
    path = tmp_path / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScaleDefinitionError) as excinfo:
        load_scale_file(path)
    assert excinfo.value.field == "items"


def test_items_must_be_an_array_of_tables(tmp_path):
    text = MINIMAL.format(key="tiny", order=1).split("[[items]]")[0] + "items = 3\n"
    path = tmp_path / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScaleDefinitionError) as excinfo:
        load_scale_file(path)
    assert excinfo.value.field == "items"
    assert "expected an array of tables" in excinfo.value.message


def test_duplicate_scale_key_across_two_dirs_names_second_file(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "tiny.toml").write_text(MINIMAL.format(key="tiny", order=1), encoding="utf-8")
    (second / "tiny.toml").write_text(MINIMAL.format(key="tiny", order=2), encoding="utf-8")
    with pytest.raises(ScaleDefinitionError) as excinfo:
        load_scales(first, second)
    assert excinfo.value.file == str(second / "tiny.toml")
    assert excinfo.value.field == "key"
    assert str(first / "tiny.toml") in excinfo.value.message


def test_duplicate_of_builtin_scale_key_is_rejected(tmp_path):
    (tmp_path / "cows.toml").write_text(COWS_TEXT, encoding="utf-8")
    with pytest.raises(ScaleDefinitionError) as excinfo:
        load_scales(tmp_path)
    assert excinfo.value.file == str(tmp_path / "cows.toml")
    assert "duplicate scale key 'cows'" in excinfo.value.message


def test_missing_extra_dir_is_rejected(tmp_path):
    with pytest.raises(ScaleDefinitionError) as excinfo:
        load_scales(tmp_path / "nope")
    assert "nope" in str(excinfo.value)


def test_scale_definition_error_attributes():
    error = ScaleDefinitionError("x.toml", "items[3].anchors[1].score", "bad")
    assert (error.file, error.field, error.message) == (
        "x.toml",
        "items[3].anchors[1].score",
        "bad",
    )
    assert str(error) == "x.toml: items[3].anchors[1].score: bad"


@pytest.mark.parametrize(
    ("total", "complete", "not_assessed", "text", "ranked"),
    [
        (43, False, 1, "at least Severe — incomplete, 1 item not assessed", "Severe"),
        (13, False, 2, "at least Moderate — incomplete, 2 items not assessed", "Moderate"),
        (3, False, 1, "Incomplete", None),
        (30, True, 0, "Moderately severe", "Moderately severe"),
        (2, True, 0, "No published band", None),
    ],
)
def test_severity_reads_as_band_floor_or_incomplete(
    scales, total, complete, not_assessed, text, ranked
):
    severity = scales["cows"].severity(total, complete, not_assessed)
    assert severity.text == text
    assert (severity.ranked_band.label if severity.ranked_band else None) == ranked
    assert severity.band is None or complete  # never a band for a lower bound
