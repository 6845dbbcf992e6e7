"""Recording an assessment on each scale, driven over HTTP as a clinician would: open the form,
read the CSRF token, the submission key and the default time from it, answer, submit.

Every request runs in its own application context (the conftest client sees to it): the ``world``
fixture keeps one app context pushed for the whole test, and Flask reuses a pushed context for
requests, which would share ``g`` (the logged-in user, the CSRF token) and the database session
between the test and every browser.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from conftest import Browser
from pages import checked, field_errors, input_val, inputs, text_of, textarea
from sqlalchemy import func, select

from clinic_log.assessments import services
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, Episode, ItemScore
from clinic_log.patients.services import create_patient, end_episode
from clinic_log.scales import NOT_ASSESSED_REASONS, load_scales
from clinic_log.timeutil import format_local, input_value, to_local
from clinic_log.web import NO_ADVICE_NOTICE

LONDON = "Europe/London"
NEW_YORK = "America/New_York"
SCALES = load_scales()
SCALE_KEYS = ["cows", "sows", "oows", "sows_gossop", "gad7", "symptom_nrs"]
NOTES = "Sitting up in bed & talking; <calm>"


# --------------------------------------------------------------------------- helpers


class User(Browser):
    def entry_form(self, patient_id, scale_key):
        """GET the entry form; return (page, the hidden and default values a browser sends)."""
        page = self.get(f"/patients/{patient_id}/assessments/new/{scale_key}")
        assert page.status_code == 200, page.status_code
        return page, {
            "csrf_token": input_val(page, "csrf_token"),
            "submission_key": input_val(page, "submission_key"),
            "observed_at": input_val(page, "observed_at"),
        }

    def record(self, patient_id, scale_key, answers, /, form=None, **fields):
        """Submit the entry form with these answers and field values (None: not sent).

        ``form`` is what an earlier GET of the form gave; without it the form is opened now.
        """
        if form is None:
            _, form = self.entry_form(patient_id, scale_key)
        data = {**form, **answers, **fields}
        data = {key: value for key, value in data.items() if value is not None}
        return self.post(f"/patients/{patient_id}/assessments/new/{scale_key}", data), data


@pytest.fixture
def ids(world):
    """Plain ids of the world's objects, read before any request changes the database."""
    values = SimpleNamespace(
        pid_n=world["patient_n"].id,
        pid_s=world["patient_s"].id,
        ep_n=world["patient_n"].episodes[0].id,
        ep_s=world["patient_s"].episodes[0].id,
        ep_n_start=world["patient_n"].episodes[0].started_at,
        clin_n=world["clin_n"].id,
        sup_n=world["sup_n"].id,
        clin_s=world["clin_s"].id,
    )
    db.session.commit()  # end the fixture session's read transaction
    return values


@pytest.fixture
def login(app, world):
    def _login(username):
        browser = User(app.test_client())
        browser.login(username)
        return browser

    return _login


def counts(app) -> tuple[int, int, int]:
    """Assessments, item scores, and audit events other than logins, logouts and refused
    CSRF checks (security events, not data changes)."""
    with app.app_context():
        return (
            db.session.scalar(select(func.count()).select_from(Assessment)),
            db.session.scalar(select(func.count()).select_from(ItemScore)),
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    AuditEvent.action.not_in(
                        ("login_success", "login_failure", "logout", "csrf_refused")
                    )
                )
            ),
        )


def audit_events(app, action):
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        ).all()
        return [
            SimpleNamespace(
                entity=e.entity,
                entity_id=e.entity_id,
                user_id=e.user_id,
                site_id=e.site_id,
                patient_id=e.patient_id,
                details=json.loads(e.details),
            )
            for e in rows
        ]


def fieldset(page, item_key) -> str:
    match = re.search(
        rf'<fieldset class="item[^"]*" id="{item_key}"(.*?)</fieldset>',
        page.get_data(as_text=True),
        re.DOTALL,
    )
    assert match, f"no fieldset for {item_key}"
    return html.unescape(match.group(1))


