"""Supervisor review: the queue, electronic sign-off of one entry or a patient's whole trend,
what an amendment does to a signature, and what tampering does to it.

Services are called directly where that is clearer; the pages over HTTP as a supervisor uses
them (conftest.Browser). The test's own session must end its transaction, ``fresh()``,
before it reads what a request wrote.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import pytest
from conftest import GAD7, PASSWORD
from pages import input_val
from pages import readable_text as text_of
from sqlalchemy import func, select, text

from clinic_log.assessments.services import (
    Answers,
    amend_assessment,
    changes_since_review,
    fingerprint,
    history,
    record_assessment,
    void_assessment,
)
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, Signature
from clinic_log.patients.services import create_patient
from clinic_log.review import services as review
from clinic_log.review.services import ReviewError
from clinic_log.scale_registry import get_scale

# --------------------------------------------------------------------------- helpers


def gad(default: int = 1, **scores: int) -> dict[str, int]:
    return {key: scores.get(key, default) for key in GAD7}


def hours_ago(hours: float):
    return (now_utc() - timedelta(hours=hours)).replace(second=0, microsecond=0)


def fresh() -> None:
    """End the test session's transaction: later reads see what the requests committed."""
    db.session.commit()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def events(action: str) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def send(browser, url: str, data: dict):
    """POST with the CSRF token of the user's home page (fetched once per browser)."""
    if not getattr(browser, "token", None):
        browser.token = browser.csrf_token("/")
    return browser.post(url, {"csrf_token": browser.token, **data})


def sign(browser, assessment_id: int, password: str = PASSWORD, version=None):
    if version is None:
        version = input_val(browser.get(f"/assessments/{assessment_id}"), "version")
    return send(
        browser,
        f"/assessments/{assessment_id}/sign",
        {"password": password, "version": str(version)},
    )


def queue_rows(page) -> list[dict]:
    """Each row of the review queue: the entry id it links to and the row's text."""
    body = re.search(r"<tbody>(.*?)</tbody>", page.get_data(as_text=True), re.DOTALL)
    if body is None:
        return []
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.DOTALL):
        rows.append(
            {
                "id": int(re.search(r'href="/assessments/(\d+)"', row).group(1)),
                "text": " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split()),
                "html": row,
            }
        )
    return rows


def record_for(world, patient, hours: float) -> int:
    """A GAD-7 by clin.north for another patient of NORTH; its id."""
    return record_assessment(
        world["clin_n"], patient, get_scale("gad7"), gad(1), observed_at=hours_ago(hours)
    ).id


def reload(assessment_id: int) -> Assessment:
    fresh()
    return db.session.get(Assessment, assessment_id)


@pytest.fixture
def entry(world, add_assessment):
    """Record a GAD-7 (every item 1 unless told) and return its id."""

    def _make(patient="patient_n", user="clin_n", scale_key="gad7", scores=None, hours=1.0):
        if scores is None and scale_key == "gad7":
            scores = gad(1)
        observed = hours_ago(hours)
        return add_assessment(
            world[patient], world[user], scale_key, scores, observed_at=observed
        ).id

    return _make


# --------------------------------------------------------------------------- the queue


def test_the_queue_is_for_supervisors_only(world, login):
    assert login("sup.north").get("/review/").status_code == 200
    assert login("clin.north").get("/review/").status_code == 403
    assert login("admin.one").get("/review/").status_code == 403
    fresh()
    refused = events("access_refused")
    assert [(e.username, json.loads(e.details)["status"]) for e in refused] == [
        ("clin.north", 403),
        ("admin.one", 403),
    ]


