"""The review queue as a busy supervisor uses it: pages of 50 that never hide an entry, a
patient found by identifier, a capped count, the supervisor's own entries apart, batch
sign-off with one password (each entry its own signature of the version shown, each bad one
refused by name), and "sign and next" from an entry's page.

Over HTTP as a supervisor uses it (conftest.Browser); ``fresh()`` ends the test session's
transaction before it reads what a request wrote.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import GAD7, PASSWORD
from pages import checked, field_errors, input_val, inputs
from pages import readable_text as text_of
from sqlalchemy import func, select

from clinic_log import audit
from clinic_log.assessments.services import Answers, amend_assessment, fingerprint
from clinic_log.auth.services import LOCKOUT_FAILURES
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, Signature, User
from clinic_log.patients.services import create_patient
from clinic_log.review import services as review

PAGE = 50


def gad(default: int = 1) -> dict[str, int]:
    return dict.fromkeys(GAD7, default)


def fresh() -> None:
    db.session.commit()


def events(action: str) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def signatures() -> int:
    return db.session.scalar(select(func.count()).select_from(Signature))


def rows(page) -> list[dict]:
    """Each row of the queue's table: the entry it links to, its text and its markup."""
    body = re.search(r"<tbody>(.*?)</tbody>", page.get_data(as_text=True), re.DOTALL)
    found = []
    for row in re.findall(r"<tr>(.*?)</tr>", body.group(1) if body else "", re.DOTALL):
        found.append(
            {
                "id": int(re.search(r'href="/assessments/(\d+)"', row).group(1)),
                "text": " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split()),
                "html": row,
            }
        )
    return found


def link(page, rel: str) -> str | None:
    match = re.search(rf'<a [^>]*rel="{rel}"[^>]*href="([^"]+)"', page.get_data(as_text=True))
    return html.unescape(match.group(1)) if match else None


def outcome(page, entry_id: int) -> str:
    """The text of the batch result's line about one entry."""
    match = re.search(
        rf'<li data-entry="{entry_id}">(.*?)</li>', page.get_data(as_text=True), re.DOTALL
    )
    assert match, f"entry {entry_id} is not named in the result"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


@pytest.fixture
def sup_two(world, make_user):
    return make_user("sup.two", "supervisor", ["NORTH"])