def plain(markup: str) -> str:
    """Text without tags, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def band_shown(page) -> str:
    match = re.search(
        r'<span class="band band-[^"]*">((?:[^<]|<span[^>]*>[^<]*</span>)*)</span>',
        page.get_data(as_text=True),
    )
    return plain(match.group(1)) if match else ""


def timeline_rows(page) -> list[list[str]]:
    table = re.search(
        r'<table class="data timeline">(.*?)</table>', page.get_data(as_text=True), re.DOTALL
    )
    if table is None:
        return []
    rows = re.findall(r'<tr class="status-\w+">(.*?)</tr>', table.group(1), re.DOTALL)
    return [
        [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        ]
        for row in rows
    ]


def local_now_input(tz, delta=timedelta(0)) -> str:
    return input_value(now_utc() + delta, tz)


def answers(scale_key, **scores) -> dict[str, str]:
    """Every item of the scale answered 0, except the given ones."""
    return {key: str(scores.get(key, 0)) for key in SCALES[scale_key].item_keys}


def varied_answers(scale_key) -> dict[str, str]:
    """A non-zero allowed score for every item, different from item to item where possible."""
    result = {}
    for index, item in enumerate(SCALES[scale_key].items):
        allowed = item.allowed_scores
        result[item.key] = str(allowed[1 + index % (len(allowed) - 1)])
    return result


def assessment_id(response) -> int:
    path = urlsplit(response.headers["Location"]).path
    match = re.fullmatch(r"/assessments/(\d+)", path)
    assert match, path
    return int(match.group(1))


# --------------------------------------------------------------------------- form and saving


VALID_ENTRIES = {
    "cows": ({"restlessness": 5, "gooseflesh": 3}, 8, "Mild"),
    "sows": ({"anxious": 4, "craving_to_use": 2}, 6, None),
    "oows": ({"yawning": 1, "anxiety": 1}, 2, None),
    "sows_gossop": ({"insomnia": 3, "yawning": 2}, 5, None),
    "gad7": (
        {"nervous": 3, "cannot_stop_worrying": 3, "worry_too_much": 3, "trouble_relaxing": 1},
        10,
        "Moderate",
    ),
    "symptom_nrs": ({"anxiety": 7, "aches": 10}, 17, None),
}


def check_entry_form(page, form, scale, tz):
    """Every item is a radio group with its anchors and the not-assessed choices."""
    body = text_of(page)
    assert scale.name in body
    assert f"scale version {scale.version}" in body
    assert ("custom rating, not a validated instrument" in body) == scale.custom
    for number, item in enumerate(scale.items, start=1):
        group = fieldset(page, item.key)
        legend = " ".join(re.search(r"<legend>(.*?)</legend>", group, re.DOTALL).group(1).split())
        respondent = (
            "patient-reported" if item.respondent == "patient_reported" else "clinician-observed"
        )
        assert legend == (
            f'<span class="item-number">{number}.</span> {item.label} '
            f'<span class="respondent">{respondent}</span>'
        )
        radios = inputs(page, item.key)
        assert {r["type"] for r in radios} == {"radio"}
        assert [r["value"] for r in radios] == [
            *(str(score) for score in item.allowed_scores),
            *(f"na:{reason}" for reason in NOT_ASSESSED_REASONS),
        ]
        assert checked(page, item.key) == []
        # What each option's label reads: the score and its anchor (an anchor that only
        # repeats the number, as on a 0-10 rating, is not read twice), then the reasons.
        labels = [
            plain(label)
            for label in re.findall(r'<label class="choice[^"]*">(.*?)</label>', group, re.DOTALL)
        ]
        assert labels == [
            *(
                f"{a.score} {a.text}" if a.text != str(a.score) else str(a.score)
                for a in item.anchors
            ),
            *NOT_ASSESSED_REASONS.values(),
        ]
        if item.prompt:
            assert item.prompt in group
    # Only COWS has a measured value.
    assert bool(inputs(page, "resting_pulse_bpm")) == (scale.key == "cows")
    assert re.fullmatch(r"[0-9a-f]{32}", form["submission_key"])
    default = datetime.strptime(form["observed_at"], "%Y-%m-%dT%H:%M")
    assert abs(to_local(now_utc(), tz).replace(tzinfo=None) - default) < timedelta(minutes=2)
    assert f"Observed at ({tz} time)" in body
    assert textarea(page, "notes") == ""
    assert NO_ADVICE_NOTICE in body


@pytest.mark.parametrize("scale_key", SCALE_KEYS)
def test_open_fill_in_and_save_each_scale(app, login, ids, scale_key):
    scores, total, band = VALID_ENTRIES[scale_key]
    scale = SCALES[scale_key]
    browser = login("clin.north")
    page, form = browser.entry_form(ids.pid_n, scale_key)
    check_entry_form(page, form, scale, LONDON)
    before = counts(app)
    observed_local = local_now_input(LONDON, -timedelta(minutes=20))

    response, sent = browser.record(
        ids.pid_n,
        scale_key,
        answers(scale_key, **scores),
        form=form,
        observed_at=observed_local,
        notes=NOTES,
    )

    assert response.status_code == 302, text_of(response)[-3000:]
    aid = assessment_id(response)
    assert counts(app) == (before[0] + 1, before[1] + len(scale.items), before[2] + 1)
    with app.app_context():
        a = db.session.get(Assessment, aid)
        assert (a.patient_id, a.episode_id) == (ids.pid_n, ids.ep_n)
        assert (a.scale_key, a.scale_version) == (scale_key, scale.version)
        assert (a.total, a.complete, a.band) == (total, True, band)
        assert a.recorded_by_id == ids.clin_n
        assert a.status == "active"
        assert a.notes == NOTES
        assert a.submission_key == sent["submission_key"]
        assert input_value(a.observed_at, LONDON) == observed_local
        assert abs(a.recorded_at - now_utc()) < timedelta(minutes=1)
        assert [(s.item_key, s.position, s.score) for s in a.item_scores] == [
            (item.key, position, scores.get(item.key, 0))
            for position, item in enumerate(scale.items)
        ]
        assert all(s.not_assessed_reason is None for s in a.item_scores)
        assert all(s.measured_value is None for s in a.item_scores)
    (created,) = audit_events(app, "assessment_create")
    assert (created.entity, created.entity_id, created.user_id) == ("assessment", aid, ids.clin_n)
    assert created.patient_id == ids.pid_n
    assert (created.details["total"], created.details["band"]) == (total, band)
    assert created.details["complete"] is True

    result = browser.get(response.headers["Location"])
    assert result.status_code == 200
    body = text_of(result)
    assert f"Total <strong>{total}</strong>" in body
    assert f"of {scale.total_min}–{scale.total_max}" in body
    assert band_shown(result) == (band or "No published band")
    if band is None:
        assert scale.band_note in body
    assert f"observed {observed_local.replace('T', ' ')} " in body
    assert "Recorded by Clin.North" in body
    assert NOTES in body
    for item in scale.items:
        assert item.anchor_text(scores.get(item.key, 0)) in body


def test_entry_form_in_new_york_time_and_a_fresh_key_each_time(login, ids):
    browser = login("clin.south")
    page, form = browser.entry_form(ids.pid_s, "cows")
    check_entry_form(page, form, SCALES["cows"], NEW_YORK)
    keys = {browser.entry_form(ids.pid_s, "gad7")[1]["submission_key"] for _ in range(3)}
    assert len(keys | {form["submission_key"]}) == 4


def test_band_follows_the_total(app, login, ids, subtests):
    browser = login("clin.north")
    for scale_key, scores, expected_band in [
        ("cows", {}, None),  # totals 0-4 have no published label
        ("cows", {"restlessness": 5}, "Mild"),
        ("cows", {"restlessness": 5, "gooseflesh": 5, "tremor": 2}, "Mild"),  # 12
        ("cows", {"restlessness": 5, "gooseflesh": 5, "tremor": 4}, "Moderate"),  # 14
        ("gad7", {}, "Minimal"),
        ("gad7", {"nervous": 3, "afraid": 2}, "Mild"),
        ("gad7", dict.fromkeys(SCALES["gad7"].item_keys, 3), "Severe"),
    ]:
        with subtests.test(scale=scale_key, scores=scores):
            response, _ = browser.record(ids.pid_n, scale_key, answers(scale_key, **scores))
            assert response.status_code == 302
            with app.app_context():
                assert db.session.get(Assessment, assessment_id(response)).band == expected_band


# --------------------------------------------------------------------------- COWS pulse


def test_cows_pulse_gives_the_score(app, login, ids, subtests):
    browser = login("clin.north")
    for bpm, score, expected in [
        ("110", None, 2),
        ("110", "2", 2),  # the matching score may be sent too
        ("80", None, 0),
        ("81", None, 1),
        ("100", None, 1),
        ("121", None, 4),
        ("20", None, 0),
        ("250", None, 4),
        (" 95 ", None, 1),
    ]:
        with subtests.test(bpm=bpm, score=score):
            data = answers("cows") | {"resting_pulse": score}
            response, _ = browser.record(ids.pid_n, "cows", data, resting_pulse_bpm=bpm)
            assert response.status_code == 302
            with app.app_context():
                a = db.session.get(Assessment, assessment_id(response))
                pulse = a.item_scores[0]
                assert (pulse.item_key, pulse.score) == ("resting_pulse", expected)
                assert pulse.measured_value == int(bpm)
                assert a.total == expected
            if bpm == "110" and score is None:
                result = browser.get(response.headers["Location"]).get_data(as_text=True)
                assert "Pulse rate 101–120 (110 beats per minute)" in plain(result)


def test_cows_pulse_refusals_keep_the_input(app, login, ids, subtests):
    browser = login("clin.north")
    _, form = browser.entry_form(ids.pid_n, "cows")
    for score, message in [
        ("1", "110 beats per minute scores 2, not 1. Correct the measurement or the score."),
        ("na:not_measured", "You entered 110 beats per minute but marked this item not assessed"),
    ]:
        with subtests.test(score=score):
            before = counts(app)
            data = varied_answers("cows") | {"resting_pulse": score}
            response, _ = browser.record(
                ids.pid_n, "cows", data, form=form, resting_pulse_bpm="110", notes=NOTES
            )
            assert response.status_code == 422
            assert message in field_errors(response, "resting_pulse")
            assert input_val(response, "resting_pulse_bpm") == "110"
            assert checked(response, "resting_pulse") == [score]
            assert checked(response, "tremor") == [data["tremor"]]
            assert textarea(response, "notes") == NOTES
            assert counts(app) == before

    data = varied_answers("cows")
    del data["resting_pulse"]
    message = "Enter a whole number of beats per minute between 20 and 250."
    for bpm in ["abc", "+90", "٩٠", "９０", "300", "251", "19", "0", "-80", "90.5", "1e2", "0x5a"]:
        with subtests.test(bpm=bpm):
            before = counts(app)
            response, _ = browser.record(ids.pid_n, "cows", data, form=form, resting_pulse_bpm=bpm)
            assert response.status_code == 422
            assert message in field_errors(response, "resting_pulse_bpm")
            assert input_val(response, "resting_pulse_bpm") == bpm
            assert checked(response, "gooseflesh") == [data["gooseflesh"]]
            assert counts(app) == before
    with subtests.test("pulse sent twice"):
        response, _ = browser.record(
            ids.pid_n, "cows", data, form=form, resting_pulse_bpm=["90", "130"]
        )
        assert response.status_code == 422
        assert "sent more than once" in field_errors(response, "resting_pulse_bpm")


def test_cows_odd_score_with_a_pulse_is_refused_not_500(login, ids):
    response, _ = login("clin.north").record(
        ids.pid_n, "cows", answers("cows", resting_pulse="3.0"), resting_pulse_bpm="110"
    )
    assert response.status_code == 422


def test_pulse_input_has_no_dangling_aria_reference(login, ids):
    page, _ = login("clin.north").entry_form(ids.pid_n, "cows")
    (pulse,) = inputs(page, "resting_pulse_bpm")
    assert pulse.get("aria-describedby") != "None"


# --------------------------------------------------------------------------- not assessed


NOT_ASSESSED_CASES = [
    # 5 + 5 = 10 without tremor: a lower bound already in "Mild"
    ("cows", {"restlessness": 5, "gooseflesh": 5}, "tremor", "asleep"),
    # 6 x 3 = 18 without "afraid": a lower bound already in "Severe"
    ("gad7", dict.fromkeys(SCALES["gad7"].item_keys, 3), "afraid", "unable_to_communicate"),
    ("symptom_nrs", {"anxiety": 4}, "insomnia", "not_measured"),
]
# How each reads: a floor where the lower bound lies in a band, else "Incomplete".
NOT_ASSESSED_SHOWN = {
    "cows": "at least Mild — incomplete, 1 item not assessed",
    "gad7": "at least Severe — incomplete, 1 item not assessed",
    "symptom_nrs": "Incomplete (total is a lower bound)",
}


def test_not_assessed_item_makes_an_incomplete_entry(app, login, ids, subtests):
    browser = login("clin.north")
    for scale_key, scores, skipped, reason in NOT_ASSESSED_CASES:
        with subtests.test(scale=scale_key, skipped=skipped):
            data = answers(scale_key, **scores) | {skipped: f"na:{reason}"}
            expected_total = sum(v for k, v in scores.items() if k != skipped)

            response, _ = browser.record(ids.pid_n, scale_key, data)

            assert response.status_code == 302
            aid = assessment_id(response)
            with app.app_context():
                a = db.session.get(Assessment, aid)
                assert (a.total, a.complete, a.band) == (expected_total, False, None)
                (na,) = [s for s in a.item_scores if s.item_key == skipped]
                assert (na.score, na.not_assessed_reason) == (None, reason)
                assert all(s.score is not None for s in a.item_scores if s.item_key != skipped)
            created = audit_events(app, "assessment_create")[-1]
            assert created.entity_id == aid
            assert created.details["items"][skipped] == f"not assessed: {reason}"
            assert (created.details["complete"], created.details["band"]) == (False, None)

            # The total is a lower bound: never its band, at most the floor it has reached.
            shown = NOT_ASSESSED_SHOWN[scale_key]
            result = browser.get(response.headers["Location"])
            assert band_shown(result) == shown
            assert "Some items were not assessed" in text_of(result)
            assert f"Not assessed: {NOT_ASSESSED_REASONS[reason]}" in text_of(result)
            row = timeline_rows(browser.get(f"/patients/{ids.pid_n}"))[0]
            assert row[3] == shown


# --------------------------------------------------------------------------- rejections


BAD_SCORE = "is not an allowed score for this item"
ANSWER = "Answer this item, or mark it not assessed."
TWICE = "This question was answered more than once; choose one answer."

REJECTIONS = {
    "cows": [
        ({"gooseflesh": "2"}, "gooseflesh", "'2' " + BAD_SCORE + ". Choose one of 0, 3, 5"),
        ({"restlessness": "2"}, "restlessness", "Choose one of 0, 1, 3, 5"),
        ({"tremor": "5"}, "tremor", "'5' " + BAD_SCORE),
        ({"sweating": "-1"}, "sweating", "'-1' " + BAD_SCORE),
        ({"sweating": "٣"}, "sweating", BAD_SCORE),
        ({"sweating": "３"}, "sweating", BAD_SCORE),
        ({"sweating": "+3"}, "sweating", BAD_SCORE),
        ({"sweating": "0_3"}, "sweating", BAD_SCORE),
        ({"sweating": "3.0"}, "sweating", BAD_SCORE),
        ({"sweating": "1e0"}, "sweating", BAD_SCORE),
        ({"sweating": "0x3"}, "sweating", BAD_SCORE),
        ({"sweating": "03"}, "sweating", BAD_SCORE),
        ({"sweating": "3 3"}, "sweating", BAD_SCORE),
        ({"sweating": "9" * 30}, "sweating", BAD_SCORE),
        ({"sweating": "na:bogus"}, "sweating", BAD_SCORE),
        ({"sweating": "na:"}, "sweating", BAD_SCORE),
        ({"sweating": "asleep"}, "sweating", BAD_SCORE),
        ({"tremor": None}, "tremor", ANSWER),
        ({"tremor": ""}, "tremor", ANSWER),
        ({"resting_pulse": None}, "resting_pulse", ANSWER),
        ({"tremor": ["1", "4"]}, "tremor", TWICE),
        ({"tremor": ["1", "1"]}, "tremor", TWICE),
        ({"observed_at": "+6min"}, "observed_at", "This time is in the future."),
        ({"observed_at": "+1day"}, "observed_at", "This time is in the future."),
        ({"observed_at": "2026-02-30T10:00"}, "observed_at", "Enter a date and time as shown"),
        ({"observed_at": "now"}, "observed_at", "Enter a date and time as shown"),
        ({"observed_at": "2026-01-01 10:00"}, "observed_at", "Enter a date and time as shown"),
        ({"observed_at": ""}, "observed_at", "Enter when the symptoms were observed."),
        ({"observed_at": None}, "observed_at", "Enter when the symptoms were observed."),
        ({"observed_at": "0001-01-01T00:00"}, "observed_at", "implausibly far in the past"),
        ({"observed_at": "-3days"}, "observed_at", "This is before the episode started"),
        ({"observed_at": "2026-03-29T01:30"}, "observed_at", "does not exist in Europe/London"),
        (
            {"observed_at": ["-1hour", "-2hours"]},
            "observed_at",
            "This field was sent more than once",
        ),
        (
            {"notes": "n" * 2001},
            "notes",
            "Notes can be at most 2000 characters (2001 would be too many).",
        ),
        ({"notes": "Resting\x00quietly"}, "notes", "Remove the control characters"),
        ({"notes": "Resting\x1b[2Jquietly"}, "notes", "Remove the control characters"),
        ({"notes": "Resting\x7fquietly"}, "notes", "Remove the control characters"),
    ],
    "sows": [({"anxious": "5"}, "anxious", "Choose one of 0, 1, 2, 3, 4")],
    "oows": [({"yawning": "2"}, "yawning", "Choose one of 0, 1")],
    "sows_gossop": [({"insomnia": "4"}, "insomnia", "Choose one of 0, 1, 2, 3")],
    "gad7": [
        ({"nervous": "4"}, "nervous", "'4' " + BAD_SCORE + ". Choose one of 0, 1, 2, 3"),
        ({"afraid": None}, "afraid", ANSWER),
    ],
    "symptom_nrs": [({"anxiety": "11"}, "anxiety", "Choose one of 0, 1, 2, 3, 4, 5, 6, 7, 8")],
}

_RELATIVE_TIMES = {
    "+6min": timedelta(minutes=6, seconds=30),
    "+1day": timedelta(days=1),
    "-3days": timedelta(days=-3),
    "-1hour": timedelta(hours=-1),
    "-2hours": timedelta(hours=-2),
}


def _resolve_time(value):
    if isinstance(value, list):
        return [_resolve_time(v) for v in value]
    if value in _RELATIVE_TIMES:
        return local_now_input(LONDON, _RELATIVE_TIMES[value])
    return value


@pytest.mark.parametrize("scale_key", SCALE_KEYS)
def test_rejected_entry_keeps_the_input_and_writes_nothing(app, login, ids, subtests, scale_key):
    browser = login("clin.north")
    base = varied_answers(scale_key)
    observed = local_now_input(LONDON, -timedelta(minutes=45))
    # Nothing is saved, so one opened form serves every attempt.
    _, form = browser.entry_form(ids.pid_n, scale_key)
    for overrides, field, message in REJECTIONS[scale_key]:
        if "observed_at" in overrides:
            overrides = {"observed_at": _resolve_time(overrides["observed_at"])}
        with subtests.test(**{k: str(v)[:40] for k, v in overrides.items()}):
            data = {"observed_at": observed, "notes": NOTES, **base, **overrides}
            before = counts(app)

            response, _ = browser.record(ids.pid_n, scale_key, data, form=form)

            assert response.status_code == 422
            assert message in field_errors(response, field)
            assert "Nothing was saved" in text_of(response)
            assert counts(app) == before
            # Everything else the user entered is still selected or filled in.
            for key, value in base.items():
                if key not in overrides:
                    assert checked(response, key) == [value], key
            if "notes" not in overrides:
                assert textarea(response, "notes") == NOTES
            else:
                assert textarea(response, "notes") == overrides["notes"]
            if "observed_at" not in overrides:
                assert input_val(response, "observed_at") == observed
            elif isinstance(overrides["observed_at"], str):
                assert input_val(response, "observed_at") == overrides["observed_at"]


def test_other_accepted_input(app, login, ids, subtests):
    browser = login("clin.north")
    with subtests.test("spaces around a score are refused, not guessed at"):
        response, _ = browser.record(ids.pid_n, "cows", answers("cows", sweating=" 4 "))
        assert response.status_code == 422
        assert "not an allowed score" in text_of(response)
    for notes, stored in [
        ("n" * 2000, "n" * 2000),
        # A browser sends line breaks as CRLF; each counts as one character.
        ("line\r\n" * 400, ("line\n" * 400).strip()),
        ("Tab\tand new line\nare fine", "Tab\tand new line\nare fine"),
    ]:
        with subtests.test(notes=notes[:12]):
            response, _ = browser.record(ids.pid_n, "oows", answers("oows"), notes=notes)
            assert response.status_code == 302
            with app.app_context():
                assert db.session.get(Assessment, assessment_id(response)).notes == stored


# --------------------------------------------------------------------------- server decides


def test_extra_fields_cannot_set_what_the_server_computes(app, login, ids):
    response, _ = login("clin.north").record(
        ids.pid_n,
        "gad7",
        answers("gad7", nervous=3, afraid=2),
        total="0",
        band="Severe",
        complete="false",
        recorded_by_id=str(ids.clin_s),
        status="voided",
        scale_version="99",
        patient_id=str(ids.pid_s),
        episode_id=str(ids.ep_s),
        recorded_at="2020-01-01T00:00",
        id="999",
    )
    assert response.status_code == 302
    with app.app_context():
        a = db.session.get(Assessment, assessment_id(response))
        assert a.id != 999
        assert (a.total, a.band, a.complete) == (5, "Mild", True)
        assert a.recorded_by_id == ids.clin_n
        assert a.status == "active"
        assert a.scale_version == SCALES["gad7"].version
        assert (a.patient_id, a.episode_id) == (ids.pid_n, ids.ep_n)
        assert abs(a.recorded_at - now_utc()) < timedelta(minutes=1)


def test_submitting_the_same_form_twice_records_once(app, login, ids):
    browser = login("clin.north")
    _, form = browser.entry_form(ids.pid_n, "sows_gossop")
    data = {**form, **answers("sows_gossop", insomnia=2)}
    url = f"/patients/{ids.pid_n}/assessments/new/sows_gossop"
    before = counts(app)

    first = browser.post(url, data)
    second = browser.post(url, data)
    # A resubmission with different answers still shows the first entry, not a second one.
    third = browser.post(url, {**data, "insomnia": "3"})

    assert first.status_code == second.status_code == third.status_code == 302
    assert first.headers["Location"] == second.headers["Location"] == third.headers["Location"]
    n_items = len(SCALES["sows_gossop"].items)
    assert counts(app) == (before[0] + 1, before[1] + n_items, before[2] + 1)
    with app.app_context():
        assert db.session.get(Assessment, assessment_id(first)).total == 2

    # A newly opened form is a new entry, whoever sends it.
    again, _ = browser.record(ids.pid_n, "sows_gossop", answers("sows_gossop"))
    supervisor = login("sup.north")
    by_supervisor, _ = supervisor.record(ids.pid_n, "sows_gossop", answers("sows_gossop"))
    ids_saved = {assessment_id(r) for r in (first, again, by_supervisor)}
    assert len(ids_saved) == 3
    assert counts(app)[0] == before[0] + 3
    with app.app_context():
        recorder = db.session.get(Assessment, assessment_id(by_supervisor)).recorded_by_id
        assert recorder == ids.sup_n
    result = supervisor.get(by_supervisor.headers["Location"])
    assert "Recorded by Sup.North" in text_of(result)


def test_submission_key_used_by_someone_else_is_not_500(login, ids):
    first, sent = login("clin.north").record(ids.pid_n, "oows", answers("oows"))
    assert first.status_code == 302
    other = login("sup.north")
    response, _ = other.record(
        ids.pid_n, "oows", answers("oows"), submission_key=sent["submission_key"]
    )
    assert response.status_code == 422
    assert "already used for another entry" in text_of(response)


def test_overlong_submission_key_is_not_500(login, ids):
    response, _ = login("clin.north").record(
        ids.pid_n, "oows", answers("oows"), submission_key="k" * 65
    )
    assert response.status_code in (302, 422)


def test_missing_csrf_token_keeps_the_input_and_writes_nothing(app, login, ids):
    browser = login("clin.north")
    _, form = browser.entry_form(ids.pid_n, "gad7")
    data = {**form, **varied_answers("gad7"), "notes": NOTES}
    del data["csrf_token"]
    before = counts(app)

    response = browser.post(f"/patients/{ids.pid_n}/assessments/new/gad7", data, csrf=False)

    assert response.status_code == 422
    assert "The form expired or was sent from elsewhere" in text_of(response)
    assert counts(app) == before
    for key, value in varied_answers("gad7").items():
        assert checked(response, key) == [value]
    assert textarea(response, "notes") == NOTES
    assert input_val(response, "observed_at") == form["observed_at"]
    assert input_val(response, "submission_key") == form["submission_key"]


# --------------------------------------------------------------------------- access


def test_another_sites_patient_answers_404_and_writes_nothing(
    app, world, add_assessment, login, ids, subtests
):
    south_aid = add_assessment(world["patient_s"], world["clin_s"]).id
    browser = login("clin.north")
    _, form = browser.entry_form(ids.pid_n, "cows")
    for method, url, entity, entity_id in [
        ("GET", f"/patients/{ids.pid_s}/assessments/new/cows", "patient", ids.pid_s),
        ("POST", f"/patients/{ids.pid_s}/assessments/new/cows", "patient", ids.pid_s),
        ("GET", f"/patients/{ids.pid_s}/assessments/new/nope", "patient", ids.pid_s),
        ("GET", f"/assessments/{south_aid}", "assessment", south_aid),
    ]:
        with subtests.test(method=method, url=url):
            before = counts(app)
            if method == "GET":
                response = browser.get(url)
            else:
                response = browser.post(url, {**form, **answers("cows")})
            assert response.status_code == 404
            assert "S-001" not in response.get_data(as_text=True)
            assert counts(app) == (before[0], before[1], before[2] + 1)
            refused = audit_events(app, "access_refused")[-1]
            assert (refused.entity, refused.entity_id) == (entity, entity_id)
            assert refused.user_id == ids.clin_n
            assert refused.details == {"path": url, "method": method, "status": 404}


def test_unknown_scale_answers_404(app, login, ids, subtests):
    browser = login("clin.north")
    _, form = browser.entry_form(ids.pid_n, "cows")
    before = counts(app)
    for key in ["nope", "COWS", "cows.toml", "cows ", "%2e%2e", "gad-7"]:
        with subtests.test(key=key):
            url = f"/patients/{ids.pid_n}/assessments/new/{key}"
            assert browser.get(url).status_code == 404
            assert browser.post(url, {**form, **answers("cows")}).status_code == 404
    assert counts(app) == before


# --------------------------------------------------------------------------- time zones


def test_observed_at_is_site_local_time(app, world, login, subtests):
    summer_start = datetime(2026, 6, 1, tzinfo=UTC)
    for site, username, tz, expected_utc, zone_name in [
        # London summer time (BST) is one hour ahead of UTC.
        ("north", "clin.north", LONDON, datetime(2026, 7, 1, 9, 0, tzinfo=UTC), "BST"),
        # New York summer time (EDT) is four hours behind UTC.
        ("south", "clin.south", NEW_YORK, datetime(2026, 7, 1, 14, 0, tzinfo=UTC), "EDT"),
    ]:
        with subtests.test(site=site):
            user = world["clin_n"] if site == "north" else world["clin_s"]
            patient = create_patient(user, world[site], "TZ-1", None, summer_start, "opioid", "")
            patient_id = patient.id
            db.session.commit()
            browser = login(username)

            response, _ = browser.record(
                patient_id, "cows", answers("cows"), observed_at="2026-07-01T10:00"
            )

            assert response.status_code == 302
            with app.app_context():
                observed = db.session.get(Assessment, assessment_id(response)).observed_at
            assert observed == expected_utc
            shown = f"2026-07-01 10:00 {zone_name}"
            assert format_local(observed, tz) == shown
            (row,) = timeline_rows(browser.get(f"/patients/{patient_id}"))
            assert row[0] == shown
            assert f"observed {shown}" in text_of(browser.get(response.headers["Location"]))


def test_observed_at_in_the_repeated_hour(app, world, login, subtests):
    patient = create_patient(
        world["clin_n"],
        world["north"],
        "TZ-2",
        None,
        datetime(2026, 10, 1, tzinfo=UTC),
        "opioid",
        "",
    )
    patient_id = patient.id
    db.session.commit()
    browser = login("clin.north")
    asked, _ = browser.record(patient_id, "oows", answers("oows"), observed_at="2026-10-25T01:30")
    assert asked.status_code == 422
    assert "happens twice in Europe/London" in field_errors(asked, "observed_at")
    assert [f["value"] for f in inputs(asked, "observed_at_fold")] == ["0", "1"]
    assert checked(asked, "yawning") == ["0"]

    for fold, expected in [
        ("0", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        ("1", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
    ]:
        with subtests.test(fold=fold):
            response, _ = browser.record(
                patient_id,
                "oows",
                answers("oows"),
                observed_at="2026-10-25T01:30",
                observed_at_fold=fold,
            )
            assert response.status_code == 302
            with app.app_context():
                saved = db.session.get(Assessment, assessment_id(response)).observed_at
            assert saved == expected


def test_observed_at_in_year_9999_in_new_york_is_refused_not_500(login, ids):
    response, _ = login("clin.south").record(
        ids.pid_s, "cows", answers("cows"), observed_at="9999-12-31T23:59"
    )
    assert response.status_code == 422


# --------------------------------------------------------------------------- services


def test_record_assessment_service_refusals(app_ctx, world, subtests):
    for scale_key, scores, extra, field, message in [
        ("gad7", {"nervous": 4}, {}, "nervous", "not an allowed score"),
        ("gad7", {"nervous": None}, {}, "nervous", "Say why this item was not assessed."),
        (
            "gad7",
            {"nervous": None},
            {"not_assessed_reasons": {"nervous": "bogus"}},
            "nervous",
            "Say why",
        ),
        ("gad7", {"nervous": True}, {}, "nervous", "whole-number score"),
        ("gad7", {"nervous": "1"}, {}, "nervous", "whole-number score"),
        ("gad7", {"unknown_item": 1}, {}, "unknown_item", "is not an item of GAD-7"),
        (
            "cows",
            {},
            {"measured_values": {"resting_pulse": 110}},  # 110 bpm scores 2, not 0
            "resting_pulse",
            "The measured value does not match the score.",
        ),
    ]:
        with subtests.test(scale=scale_key, scores=scores, extra=extra):
            scale = SCALES[scale_key]
            with pytest.raises(services.EntryError) as raised:
                services.record_assessment(
                    world["clin_n"],
                    world["patient_n"],
                    scale,
                    dict.fromkeys(scale.item_keys, 0) | scores,
                    observed_at=now_utc() - timedelta(hours=1),
                    **extra,
                )
            assert raised.value.field == field
            assert message in raised.value.message
            db.session.rollback()
            assert db.session.scalar(select(func.count()).select_from(Assessment)) == 0

    with subtests.test("no open episode"):
        patient = world["patient_n"]
        end_episode(world["clin_n"], patient.open_episode, now_utc() - timedelta(hours=1))
        scale = SCALES["gad7"]
        with pytest.raises(services.EntryError) as raised:
            services.record_assessment(
                world["clin_n"],
                patient,
                scale,
                dict.fromkeys(scale.item_keys, 0),
                observed_at=now_utc() - timedelta(hours=2),
            )
        assert raised.value.field is None
        assert "no open episode" in raised.value.message
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Assessment)) == 0


def test_observed_at_problem_boundaries():
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    start = datetime(2026, 4, 30, 8, 0, tzinfo=UTC)
    open_episode = Episode(started_at=start, ended_at=None)
    ended = Episode(started_at=start, ended_at=now - timedelta(hours=1))
    problem = services.observed_at_problem
    assert problem(now, open_episode, now) is None
    assert problem(now + timedelta(minutes=5), open_episode, now) is None
    assert "in the future" in problem(now + timedelta(minutes=5, seconds=1), open_episode, now)
    assert "in the future" in problem(now + timedelta(minutes=6), open_episode, now)
    assert problem(start, open_episode, now) is None
    assert "before the episode started" in problem(start - timedelta(seconds=1), open_episode, now)
    assert problem(ended.ended_at, ended, now) is None
    assert "after the episode ended" in problem(ended.ended_at + timedelta(seconds=1), ended, now)
    old = Episode(started_at=datetime(1990, 1, 1, tzinfo=UTC), ended_at=None)
    assert "implausibly far in the past" in problem(datetime(1999, 12, 31, tzinfo=UTC), old, now)
    assert problem(datetime(2000, 1, 1, tzinfo=UTC), old, now) is None
