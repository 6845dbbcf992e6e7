"""A trend sign-off signs exactly what the tracker showed: the entries of the displayed range
and scales, each as the version shown when the page was opened, never the supervisor's own.

The pages are used as a supervisor uses them (conftest.Browser): open the tracker, read the
sign-off form it shows, post it. The test's own session ends its transaction, ``fresh()``,
before it reads what a request wrote.
"""

from __future__ import annotations

import html
import json
import re
from datetime import date, datetime, time, timedelta

import pytest
from conftest import GAD7, PASSWORD
from pages import inputs
from pages import readable_text as text_of
from sqlalchemy import func, select

from clinic_log.assessments.services import Answers, amend_assessment
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, Signature, User
from clinic_log.patients.services import create_patient
from clinic_log.review import services as review
from clinic_log.scale_registry import get_scale
from clinic_log.timeutil import format_local, zone

TZ = "Europe/London"
SIGN_ACTION = re.compile(r'<form method="post" action="([^"]*/tracker/sign[^"]*)"')


def fresh() -> None:
    db.session.commit()


def local_day(days_ago: int) -> date:
    return (now_utc().astimezone(zone(TZ)) - timedelta(days=days_ago)).date()


def at(days_ago: int, hour: int) -> datetime:
    """``hour`` o'clock (site time) ``days_ago`` days before today, in UTC."""
    return datetime.combine(local_day(days_ago), time(hour), zone(TZ)).astimezone(zone("UTC"))


def gad(default: int = 1) -> dict[str, int]:
    return dict.fromkeys(GAD7, default)


def signed_ids() -> set[int]:
    fresh()
    return set(db.session.scalars(select(Signature.assessment_id)))


def events(action: str) -> list[AuditEvent]:
    fresh()
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def sign_form(page) -> tuple[str, dict[str, str]]:
    """The trend sign-off form's address and hidden fields, as the browser would post them."""
    body = page.get_data(as_text=True)
    match = SIGN_ACTION.search(body)
    assert match, "no trend sign-off form on the page"
    form = body[match.start() : body.index("</form>", match.start())]
    fields = {
        f["name"]: f.get("value", "")
        for f in inputs(_Fragment(form))
        if f.get("type") == "hidden" and "name" in f
    }
    return html.unescape(match.group(1)), fields


class _Fragment:
    """A piece of a page, read as pages.inputs reads a response."""

    def __init__(self, markup: str):
        self.markup = markup

    def get_data(self, as_text=True):
        return self.markup


def post_sign(browser, page, password: str = PASSWORD, **override):
    action, fields = sign_form(page)
    return browser.post(action, {**fields, "password": password, **override}, csrf=False)


@pytest.fixture
def patient(world):
    """A NORTH patient whose episode began 16 days ago."""
    return create_patient(
        world["clin_n"], world["north"], "N-100", None, now_utc() - timedelta(days=16), "opioid", ""
    )


@pytest.fixture
def record(world, patient, add_assessment):
    def _record(days_ago: int, hour: int, scale_key="gad7", user="clin_n") -> int:
        scores = gad(1) if scale_key == "gad7" else None
        return add_assessment(
            patient, world[user], scale_key, scores, observed_at=at(days_ago, hour)
        ).id

    return _record


def tracker(browser, patient, days_ago: int | None = None, scales=()) -> str:
    query = []
    if days_ago is not None:
        day = local_day(days_ago).isoformat()
        query += [f"start={day}", f"end={day}"]
    query += [f"scale={key}" for key in scales]
    return f"/patients/{patient.id}/tracker" + ("?" + "&".join(query) if query else "")


# --------------------------------------------------------------------------- scope


def test_a_one_day_range_signs_only_that_days_entries(world, patient, record, login):
    by_day = {d: [record(d, h) for h in (9, 13, 17)] for d in range(1, 15)}
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=5))
    assert page.status_code == 200

    response = post_sign(sup, page)

    assert response.status_code == 302
    assert signed_ids() == set(by_day[5])
    others = [i for d, ids in by_day.items() if d != 5 for i in ids]
    assert len(others) == 39
    fresh()
    assert all(db.session.get(Assessment, i).reviewed_at is None for i in others)
    assert "Signed off 3 entries" in text_of(sup.get(response.headers["Location"]))