@pytest.fixture
def waiting(world, add_assessment):
    """Record ``n`` GAD-7s by ``user``, observed ``start`` minutes ago and then every ``step``
    minutes; their ids, oldest first."""

    def _make(n, user="clin_n", patient="patient_n", start=2400, step=10, same=()):
        ids = []
        for i in range(n):
            minutes = start - i * step
            if i in same:  # the same observed time as the previous one: the id breaks the tie
                minutes += step
            observed = (now_utc() - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
            ids.append(
                add_assessment(world[patient], world[user], "gad7", gad(), observed_at=observed).id
            )
        return ids

    return _make


def batch(browser, page, ticked, password=PASSWORD, **extra):
    """Post the batch form of a queue page with ``ticked`` entry ids (their shown versions)."""
    values = {int(v.split(".")[0]): v for v in (i["value"] for i in inputs(page, "entry"))}
    data = {
        "csrf_token": input_val(page, "csrf_token"),
        "password": password,
        "entry": [values[entry_id] for entry_id in ticked],
    }
    for name in ("order", "patient", "scale", "after", "before", "shown"):
        found = inputs(page, name)
        hidden = [i for i in found if i.get("type") == "hidden"]
        if hidden:
            data[name] = hidden[0]["value"]
    data.update(extra)
    return browser.post("/review/sign", data)


# --------------------------------------------------------------------------- paging


@pytest.mark.parametrize("order", ["oldest", "newest"])
def test_paging_reaches_every_waiting_entry_even_when_some_are_signed_meanwhile(
    world, waiting, login, sup_two, order
):
    ids = waiting(137, same={10, 49, 50, 51, 99, 100})
    sup = login("sup.north")
    other = sup_two
    url = f"/review/?order={order}"
    seen: list[int] = []
    signed_unseen: set[int] = set()
    pages = 0
    while url:
        page = sup.get(url)
        assert page.status_code == 200
        pages += 1
        shown = [row["id"] for row in rows(page)]
        assert len(shown) <= PAGE
        seen += shown
        # Between page loads another supervisor signs two seen and two not yet seen entries.
        not_seen = [i for i in ids if i not in seen and i not in signed_unseen]
        for entry_id in shown[:2] + not_seen[:2]:
            assessment = db.session.get(Assessment, entry_id)
            review.sign_assessment(other, assessment, PASSWORD, assessment.version)
        signed_unseen |= set(not_seen[:2])
        fresh()
        url = link(page, "next")
    assert len(seen) == len(set(seen)), "an entry was shown twice"
    assert set(seen) | signed_unseen == set(ids), "an entry was never shown"
    assert not set(seen) & signed_unseen
    expected = [i for i in ids if i not in signed_unseen]
    assert seen == (expected if order == "oldest" else expected[::-1])
    assert pages == 3


def test_pages_go_back_and_keep_their_order(world, waiting, login):
    ids = waiting(120)
    sup = login("sup.north")
    first = sup.get("/review/?order=newest")
    assert [r["id"] for r in rows(first)] == ids[::-1][:PAGE]
    assert link(first, "prev") is None
    second = sup.get(link(first, "next"))
    assert [r["id"] for r in rows(second)] == ids[::-1][PAGE : 2 * PAGE]
    assert parse_qs(urlsplit(link(second, "next")).query)["order"] == ["newest"]
    back = sup.get(link(second, "prev"))
    assert [r["id"] for r in rows(back)] == ids[::-1][:PAGE]
    last = sup.get(link(second, "next"))
    assert [r["id"] for r in rows(last)] == ids[::-1][2 * PAGE :]
    assert link(last, "next") is None
    # A cursor no entry of my sites has is a bad link, not the first page in disguise.
    south = world["patient_s"]
    south_entry = record_south(world, south)
    assert sup.get(f"/review/?after={south_entry}").status_code == 404
    assert sup.get("/review/?after=2147483647").status_code == 404


def record_south(world, patient) -> int:
    from clinic_log.assessments.services import record_assessment
    from clinic_log.scale_registry import get_scale

    return record_assessment(
        world["clin_s"], patient, get_scale("gad7"), gad(), observed_at=now_utc()
    ).id


def test_the_count_is_capped(world, waiting, login, monkeypatch):
    monkeypatch.setattr(review, "COUNT_CAP", 5)
    waiting(4)
    sup = login("sup.north")
    assert "4 entries wait for your sign-off" in text_of(sup.get("/review/"))
    waiting(3, start=1200)
    page = sup.get("/review/")
    assert "5+ entries wait for your sign-off" in text_of(page)
    assert len(rows(page)) == 7
    assert review.format_count(1000, 1000) == "1,000+"
    assert review.format_count(999, 1000) == "999"


def test_the_page_costs_the_same_statements_with_few_or_many_waiting(
    world, waiting, login, count_queries
):
    waiting(3, user="sup_n")
    waiting(3)
    sup = login("sup.north")
    sup.get("/review/")  # the login's first page view does its one-off work

    def statements(url):
        with count_queries() as counted:
            assert sup.get(url).status_code == 200
        return len(counted)

    few = [statements(u) for u in ("/review/", "/review/?order=newest", "/review/?show=own")]
    waiting(70, start=1800)
    waiting(70, user="sup_n", start=1500)
    many = [statements(u) for u in ("/review/", "/review/?order=newest", "/review/?show=own")]
    assert few == many


# --------------------------------------------------------------------------- finding a patient


def test_a_patient_is_found_by_identifier_not_picked_from_every_patient(world, waiting, login):
    second = create_patient(
        world["clin_n"], world["north"], "N-002", None, now_utc() - timedelta(days=30), "opioid", ""
    )
    world["patient_2"] = second
    on_first = waiting(2)
    on_second = waiting(2, patient="patient_2", start=1500)
    record_south(world, world["patient_s"])
    sup = login("sup.north")
    page = sup.get("/review/")
    assert '<select id="patient"' not in page.get_data(as_text=True)
    assert inputs(page, "q") and inputs(page, "q")[0]["type"] == "search"

    found = sup.get("/review/?q=n-002")  # case and spacing as a person types them
    assert [r["id"] for r in rows(found)] == on_second
    assert "Patient N-002" in text_of(found)
    assert inputs(found, "q")[0]["value"] == "n-002"
    # Paging and signing keep the patient, by id.
    assert input_val(found, "patient") == str(second.id)
    assert [r["id"] for r in rows(sup.get(f"/review/?patient={world['patient_n'].id}"))] == (
        on_first
    )
    # A partial identifier offers the patients it matches; another site's are not among them.
    several = sup.get("/review/?q=N-00")
    assert f"/review/?patient={second.id}" in several.get_data(as_text=True)
    assert "S-001" not in text_of(several)
    nobody = sup.get("/review/?q=S-001")
    assert "No patient at your sites has an identifier containing “S-001”" in text_of(nobody)
    assert rows(nobody) == []


# --------------------------------------------------------------------------- own entries


def test_my_own_entries_are_apart_from_the_list_to_sign(world, waiting, login):
    mine = waiting(3, user="sup_n", start=2700)
    theirs = waiting(2)
    sup = login("sup.north")
    page = sup.get("/review/")
    assert [r["id"] for r in rows(page)] == theirs
    assert "2 entries wait for your sign-off" in text_of(page)
    assert "Recorded by you — another supervisor signs (3)" in text_of(page)
    own = sup.get(link(page, "own") or "/review/?show=own")
    assert [r["id"] for r in rows(own)] == mine
    assert all("another supervisor signs" in r["text"] for r in rows(own))
    assert inputs(own, "entry") == [] and inputs(own, "password") == []


# --------------------------------------------------------------------------- batch sign-off


def test_batch_sign_off_gives_each_ticked_entry_its_own_signature_of_the_shown_version(
    world, waiting, login
):
    ids = waiting(5)
    sup = login("sup.north")
    page = sup.get("/review/")
    shown = {int(v.split(".")[0]): int(v.split(".")[1]) for v in input_vals(page, "entry")}
    assert shown == dict.fromkeys(ids, 1)
    result = batch(sup, page, ids[:3])
    assert result.status_code == 200
    assert "Signed 3 entries" in text_of(result)
    for entry_id in ids[:3]:
        assert "N-001" in outcome(result, entry_id)
    assert [r["id"] for r in rows(result)] == ids[3:]
    fresh()
    signed = db.session.scalars(select(Signature).order_by(Signature.assessment_id)).all()
    assert [s.assessment_id for s in signed] == ids[:3]
    for signature in signed:
        assessment = db.session.get(Assessment, signature.assessment_id)
        assert signature.content_hash == fingerprint(assessment)
        assert signature.signer_id == world["sup_n"].id and signature.meaning == "reviewed"
        assert assessment.reviewed_by_id == world["sup_n"].id
    audited = events("assessment_review")
    assert sorted(e.entity_id for e in audited) == ids[:3]
    assert {json.loads(e.details)["signature"] for e in audited} == {s.id for s in signed}
    assert all(e.site_id == world["north"].id for e in audited)

    # "Sign all on this page" signs every entry the page showed, without ticking.
    page = sup.get("/review/")
    every = batch(sup, page, [], all="1")
    assert "Signed 2 entries" in text_of(every)
    fresh()
    assert signatures() == 5
    assert "Nothing waits for your sign-off" in text_of(sup.get("/review/"))


def input_vals(page, name) -> list[str]:
    return [i["value"] for i in inputs(page, name)]


def test_a_batch_refuses_each_bad_entry_by_name_and_signs_the_rest(world, waiting, login, sup_two):
    good = waiting(2)
    stale, amended, signed_meanwhile = waiting(3, start=1800)
    (mine,) = waiting(1, user="sup_n", start=1500)
    south = record_south(world, world["patient_s"])
    sup = login("sup.north")
    page = sup.get("/review/")
    # Between showing the page and signing: one entry is amended, one signed by sup.two.
    entry = db.session.get(Assessment, amended)
    amend_assessment(
        world["clin_n"], entry, entry.version, Answers(gad(2), entry.observed_at), "re-scored"
    )
    entry = db.session.get(Assessment, signed_meanwhile)
    review.sign_assessment(sup_two, entry, PASSWORD, entry.version)
    fresh()
    data = {
        "csrf_token": input_val(page, "csrf_token"),
        "password": PASSWORD,
        "entry": [
            f"{good[0]}.1",
            f"{stale}.2",  # a version the page never showed
            f"{amended}.1",
            f"{signed_meanwhile}.1",
            f"{mine}.1",  # not offered, but posted anyway
            f"{south}.1",  # another site's
            f"{good[1]}.1",
        ],
    }
    result = sup.post("/review/sign", data)
    assert result.status_code == 200
    assert "Signed 2 entries" in text_of(result)
    assert "Not signed: 5" in text_of(result)
    assert "changed since you opened the page" in outcome(result, stale)
    assert "amended since you opened the page" in outcome(result, amended)
    assert "already signed off by Sup.Two" in outcome(result, signed_meanwhile)
    assert "you recorded it" in outcome(result, mine)
    assert "not at one of your sites" in outcome(result, south)
    assert "S-001" not in text_of(result)  # another site's entry is named by number only
    for entry_id in (stale, amended, signed_meanwhile, mine):
        assert "N-001" in outcome(result, entry_id)
    fresh()
    signed = db.session.scalars(select(Signature.assessment_id).order_by(Signature.id)).all()
    assert sorted(signed) == sorted([signed_meanwhile, *good])
    refused = {e.entity_id: e for e in events("review_refused")}
    assert set(refused) == {stale, amended, signed_meanwhile, mine, south}
    assert refused[south].site_id == world["south"].id
    assert refused[stale].site_id == world["north"].id
    assert all(e.username == "sup.north" for e in refused.values())


def test_a_batch_is_signed_whole_or_not_at_all(world, waiting, monkeypatch):
    ids = waiting(3)
    fresh()
    real = audit.record
    calls = []

    def failing(action, *args, **kwargs):
        if action == "assessment_review":
            calls.append(action)
            if len(calls) == 2:
                raise RuntimeError("storage failed")
        return real(action, *args, **kwargs)

    monkeypatch.setattr(audit, "record", failing)
    with pytest.raises(RuntimeError):
        review.sign_versions(world["sup_n"], [(i, 1) for i in ids], PASSWORD, purpose="batch_sign")
    db.session.rollback()
    assert signatures() == 0
    assert all(db.session.get(Assessment, i).reviewed_at is None for i in ids)


def test_a_wrong_password_signs_nothing_keeps_the_ticks_and_counts_toward_the_lockout(
    world, waiting, login
):
    ids = waiting(3)
    sup = login("sup.north")
    page = sup.get("/review/")
    wrong = batch(sup, page, ids[:2], password="not it")
    assert wrong.status_code == 422
    assert "That is not your password. Nothing was signed." in field_errors(wrong, "password")
    assert checked(wrong, "entry") == [f"{i}.1" for i in ids[:2]]
    nothing = batch(sup, page, [])
    assert nothing.status_code == 422
    assert "Tick the entries to sign" in text_of(nothing)
    fresh()
    assert signatures() == 0
    assert [json.loads(e.details)["purpose"] for e in events("reentry_failure")] == ["batch_sign"]
    assert db.session.get(User, world["sup_n"].id).failed_login_count == 1
    for _ in range(LOCKOUT_FAILURES - 1):
        last = batch(sup, page, ids[:1], password="still not it")
    assert last.status_code == 302 and "/login" in last.headers["Location"]
    fresh()
    assert signatures() == 0
    assert sup.get("/review/").status_code == 302  # logged out


# --------------------------------------------------------------------------- sign and next


def test_sign_and_next_opens_the_next_waiting_entry_with_the_queue_s_filters(
    world, waiting, login, add_assessment
):
    ids = waiting(4)
    (mine,) = waiting(1, user="sup_n", start=2375)
    cows = add_assessment(world["patient_n"], world["clin_n"], "cows").id
    sup = login("sup.north")
    queue = sup.get("/review/?order=newest&scale=gad7")
    assert cows not in [r["id"] for r in rows(queue)] and mine not in [r["id"] for r in rows(queue)]
    first = rows(queue)[0]
    assert first["id"] == ids[-1]
    match = re.search(r'href="(/assessments/\d+\?[^"#]*)#sign-heading"', first["html"])
    entry_url = html.unescape(match.group(1))
    assert parse_qs(urlsplit(entry_url).query) == {"order": ["newest"], "scale": ["gad7"]}

    def sign_and_next(url):
        page = sup.get(url)
        assert page.status_code == 200
        data = {
            name: input_val(page, name)
            for name in ("csrf_token", "version", "queue_order", "queue_scale", "queue_patient")
        }
        path = urlsplit(url).path
        return sup.post(f"{path}/sign", {**data, "password": PASSWORD, "then": "next"})

    visited = [ids[-1]]
    url = entry_url
    while True:
        response = sign_and_next(url)
        assert response.status_code == 302
        url = response.headers["Location"]
        if not url.startswith("/assessments/"):
            break
        visited.append(int(re.match(r"/assessments/(\d+)", url).group(1)))
        assert parse_qs(urlsplit(url).query) == {"order": ["newest"], "scale": ["gad7"]}
    assert visited == ids[::-1]  # newest first, never my own or another scale's
    assert urlsplit(url).path == "/review/"
    assert parse_qs(urlsplit(url).query) == {"order": ["newest"], "scale": ["gad7"]}
    fresh()
    assert sorted(db.session.scalars(select(Signature.assessment_id))) == sorted(ids)
    # Without "next" the single sign-off stays on the entry, as before.
    plain = waiting(1, start=600)[0]
    page = sup.get(f"/assessments/{plain}")
    response = sup.post(
        f"/assessments/{plain}/sign",
        {
            "csrf_token": input_val(page, "csrf_token"),
            "version": input_val(page, "version"),
            "password": PASSWORD,
        },
    )
    assert response.headers["Location"].endswith(f"/assessments/{plain}")