def test_the_queue_holds_unreviewed_active_entries_of_my_sites_oldest_first(world, entry, login):
    second = create_patient(
        world["clin_n"], world["north"], "N-002", None, hours_ago(30), "kratom", ""
    )
    newest = entry(hours=1)
    oldest = entry(scale_key="cows", hours=9)
    on_n002 = record_for(world, second, hours=4)
    middle = entry(hours=5)
    entry(patient="patient_s", user="clin_s", hours=20)  # SOUTH: not my site
    amended = db.session.get(Assessment, entry(hours=8))
    replacement = amend_assessment(
        world["clin_n"], amended, amended.version, Answers(gad(2), amended.observed_at), "fix"
    ).id
    voided = db.session.get(Assessment, entry(hours=7))
    void_assessment(world["clin_n"], voided, voided.version, "duplicate", "")
    reviewed = db.session.get(Assessment, entry(hours=6))
    review.sign_assessment(world["sup_n"], reviewed, PASSWORD, reviewed.version)
    expected = [oldest, replacement, middle, on_n002, newest]

    queue = review.queue(world["sup_n"])
    assert [q.assessment.id for q in queue] == expected
    assert not any(q.own for q in queue)
    page = login("sup.north").get("/review/")
    assert page.status_code == 200
    rows = queue_rows(page)
    assert [row["id"] for row in rows] == expected
    assert "5 entries wait for your sign-off" in text_of(page)
    assert "S-001" not in text_of(page)
    assert all("Review and sign" in row["text"] for row in rows)
    assert ["N-002" in row["text"] for row in rows] == [False, False, False, True, False]


def test_a_queue_page_is_the_oldest_waiting_entries_across_patients(world, entry):
    second = create_patient(
        world["clin_n"], world["north"], "N-002", None, hours_ago(30), "kratom", ""
    )
    ids = {hours: entry(hours=hours) for hours in (2, 6, 10)}
    ids |= {hours: record_for(world, second, hours=hours) for hours in (4, 8, 12)}
    entry(patient="patient_s", user="clin_s", hours=20)  # SOUTH: older, not my site
    fresh()

    page = review.queue(world["sup_n"], limit=4)
    assert [q.assessment.id for q in page] == [ids[12], ids[10], ids[8], ids[6]]
    assert review.count_waiting(world["sup_n"], review.QueueView()) == 6
    found = review.find_patients(world["sup_n"], "n-00")
    assert [p.identifier for p in found] == ["N-001", "N-002"]
    only_second = review.queue(world["sup_n"], patient_id=second.id, limit=2)
    assert [q.assessment.id for q in only_second] == [ids[12], ids[8]]


def test_the_queue_never_reads_every_entry_whole(world, entry):
    """A backlog must not make the queue read and sort every entry whole (0.4 s at 200,000
    entries): each page is chosen from a partial index of the waiting entries, from its start
    point on (keyset paging), then its entries are read by id; the capped counts walk an
    index too, never the whole table."""
    from sqlalchemy import event

    if db.engine.dialect.name != "sqlite":
        pytest.skip("reads SQLite's query plans")
    for hours in (1, 3, 4):
        entry(hours=hours)
    cursor = db.session.get(Assessment, entry(hours=2))
    fresh()
    statements = []

    def capture(_conn, _cursor, statement, parameters, *_):
        if "FROM assessment" in statement:
            statements.append((statement, parameters))

    sup = world["sup_n"]
    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        review.queue_page(sup, review.QueueView())
        review.queue_page(sup, review.QueueView(patient_id=world["patient_n"].id))
        review.queue_page(sup, review.QueueView(newest=True), after=cursor)
        review.queue_page(sup, review.QueueView(), before=cursor, size=1)
        review.count_waiting(sup, review.QueueView())
        review.count_waiting(sup, review.QueueView(own=True))
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    kinds = []
    for statement, parameters in statements:
        plan = list(
            db.session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        )
        reads = [row[3] for row in plan if re.search(r"\bassessment\b", row[3])]
        # A SCAN only of a partial index, in the page's order: it holds only waiting entries,
        # and the walk ends once the page (or the capped count) is full.
        walked = ("SEARCH assessment USING", "SCAN assessment USING INDEX ix_assessment_unrev")
        assert reads and all(read.startswith(walked) for read in reads), (reads, statement)
        assert not any("TEMP B-TREE" in row[3] for row in plan), (statement, plan)
        if statement.startswith("SELECT assessment.id ") or "count(*)" in statement:
            kinds.append("index")  # a page's ids, or a capped count: the partial index
            assert "ix_assessment_unreviewed_" in reads[0], reads
        else:
            kinds.append("by id")  # then the page's entries, by id
            assert "INTEGER PRIMARY KEY" in reads[-1], reads
    assert kinds == ["index", "by id"] * 4 + ["index"] * 2