def test_only_the_displayed_scales_are_signed(world, patient, record, login):
    gads = [record(2, 9), record(2, 15)]
    cows = [record(2, 11, "cows"), record(2, 16, "cows")]
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=2, scales=["gad7"]))
    shown = text_of(page)
    assert "GAD-7" in shown and "Trend of COWS" not in shown

    assert post_sign(sup, page).status_code == 302

    assert signed_ids() == set(gads)
    fresh()
    assert all(db.session.get(Assessment, i).reviewed_at is None for i in cows)


def test_entries_recorded_after_the_page_was_opened_are_not_signed(world, patient, record, login):
    seen = [record(3, 9), record(3, 12)]
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=3))
    later = record(3, 10)  # recorded after the page was opened, inside its range

    response = post_sign(sup, page)

    assert response.status_code == 302
    assert signed_ids() == set(seen)
    fresh()
    assert db.session.get(Assessment, later).reviewed_at is None


def test_the_supervisors_own_entries_are_neither_counted_nor_signed(world, patient, record, login):
    theirs = [record(4, 9), record(4, 12)]
    own = [record(4, 10, user="sup_n"), record(4, 14, user="sup_n")]
    record(8, 9, user="sup_n")  # own, outside the range: never counted as waiting for them
    outside = record(9, 9)  # another's, outside the range: waits for them
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=4))
    text = text_of(page)

    assert "Sign off 2 entries" in text
    assert "2 entries shown here that you recorded yourself wait for another supervisor" in text
    assert "1 more entry of this patient outside what is shown waits for your sign-off" in text
    assert post_sign(sup, page).status_code == 302
    assert signed_ids() == set(theirs)
    fresh()
    assert all(db.session.get(Assessment, i).reviewed_at is None for i in [*own, outside])


def test_an_entry_amended_since_the_page_was_opened_is_left_out_and_named(
    world, patient, record, login
):
    kept = [record(6, 9), record(6, 18)]
    changed = db.session.get(Assessment, record(6, 12))
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=6))
    replacement = amend_assessment(
        world["clin_n"], changed, changed.version, Answers(gad(2), changed.observed_at), "typo"
    )
    fresh()

    response = post_sign(sup, page)

    assert response.status_code == 200
    text = text_of(response)
    assert "Signed off 2 entries" in text
    named = f"N-100, GAD-7 observed {format_local(changed.observed_at, TZ)}"
    assert f"{named}: amended since you opened the page" in text
    assert signed_ids() == set(kept)
    fresh()
    assert db.session.get(Assessment, replacement.id).reviewed_at is None
    (refused,) = events("review_refused")
    assert (refused.entity_id, refused.username) == (changed.id, "sup.north")
    assert sorted(e.entity_id for e in events("assessment_review")) == sorted(kept)


def test_a_list_naming_entries_not_shown_is_refused_entry_by_entry(
    world, patient, record, add_assessment, login
):
    shown = record(7, 9)
    other_day = record(10, 9)
    own = record(7, 11, user="sup_n")
    south = add_assessment(
        world["patient_s"], world["clin_s"], "gad7", gad(1), observed_at=at(1, 9)
    ).id
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=7))
    _action, fields = sign_form(page)
    forged = f"{fields['shown']} {other_day}.1 {own}.1 {south}.1"

    response = post_sign(sup, page, shown=forged)

    text = text_of(response)
    assert "Signed off 1 entry" in text
    assert f"GAD-7 observed {format_local(at(10, 9), TZ)}: not on the page you signed from" in text
    assert "you recorded it; another supervisor must sign it" in text
    assert f"entry #{south}: not at one of your sites" in text
    assert "S-001" not in text
    assert signed_ids() == {shown}
    assert sorted(e.entity_id for e in events("review_refused")) == sorted([other_day, own, south])