def test_the_queue_filters_by_patient_and_scale(world, entry, login):
    second = create_patient(
        world["clin_n"], world["north"], "N-002", None, hours_ago(30), "opioid", ""
    )
    second_id, first_id, south_id = second.id, world["patient_n"].id, world["patient_s"].id
    gad_n1 = entry(hours=3)
    cows_n1 = entry(scale_key="cows", hours=2)
    gad_n2 = record_for(world, second, hours=1)
    entry(patient="patient_s", user="clin_s")
    sup_user = world["sup_n"]
    assert [q.assessment.id for q in review.queue(sup_user, patient_id=first_id)] == [
        gad_n1,
        cows_n1,
    ]
    assert [q.assessment.id for q in review.queue(sup_user, scale_key="gad7")] == [gad_n1, gad_n2]
    sup = login("sup.north")

    def ids(query):
        page = sup.get(f"/review/{query}")
        assert page.status_code == 200
        return [row["id"] for row in queue_rows(page)]

    assert ids("") == [gad_n1, cows_n1, gad_n2]
    assert ids(f"?patient={first_id}") == [gad_n1, cows_n1]
    assert ids(f"?patient={second_id}") == [gad_n2]
    assert ids("?scale=gad7") == [gad_n1, gad_n2]
    assert ids(f"?patient={first_id}&scale=cows") == [cows_n1]
    assert ids(f"?patient={first_id}&scale=sows") == []
    # Another site's patient gives nothing, an unknown scale is no filter; a bad id is a 404
    # (test_out_of_range_numbers), never the whole queue under a filter that seems applied.
    assert ids(f"?patient={south_id}") == []
    assert "Nothing waits for your sign-off with these filters" in text_of(
        sup.get(f"/review/?patient={south_id}")
    )
    assert ids("?scale=nonesuch") == [gad_n1, cows_n1, gad_n2]
    assert sup.get("/review/?patient=abc").status_code == 404
    page = sup.get(f"/review/?patient={first_id}")
    assert 'name="q" value="N-001"' in page.get_data(as_text=True)


def test_my_own_entries_are_marked_and_i_cannot_sign_them(world, entry, login):
    own = entry(user="sup_n", hours=2)
    theirs = entry(hours=1)
    queue = review.queue(world["sup_n"])
    assert [(q.assessment.id, q.own) for q in queue] == [(own, True), (theirs, False)]
    assessment = db.session.get(Assessment, own)
    with pytest.raises(ReviewError, match="another supervisor must sign"):
        review.sign_assessment(world["sup_n"], assessment, PASSWORD, assessment.version)
    sup = login("sup.north")
    rows = queue_rows(sup.get("/review/"))
    assert [row["id"] for row in rows] == [theirs]
    assert "Recorded by you" not in rows[0]["text"]
    (row,) = queue_rows(sup.get("/review/?show=own"))
    assert row["id"] == own
    assert "Recorded by you" in row["text"] and "Review and sign" not in row["text"]
    page = sup.get(f"/assessments/{own}")
    assert "another supervisor must sign it off" in text_of(page)
    assert f"/assessments/{own}/sign" not in page.get_data(as_text=True)
    response = sign(sup, own, version=1)
    assert response.status_code == 422
    assert "another supervisor must sign" in text_of(response)
    fresh()
    assert count(Signature) == 0
    assert db.session.get(Assessment, own).reviewed_at is None
    refused = events("review_refused")
    assert [(e.username, e.entity_id) for e in refused] == [("sup.north", own)] * 2
    assert all("another supervisor" in e.reason for e in refused)
    assert events("assessment_review") == []


# --------------------------------------------------------------------------- signing one entry


def test_a_wrong_password_signs_nothing(world, entry, login):
    entry_id = entry()
    sup = login("sup.north")
    response = sign(sup, entry_id, password="not the password at all")
    assert response.status_code == 422
    assert "That is not your password. Nothing was signed." in text_of(response)
    empty = sign(sup, entry_id, password="")
    assert empty.status_code == 422 and "Enter your password to sign." in text_of(empty)
    assessment = reload(entry_id)
    assert assessment.reviewed_at is None and assessment.reviewed_by_id is None
    assert assessment.version == 1
    assert count(Signature) == 0
    refused = events("review_refused")
    assert len(refused) == 1
    assert (refused[0].username, refused[0].entity_id) == ("sup.north", entry_id)
    assert refused[0].site_id == world["north"].id
    assert "not your password" in refused[0].reason
    assert events("assessment_review") == []
    assert [q.assessment.id for q in review.queue(world["sup_n"])] == [entry_id]


def test_signing_writes_a_signature_of_exactly_this_version(world, entry, login):
    entry_id = entry()
    patient_id = world["patient_n"].id
    sup = login("sup.north")
    before = now_utc()
    response = sign(sup, entry_id)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/assessments/{entry_id}")
    assessment = reload(entry_id)
    (signature,) = db.session.scalars(select(Signature)).all()
    assert signature.assessment_id == entry_id
    assert signature.signer_id == world["sup_n"].id
    assert signature.signer_name == "Sup.North"
    assert signature.meaning == "reviewed"
    assert signature.signed_at.tzinfo is not None
    assert signature.signed_at.utcoffset() == timedelta(0)
    assert before <= signature.signed_at <= now_utc()
    assert signature.content_hash == fingerprint(assessment)
    assert signature.invalidated_at is None and signature.invalidated_by_id is None
    assert review.signature_intact(signature)
    assert assessment.reviewed_by_id == world["sup_n"].id
    assert assessment.reviewed_at == signature.signed_at
    (event,) = events("assessment_review")
    assert (event.username, event.entity_id) == ("sup.north", entry_id)
    assert json.loads(event.details)["hash"] == signature.content_hash
    assert review.queue(world["sup_n"]) == []
    clin = login("clin.north")
    assert "Reviewed by Sup.North" in text_of(clin.get(f"/assessments/{entry_id}"))
    assert "Reviewed by Sup.North" in text_of(clin.get(f"/patients/{patient_id}"))
    page = sup.get(f"/assessments/{entry_id}")
    assert "Signed “reviewed” by Sup.North" in text_of(page)
    assert "Sign off as reviewed" not in text_of(page)


def test_signing_twice_a_non_active_or_a_changed_entry_is_refused(world, entry, login):
    sup_user = world["sup_n"]
    signed = db.session.get(Assessment, entry(hours=4))
    review.sign_assessment(sup_user, signed, PASSWORD, signed.version)
    with pytest.raises(ReviewError, match="already been signed off"):
        review.sign_assessment(sup_user, signed, PASSWORD, signed.version)
    amended = db.session.get(Assessment, entry(hours=3))
    amend_assessment(world["clin_n"], amended, 1, Answers(gad(2), amended.observed_at), "Re-scored")
    with pytest.raises(ReviewError, match="This entry is amended"):
        review.sign_assessment(sup_user, amended, PASSWORD, amended.version)
    voided = db.session.get(Assessment, entry(hours=2))
    void_assessment(world["clin_n"], voided, 1, "duplicate", "")
    with pytest.raises(ReviewError, match="This entry is voided"):
        review.sign_assessment(sup_user, voided, PASSWORD, voided.version)
    changed = db.session.get(Assessment, entry(hours=1))
    with pytest.raises(ReviewError, match="changed while you were reviewing"):
        review.sign_assessment(sup_user, changed, PASSWORD, changed.version + 1)
    south = db.session.get(Assessment, entry(patient="patient_s", user="clin_s"))
    with pytest.raises(ReviewError, match="not at one of your sites"):
        review.sign_assessment(sup_user, south, PASSWORD, south.version)
    assert len(events("review_refused")) == 5
    assert count(Signature) == 1
    signed_id, amended_id, voided_id = signed.id, amended.id, voided.id
    changed_id, south_id = changed.id, south.id

    sup = login("sup.north")
    assert sign(sup, signed_id, version=2).status_code == 422
    assert sign(sup, amended_id, version=1).status_code == 422
    assert sign(sup, voided_id, version=2).status_code == 422
    stale = sign(sup, changed_id, version=7)
    assert stale.status_code == 422
    assert "changed while you were reviewing" in text_of(stale)
    assert sign(sup, south_id, version=1).status_code == 404
    assert (
        login("clin.north")
        .post(
            f"/assessments/{changed_id}/sign",
            {"password": PASSWORD, "version": "1"},
            token_from="/",
        )
        .status_code
        == 403
    )
    fresh()
    assert count(Signature) == 1
    assert db.session.get(Assessment, changed_id).reviewed_at is None
    assert len(events("review_refused")) == 9


# ------------------------------------------------------------------ amending signed entries