def test_a_failure_part_way_signs_nothing(world, patient, record, login, monkeypatch):
    ids = [record(2, h) for h in (9, 10, 11)]
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=2))
    real_sign, calls = review._sign, []

    def sign_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the disk went away")
        return real_sign(*args, **kwargs)

    monkeypatch.setattr(review, "_sign", sign_then_fail)
    assert post_sign(sup, page).status_code == 500
    assert signed_ids() == set()
    fresh()
    assert all(db.session.get(Assessment, i).reviewed_at is None for i in ids)
    assert events("assessment_review") == []


# --------------------------------------------------------------------------- the form


def test_a_range_with_nothing_waiting_shows_no_form(world, patient, record, login):
    record(3, 9, user="sup_n")  # only the supervisor's own entry in this range
    record(5, 9)  # waiting, but on another day
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=3))
    assert page.status_code == 200
    assert not SIGN_ACTION.search(page.get_data(as_text=True))
    assert inputs(page, "shown") == []
    assert "Nothing shown here waits for your sign-off" in text_of(page)
    empty_day = sup.get(tracker(sup, patient, days_ago=12))
    assert not SIGN_ACTION.search(empty_day.get_data(as_text=True))


def test_a_wrong_password_signs_nothing_and_counts_toward_the_lockout(
    world, patient, record, login
):
    ids = [record(2, 9), record(2, 12)]
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=2))

    response = post_sign(sup, page, password="not my password at all")

    assert response.status_code == 422
    assert "That is not your password. Nothing was signed." in text_of(response)
    assert sign_form(response)[1]["shown"] == sign_form(page)[1]["shown"]
    assert signed_ids() == set()
    fresh()
    user = db.session.scalar(select(User).where(User.username == "sup.north"))
    assert user.failed_login_count == 1
    (failure,) = events("reentry_failure")
    assert json.loads(failure.details)["purpose"] == "trend_sign"
    assert all(db.session.get(Assessment, i).reviewed_at is None for i in ids)
    assert events("assessment_review") == []


def test_the_form_sits_below_the_charts_and_tables_and_states_count_and_span(
    world, patient, record, login
):
    record(2, 9)
    record(2, 12, "cows")
    record(2, 17, "symptom_nrs")
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=2))
    body = page.get_data(as_text=True)
    form_at = SIGN_ACTION.search(body).start()
    assert body.rfind("</table>") < form_at
    assert body.rfind('class="chart"') < form_at
    text = text_of(page)
    first, last = format_local(at(2, 9), TZ), format_local(at(2, 17), TZ)
    assert f"Sign off 3 entries observed from {first} to {last}" in text


def test_a_range_too_long_to_sign_at_once_says_so_and_shows_no_form(
    world, patient, record, login, monkeypatch
):
    monkeypatch.setattr(review, "TREND_SIGN_LIMIT", 2)
    for hour in (9, 10, 11):
        record(2, hour)
    sup = login("sup.north")
    page = sup.get(tracker(sup, patient, days_ago=2))
    assert not SIGN_ACTION.search(page.get_data(as_text=True))
    assert "3 entries shown here wait for your sign-off" in text_of(page)
    assert "at most 2 at once" in text_of(page)


def test_the_signing_service_signs_each_shown_version_once(world, patient, record):
    first, second = record(2, 9), record(2, 10)
    fresh()
    done = review.sign_versions(world["sup_n"], [(first, 1), (second, 1), (first, 1)], PASSWORD)
    assert sorted(done.signed) == [first, second]
    assert done.left_out == []
    again = review.sign_versions(world["sup_n"], [(first, 2)], PASSWORD)
    assert again.signed == []
    assert [(x.assessment_id, x.reason) for x in again.left_out] == [
        (first, "already signed off by Sup.North")
    ]
    fresh()
    assert db.session.scalar(select(func.count()).select_from(Signature)) == 2
    assert get_scale("gad7").short_name == "GAD-7"