def test_amending_a_signed_entry_invalidates_its_signature(world, entry, login):
    old_id = entry()
    sup = login("sup.north")
    assert sign(sup, old_id).status_code == 302
    old = reload(old_id)
    new = amend_assessment(
        world["clin_n"],
        old,
        old.version,
        Answers(gad(1, nervous=3), old.observed_at, "restless at night"),
        "Item 1 was misread",
    )
    new_id = new.id
    signature = db.session.scalars(select(Signature)).one()
    assert signature.invalidated_at is not None
    assert signature.invalidated_at.utcoffset() == timedelta(0)
    assert signature.invalidated_by_id == new_id
    assert signature.assessment_id == old_id
    assert review.signature_intact(signature)  # the old version is unchanged
    assert new.reviewed_at is None and new.reviewed_by_id is None
    (amend_event,) = events("assessment_amend")
    assert json.loads(amend_event.details)["signatures_invalidated"] == [signature.id]
    since = changes_since_review(history(new))
    assert since is not None and since[0].id == signature.id
    assert [(c.item_key, c.before, c.after) for c in since[1]] == [
        ("nervous", "1", "3"),
        ("notes", "", "restless at night"),
    ]

    old_page = text_of(sup.get(f"/assessments/{old_id}"))
    assert "Signed “reviewed” by Sup.North" in old_page
    assert "invalidated by amendment" in old_page
    rows = queue_rows(sup.get("/review/"))
    assert [row["id"] for row in rows] == [new_id]
    assert "Amended after review by Sup.North: what changed" in rows[0]["text"]
    assert f'href="/assessments/{new_id}/history"' in rows[0]["html"]
    page = sup.get(f"/assessments/{new_id}/history")
    since_section = re.search(
        r'<section class="panel" aria-labelledby="since-heading">(.*?)</section>',
        page.get_data(as_text=True),
        re.DOTALL,
    ).group(1)
    since_text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", since_section)).split())
    assert "What changed since the review by Sup.North" in since_text
    assert "Feeling nervous, anxious, or on edge 1 3" in since_text
    assert "notes restless at night" in since_text
    assert "invalidated by amendment" in text_of(page)
    # The new version can be signed in its turn.
    assert sign(sup, new_id).status_code == 302
    fresh()
    assert count(Signature) == 2


def test_the_queue_keeps_the_what_changed_link_after_a_second_amendment(world, entry, login):
    first = db.session.get(Assessment, entry())
    review.sign_assessment(world["sup_n"], first, PASSWORD, first.version)
    second = amend_assessment(
        world["clin_n"], first, first.version, Answers(gad(2), first.observed_at), "one"
    )
    third = amend_assessment(
        world["clin_n"], second, second.version, Answers(gad(3), first.observed_at), "two"
    )
    assert changes_since_review(history(third)) is not None
    (queued,) = review.queue(world["sup_n"])
    assert queued.assessment.id == third.id
    assert queued.after_review is not None
    assert queued.after_review.assessment_id == first.id
    third_id = third.id
    rows = queue_rows(login("sup.north").get("/review/"))
    assert "Amended after review by Sup.North: what changed" in rows[0]["text"]
    assert f'href="/assessments/{third_id}/history"' in rows[0]["html"]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE assessment SET total = total + 1 WHERE id = :id",
        "UPDATE item_score SET score = 3 WHERE assessment_id = :id AND item_key = 'afraid'",
        "UPDATE assessment SET notes = 'added later' WHERE id = :id",
    ],
)
def test_changing_a_signed_row_in_the_database_breaks_the_signature(world, entry, sql):
    assessment = db.session.get(Assessment, entry())
    signature = review.sign_assessment(world["sup_n"], assessment, PASSWORD, assessment.version)
    signature_id, assessment_id = signature.id, assessment.id
    assert review.signature_intact(signature)
    with db.engine.begin() as conn:
        conn.execute(text(sql), {"id": assessment_id})
    fresh()
    assert not review.signature_intact(db.session.get(Signature, signature_id))


# --------------------------------------------------------------------------- trend sign-off


def test_trend_sign_off_signs_what_was_shown_except_my_own(world, entry, login):
    patient_id = world["patient_n"].id
    second = create_patient(
        world["clin_n"], world["north"], "N-002", None, hours_ago(30), "opioid", ""
    )
    theirs = [entry(hours=5), entry(scale_key="cows", hours=4)]
    own = entry(user="sup_n", hours=3)
    already = db.session.get(Assessment, entry(hours=2))
    review.sign_assessment(world["sup_n"], already, PASSWORD, already.version)
    already_id = already.id
    voided = db.session.get(Assessment, entry(hours=6))
    void_assessment(world["clin_n"], voided, 1, "duplicate", "")
    voided_id = voided.id
    other_patient = record_for(world, second, hours=1)
    sup = login("sup.north")
    tracker = sup.get(f"/patients/{patient_id}/tracker")
    assert "Sign off what this page shows" in text_of(tracker)
    assert "Sign off 2 entries observed from" in text_of(tracker)
    assert "1 entry shown here that you recorded yourself waits for another" in text_of(tracker)
    shown = input_val(tracker, "shown")
    late = entry(hours=0.5)  # recorded after the supervisor opened the trend
    fresh()
    review_events = len(events("assessment_review"))
    response = send(
        sup, f"/patients/{patient_id}/tracker/sign", {"password": PASSWORD, "shown": shown}
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/patients/{patient_id}/tracker")
    assert "Signed off 2 entries as reviewed." in text_of(sup.get(f"/patients/{patient_id}"))
    fresh()
    for entry_id in theirs:
        assessment = db.session.get(Assessment, entry_id)
        assert assessment.reviewed_by_id == world["sup_n"].id
        (signature,) = db.session.get(Assessment, entry_id).signatures
        assert signature.content_hash == fingerprint(assessment)
        assert signature.signer_name == "Sup.North"
    for entry_id in (own, late, voided_id, other_patient):
        assert db.session.get(Assessment, entry_id).reviewed_at is None
    assert len(db.session.get(Assessment, already_id).signatures) == 1
    new_events = events("assessment_review")[review_events:]
    assert sorted(e.entity_id for e in new_events) == sorted(theirs)
    assert {e.username for e in new_events} == {"sup.north"}
    assert [q.assessment.id for q in review.queue(world["sup_n"], patient_id=patient_id)] == [
        own,
        late,
    ]


def test_trend_sign_off_with_a_wrong_password_signs_nothing(world, entry, login):
    patient_id = world["patient_n"].id
    entry_id = entry()
    sup = login("sup.north")
    shown = input_val(sup.get(f"/patients/{patient_id}/tracker"), "shown")
    response = send(
        sup,
        f"/patients/{patient_id}/tracker/sign",
        {"password": "guessing wrongly", "shown": shown},
    )
    assert response.status_code == 422
    assert "That is not your password. Nothing was signed." in text_of(response)
    fresh()
    assert db.session.get(Assessment, entry_id).reviewed_at is None
    assert count(Signature) == 0
    (refused,) = events("review_refused")
    assert refused.username == "sup.north"
    assert json.loads(refused.details) == {"patient": patient_id}
    assert events("assessment_review") == []


def test_trend_sign_off_of_another_sites_patient_is_404_and_clinicians_get_403(world, entry, login):
    south_entry = entry(patient="patient_s", user="clin_s")
    north_entry = entry()
    south_id, north_id = world["patient_s"].id, world["patient_n"].id
    data = {"password": PASSWORD, "shown": f"{south_entry}.1 {north_entry}.1"}
    assert send(login("sup.north"), f"/patients/{south_id}/tracker/sign", data).status_code == 404
    assert send(login("clin.north"), f"/patients/{north_id}/tracker/sign", data).status_code == 403
    fresh()
    assert count(Signature) == 0
    assert db.session.get(Assessment, south_entry).reviewed_at is None
    assert db.session.get(Assessment, north_entry).reviewed_at is None


def test_the_trend_service_signs_the_versions_shown_within_the_page(world, entry):
    early, later = entry(hours=3), entry(hours=1)
    patient = world["patient_n"]
    page = review.TrendShown(patient, hours_ago(4), hours_ago(2), frozenset({"gad7"}))
    shown = [(early, 1), (later, 1)]
    with pytest.raises(ReviewError, match="not your password"):
        review.sign_trend(world["sup_n"], page, shown, "nope nope nope")
    db.session.rollback()
    signed = review.sign_trend(world["sup_n"], page, shown, PASSWORD)
    assert signed.signed == [early]
    assert [(x.assessment_id, x.reason) for x in signed.left_out] == [
        (later, "not on the page you signed from")
    ]
    assert db.session.get(Assessment, early).reviewed_at is not None
    assert db.session.get(Assessment, later).reviewed_at is None
    with pytest.raises(ReviewError, match="Only supervisors"):
        review.sign_trend(world["clin_n"], page, [(later, 1)], PASSWORD)
    db.session.rollback()
    assert db.session.get(Assessment, later).reviewed_at is None
