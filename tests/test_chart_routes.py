"""Chart routes and the tracker page, driven over HTTP as a clinician's browser would.

The renderer itself (``clinic_log.charts.render``/``series``) is unit-tested in
test_chart_render.py; here: what the routes answer, who may ask, which rows a chart shows,
and the ETag/cache contract (an ETag names exactly the data drawn, so it changes when that
data changes and only then).
"""

from __future__ import annotations

import html
import re
import struct
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, update

from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, ItemScore
from clinic_log.patients.services import create_patient
from clinic_log.scale_registry import get_scale

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
CACHE_KEY = "clinic_log.chart_cache"
NOTICE = "clinic_log records symptoms. It gives no dosing or treatment advice."
# The one place the product may name dosing: saying that it gives none.
ALLOWED = re.compile(r"gives? no dosing or treatment advice")
DOSING = re.compile(
    r"\b\d+(\.\d+)? ?(mg|mcg|ug|ml)\b|\bdos(e|es|ing|age)\b|\bmedication\b|buprenorphine|"
    r"methadone|naloxone|\binduction\b|\btaper|titrat|next dose|give \d|recommend|\bconsider",
    re.IGNORECASE,
)
# A data point of the trend line: a marker filled and stroked in the line colour (complete
# totals; incomplete ones are white-filled). Axis ticks are drawn in grey.
_COMPLETE_MARKER = re.compile(r'<use [^>]*style="fill: #0072b2; stroke: #0072b2"')


# --------------------------------------------------------------------------- helpers


def scores_for(scale_key: str, total: int) -> dict[str, int]:
    """Item scores adding up to ``total`` (greedy over each item's allowed scores)."""
    scale = get_scale(scale_key)
    scores, left = {}, total
    for item in scale.items:
        score = max(s for s in item.allowed_scores if s <= left)
        scores[item.key] = score
        left -= score
    assert left == 0, f"cannot make {scale_key} total {total}"
    return scores


def points(svg: str) -> int:
    """How many complete totals a trend SVG draws."""
    return len(_COMPLETE_MARKER.findall(svg))


def text_of(response) -> str:
    return response.get_data(as_text=True)


def cache(app):
    return app.extensions[CACHE_KEY]


def etag_of(browser, url: str) -> str:
    """The chart's ETag without drawing it: ``If-None-Match: *`` matches any current
    representation, so the route answers 304 with the ETag before rendering."""
    response = browser.get(url, headers={"If-None-Match": "*"})
    assert response.status_code == 304, (url, response.status_code)
    return response.headers["ETag"]


def sections(page: str) -> dict[str, str]:
    """The tracker's chart sections by scale key, in page order."""
    found = re.findall(
        r'<section class="chart-section" aria-labelledby="chart-([a-z0-9_]+)">(.*?)</section>',
        page,
        re.S,
    )
    return dict(found)


def img_srcs(section: str) -> list[str]:
    return [html.unescape(src) for src in re.findall(r'<img class="chart" src="([^"]+)"', section)]


def trend_alt(section: str) -> str:
    match = re.search(r'alt="(Trend of [^"]*)"', section)
    assert match, section
    return html.unescape(match.group(1))


def table_rows(section: str, caption: str) -> list[str]:
    table = re.search(rf"<caption>{re.escape(caption)}.*?</table>", section, re.S)
    assert table, (caption, section)
    return re.findall(r"<tr><td>.*?</tr>", table.group(0), re.S)


def no_dosing(page: str):
    found = DOSING.search(ALLOWED.sub("", page))
    return found.group(0) if found else None


@pytest.fixture(autouse=True)
def every_view_audited(app):
    """Each chart request writes its own view line here, so that repeated requests do the same
    work and the query counts below compare like with like (test_read_audit.py covers the
    window that spares repeats in normal use)."""
    app.extensions["clinic_log.recent_views"].window = 0


@pytest.fixture
def ids(world):
    """Plain ids of the world's objects, read before any request changes the database."""
    values = SimpleNamespace(
        pid_n=world["patient_n"].id,
        pid_s=world["patient_s"].id,
        start_n=world["patient_n"].episodes[0].started_at,
    )
    db.session.commit()  # end the fixture session's read transaction
    return values


@pytest.fixture
def clinician(browser, world):
    browser.login("clin.north")
    return browser


@pytest.fixture
def cows_three(world, add_assessment, ids):
    """N-001 with three COWS totals (Mild 6, Moderate 15, Moderately severe 30), the first
    one hour after the episode start, and one symptom rating with aches not assessed."""
    now = now_utc()
    made = [
        add_assessment(
            world["patient_n"], world["clin_n"], scores=scores_for("cows", total), observed_at=at
        )
        for total, at in (
            (6, ids.start_n + timedelta(hours=1)),
            (15, now - timedelta(hours=20)),
            (30, now - timedelta(hours=2)),
        )
    ]
    add_assessment(
        world["patient_n"],
        world["clin_n"],
        "symptom_nrs",
        scores={"anxiety": 4, "aches": None, "insomnia": 7, "irritability": 2},
        not_assessed_reasons={"aches": "asleep"},
        observed_at=now - timedelta(hours=3),
    )
    made = SimpleNamespace(ids=[a.id for a in made], times=[a.observed_at for a in made])
    db.session.commit()
    return made


def local_day(at: datetime, tz=LONDON) -> str:
    return at.astimezone(tz).date().isoformat()


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("path", ["cows", "cows/items", "domains"])
def test_charts_are_valid_png_and_svg(clinician, ids, cows_three, path):
    png = clinician.get(f"/patients/{ids.pid_n}/charts/{path}.png")
    assert png.status_code == 200
    assert png.mimetype == "image/png"
    assert png.data.startswith(PNG_MAGIC)
    svg = clinician.get(f"/patients/{ids.pid_n}/charts/{path}.svg")
    assert svg.status_code == 200
    assert svg.mimetype == "image/svg+xml"
    assert "<svg" in text_of(svg)
    for response in (png, svg):
        assert response.headers["Cache-Control"] == "private, no-cache"
        assert response.headers["ETag"]


def test_trend_svg_shows_the_published_bands_and_the_episode_start(clinician, ids, cows_three):
    svg = text_of(clinician.get(f"/patients/{ids.pid_n}/charts/cows.svg"))
    for label in (">Mild<", ">Moderate<", ">Moderately severe<", ">Severe<"):
        assert label in svg
    assert "episode start" in svg
    assert "COWS total (0–48)" in svg
    assert points(svg) == 3


def test_heatmap_and_domains_svg_name_their_items(clinician, ids, cows_three):
    heatmap = text_of(clinician.get(f"/patients/{ids.pid_n}/charts/cows/items.svg"))
    assert "Gooseflesh skin" in heatmap and "Resting pulse rate" in heatmap
    domains = text_of(clinician.get(f"/patients/{ids.pid_n}/charts/domains.svg"))
    for label in ("Anxiety", "Aches", "Sleep problems", "Irritability"):
        assert label in domains


@pytest.mark.parametrize("path", ["cows", "cows/items", "domains"])
def test_an_empty_range_is_a_chart_that_says_so(clinician, ids, cows_three, path):
    response = clinician.get(
        f"/patients/{ids.pid_n}/charts/{path}.svg?start=2020-01-01&end=2020-01-31"
    )
    assert response.status_code == 200
    assert "No assessments in this range" in text_of(response)


def test_a_patient_without_entries_gets_an_empty_chart_not_an_error(clinician, ids):
    response = clinician.get(f"/patients/{ids.pid_n}/charts/cows.svg")
    assert response.status_code == 200
    assert "No assessments in this range" in text_of(response)


# --------------------------------------------------------------------------- permissions

CHART_PATHS = ["charts/cows.png", "charts/cows/items.svg", "charts/domains.png", "tracker"]


def test_anonymous_is_sent_to_login(browser, ids):
    for path in CHART_PATHS:
        response = browser.get(f"/patients/{ids.pid_n}/{path}")
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login"), path


def test_admin_is_refused(browser, ids):
    browser.login("admin.one")
    for path in CHART_PATHS:
        assert browser.get(f"/patients/{ids.pid_n}/{path}").status_code == 403, path


def test_supervisor_of_the_site_may_see_charts(browser, ids, cows_three):
    browser.login("sup.north")
    assert browser.get(f"/patients/{ids.pid_n}/charts/cows.png").status_code == 200
    assert browser.get(f"/patients/{ids.pid_n}/tracker").status_code == 200


def test_another_sites_patient_is_not_found_and_the_refusal_is_audited(
    clinician, world, add_assessment, ids
):
    add_assessment(world["patient_s"], world["clin_s"])
    db.session.commit()
    for path in CHART_PATHS:
        response = clinician.get(f"/patients/{ids.pid_s}/{path}")
        assert response.status_code == 404, path
        assert not response.data.startswith(PNG_MAGIC) and b"<svg" not in response.data
    refused = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "access_refused").order_by(AuditEvent.id)
    ).all()
    assert [(e.entity, e.entity_id, e.username) for e in refused] == [
        ("patient", ids.pid_s, "clin.north")
    ] * len(CHART_PATHS)
    for event, path in zip(refused, CHART_PATHS, strict=True):
        assert f"/patients/{ids.pid_s}/{path}" in event.details


def test_unknown_scale_or_format_is_not_found(clinician, ids):
    for path in (
        "charts/nonesuch.png",
        "charts/nonesuch/items.svg",
        "charts/COWS.png",
        "charts/cows.gif",
        "charts/cows.PNG",
        "charts/cows/items.gif",
        "charts/domains.gif",
        "charts/cows",
        "charts/items.png",
    ):
        assert clinician.get(f"/patients/{ids.pid_n}/{path}").status_code == 404, path


def test_bad_or_unknown_patient_id_is_not_found(clinician, ids):
    for pid in ("abc", "0", "-1", "99999", "2147483648", "1.5"):
        assert clinician.get(f"/patients/{pid}/charts/cows.png").status_code == 404, pid


# --------------------------------------------------------------------------- bad input

BAD_QUERIES = [
    ("start=2026-13-01", "start date must look like 2026-03-04"),
    ("start=yesterday", "start date must look like 2026-03-04"),
    ("start=2026-1-1", "start date must look like 2026-03-04"),
    ("start=0001-01-01", "start date must look like 2026-03-04"),
    ("start=20260101", "start date must look like 2026-03-04"),
    ("start=2026-02-30", "start date must look like 2026-03-04"),
    ("end=2026-13-01", "end date must look like 2026-03-04"),
    ("end=yesterday", "end date must look like 2026-03-04"),
    ("end=2026-1-1", "end date must look like 2026-03-04"),
    ("end=0001-01-01", "end date must look like 2026-03-04"),
    ("end=9999-12-31", "end date must look like 2026-03-04"),
    ("start=2026-03-05&end=2026-03-04", "end date is before the start date"),
    ("x=sideways", "x must be 'time' or 'hours'"),
    ("x=", "x must be 'time' or 'hours'"),
    ("start=%3Cscript%3Ealert(1)%3C/script%3E", "start date must look like 2026-03-04"),
]


@pytest.mark.parametrize("path", ["cows.png", "cows/items.svg", "domains.svg"])
def test_bad_options_are_a_400_with_a_plain_message(clinician, ids, cows_three, path):
    for query, message in BAD_QUERIES:
        response = clinician.get(f"/patients/{ids.pid_n}/charts/{path}?{query}")
        assert response.status_code == 400, query
        assert response.mimetype == "text/plain", query
        assert message in text_of(response), query
        assert "<script" not in text_of(response), query
        assert "ETag" not in response.headers


def test_an_iso_week_date_is_refused_like_any_other_non_calendar_date(clinician, ids):
    """date.fromisoformat alone would read 2026-W01-1 (ten characters) as 2025-12-29."""
    for query in ("start=2026-W01-1", "end=2026-W01-1", "start=2026-W011"):
        response = clinician.get(f"/patients/{ids.pid_n}/charts/cows.png?{query}")
        assert response.status_code == 400, query
        assert "must look like 2026-03-04" in text_of(response), query
    tracker = clinician.get(f"/patients/{ids.pid_n}/tracker?start=2026-W01-1")
    assert tracker.status_code == 400


def test_the_same_day_twice_is_a_valid_one_day_range(clinician, ids, cows_three):
    day = now_utc().astimezone(LONDON).date().isoformat()
    response = clinician.get(f"/patients/{ids.pid_n}/charts/cows.svg?start={day}&end={day}")
    assert response.status_code == 200


# --------------------------------------------------------------------------- caching


def test_etag_is_stable_and_repeats_come_from_the_cache(app, clinician, ids, cows_three):
    url = f"/patients/{ids.pid_n}/charts/cows.png"
    first = clinician.get(url)
    counts = (cache(app).hits, cache(app).misses)
    second = clinician.get(url)
    assert first.headers["ETag"] == second.headers["ETag"]
    assert first.data == second.data
    assert (cache(app).hits, cache(app).misses) == (counts[0] + 1, counts[1])


def test_if_none_match_answers_304_without_a_body(app, clinician, ids, cows_three):
    url = f"/patients/{ids.pid_n}/charts/cows.svg"
    etag = clinician.get(url).headers["ETag"]
    counts = (cache(app).hits, cache(app).misses)
    again = clinician.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "private, no-cache"
    # A 304 neither renders nor reads the cache.
    assert (cache(app).hits, cache(app).misses) == counts
    other = clinician.get(url, headers={"If-None-Match": '"0123456789abcdef"'})
    assert other.status_code == 200 and "<svg" in text_of(other)


def test_a_weak_copy_of_the_etag_also_answers_304(clinician, ids, cows_three):
    url = f"/patients/{ids.pid_n}/charts/cows.svg"
    etag = clinician.get(url).headers["ETag"]
    assert clinician.get(url, headers={"If-None-Match": f"W/{etag}"}).status_code == 304


def test_a_png_etag_is_never_answered_for_the_svg(clinician, ids, cows_three):
    base = f"/patients/{ids.pid_n}/charts/cows"
    png_tag = clinician.get(f"{base}.png").headers["ETag"]
    svg = clinician.get(f"{base}.svg", headers={"If-None-Match": png_tag})
    assert svg.status_code == 200
    assert svg.mimetype == "image/svg+xml" and "<svg" in text_of(svg)
    assert svg.headers["ETag"] != png_tag
    # and the cache (keyed by ETag) hands each format its own bytes
    assert clinician.get(f"{base}.png").data.startswith(PNG_MAGIC)
    assert "<svg" in text_of(clinician.get(f"{base}.svg"))


def test_each_option_names_a_different_chart(clinician, ids, cows_three):
    base = f"/patients/{ids.pid_n}/charts"
    urls = [
        f"{base}/cows.png",
        f"{base}/cows.svg",
        f"{base}/cows.png?x=hours",
        f"{base}/cows.png?start=2026-01-01",
        f"{base}/cows.png?end=2030-01-01",
        f"{base}/cows.png?start=2026-01-01&end=2030-01-01",
        f"{base}/cows/items.png",
        f"{base}/cows/items.svg",
        f"{base}/cows/items.png?start=2026-01-01",
        f"{base}/cows/items.png?x=hours",  # the heatmap follows the trend's time axis
        f"{base}/domains.png",
        f"{base}/domains.svg",
        f"{base}/symptom_nrs.png",
        f"{base}/symptom_nrs/items.png",
    ]
    tags = {url: etag_of(clinician, url) for url in urls}
    # The ETag of a 304 is the one the full answer carries.
    assert clinician.get(urls[0]).headers["ETag"] == tags[urls[0]]
    assert len(set(tags.values())) == len(urls), tags


def test_etag_changes_with_the_charts_own_data_and_only_then(
    clinician, world, add_assessment, make_user, ids, cows_three
):
    def tags():
        return {
            path: etag_of(clinician, f"/patients/{ids.pid_n}/charts/{path}")
            for path in ("cows.png", "cows/items.png", "domains.png", "symptom_nrs.png")
        }

    before = tags()
    assert tags() == before  # unchanged data, unchanged tags

    # Another patient at the same site, and one at another site: nothing changes.
    other = create_patient(
        world["clin_n"], world["north"], "N-002", None, now_utc() - timedelta(days=1), "opioid", ""
    )
    add_assessment(other, world["clin_n"], scores=scores_for("cows", 20))
    add_assessment(other, world["clin_n"], "symptom_nrs")
    add_assessment(world["patient_s"], world["clin_s"], scores=scores_for("cows", 20))
    # Another scale of this patient: its own charts only.
    add_assessment(world["patient_n"], world["clin_n"], "gad7")
    db.session.commit()
    assert tags() == before

    add_assessment(world["patient_n"], world["clin_n"], scores=scores_for("cows", 8))
    db.session.commit()
    after_cows = tags()
    assert after_cows["cows.png"] != before["cows.png"]
    assert after_cows["cows/items.png"] != before["cows/items.png"]
    assert after_cows["domains.png"] == before["domains.png"]
    assert after_cows["symptom_nrs.png"] == before["symptom_nrs.png"]

    add_assessment(world["patient_n"], world["clin_n"], "symptom_nrs")
    db.session.commit()
    after_nrs = tags()
    assert after_nrs["cows.png"] == after_cows["cows.png"]
    assert after_nrs["domains.png"] != after_cows["domains.png"]
    assert after_nrs["symptom_nrs.png"] != after_cows["symptom_nrs.png"]


def test_a_cached_chart_is_not_served_after_the_data_changed(
    clinician, world, add_assessment, ids, cows_three
):
    url = f"/patients/{ids.pid_n}/charts/cows.svg"
    first = clinician.get(url)
    assert points(text_of(first)) == 3
    add_assessment(world["patient_n"], world["clin_n"], scores=scores_for("cows", 10))
    db.session.commit()
    stale = clinician.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert stale.status_code == 200
    assert points(text_of(stale)) == 4


@pytest.mark.parametrize("status", ["amended", "voided"])
def test_amended_and_voided_entries_leave_the_charts(clinician, ids, cows_three, status):
    trend = f"/patients/{ids.pid_n}/charts/cows.svg"
    heatmap = f"/patients/{ids.pid_n}/charts/cows/items.svg"
    before = clinician.get(trend)
    heat_before = clinician.get(heatmap).headers["ETag"]
    assert points(text_of(before)) == 3
    assert "3 COWS assessments" in trend_alt(
        sections(text_of(clinician.get(f"/patients/{ids.pid_n}/tracker")))["cows"]
    )

    # Directly in the table, without touching the row's version: the status alone counts.
    begin_write(db.session)
    db.session.execute(
        update(Assessment).where(Assessment.id == cows_three.ids[1]).values(status=status)
    )
    db.session.commit()

    after = clinician.get(trend, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert points(text_of(after)) == 2
    assert clinician.get(heatmap).headers["ETag"] != heat_before
    page = text_of(clinician.get(f"/patients/{ids.pid_n}/tracker"))
    cows = sections(page)["cows"]
    assert "2 COWS assessments" in trend_alt(cows)
    assert len(table_rows(cows, "COWS totals")) == 2
    assert f"/assessments/{cows_three.ids[1]}" not in cows


def test_all_entries_voided_leaves_an_empty_chart_and_no_tracker_section(
    clinician, world, add_assessment, ids
):
    only = add_assessment(world["patient_n"], world["clin_n"]).id
    begin_write(db.session)
    db.session.execute(update(Assessment).where(Assessment.id == only).values(status="voided"))
    db.session.commit()
    svg = text_of(clinician.get(f"/patients/{ids.pid_n}/charts/cows.svg"))
    assert "No assessments in this range" in svg
    page = text_of(clinician.get(f"/patients/{ids.pid_n}/tracker"))
    assert sections(page) == {}
    assert "No assessments recorded yet." in page


# --------------------------------------------------------------------------- range and x axis


def _summer(now: datetime) -> int:
    """The latest year whose mid-July (British Summer Time) is safely in the past."""
    return now.year if now > datetime(now.year, 7, 20, tzinfo=UTC) else now.year - 1


def test_range_uses_the_sites_local_days(clinician, world, add_assessment):
    """London is UTC+1 in July: 23:30 UTC is 00:30 the next local day."""
    year = _summer(now_utc())
    patient = create_patient(
        world["clin_n"],
        world["north"],
        "N-SUMMER",
        None,
        datetime(year, 7, 1, tzinfo=UTC),
        "opioid",
        "",
    )
    pid = patient.id
    day14 = datetime(year, 7, 14, 23, 30, tzinfo=UTC)  # local 07-15 00:30
    day15 = datetime(year, 7, 15, 23, 30, tzinfo=UTC)  # local 07-16 00:30
    day15_noon = datetime(year, 7, 15, 12, 0, tzinfo=UTC)  # local 07-15 13:00
    for at in (day14, day15, day15_noon):
        add_assessment(patient, world["clin_n"], scores=scores_for("cows", 14), observed_at=at)
    db.session.commit()

    def count(start, end):
        svg = text_of(
            clinician.get(f"/patients/{pid}/charts/cows.svg?start={year}-{start}&end={year}-{end}")
        )
        return 0 if "No assessments in this range" in svg else points(svg)

    assert count("07-15", "07-15") == 2  # 00:30 and 13:00 local on the 15th
    assert count("07-14", "07-14") == 0  # 23:30 UTC on the 14th is already the 15th here
    assert count("07-16", "07-16") == 1
    assert count("07-14", "07-16") == 3
    page = text_of(clinician.get(f"/patients/{pid}/tracker?start={year}-07-15&end={year}-07-15"))
    cows = sections(page)["cows"]
    assert f"2 COWS assessments on {year}-07-15" in trend_alt(cows)
    assert len(table_rows(cows, "COWS totals")) == 2


def test_range_uses_new_york_days_for_a_new_york_patient(browser, world, add_assessment):
    year = _summer(now_utc())
    patient = create_patient(
        world["clin_s"],
        world["south"],
        "S-SUMMER",
        None,
        datetime(year, 7, 1, tzinfo=UTC),
        "kratom",
        "",
    )
    pid = patient.id
    # 03:30 UTC on the 16th is 23:30 EDT on the 15th.
    add_assessment(
        patient,
        world["clin_s"],
        scores=scores_for("cows", 14),
        observed_at=datetime(year, 7, 16, 3, 30, tzinfo=UTC),
    )
    db.session.commit()
    browser.login("clin.south")
    base = f"/patients/{pid}/charts/cows.svg"
    on_15 = text_of(browser.get(f"{base}?start={year}-07-15&end={year}-07-15"))
    on_16 = text_of(browser.get(f"{base}?start={year}-07-16&end={year}-07-16"))
    assert points(on_15) == 1
    assert "No assessments in this range" in on_16


def test_open_ended_ranges(clinician, ids, cows_three):
    first, last = cows_three.times[0], cows_three.times[-1]
    base = f"/patients/{ids.pid_n}/charts/cows.svg"
    assert points(text_of(clinician.get(f"{base}?start={local_day(last)}"))) >= 1
    assert points(text_of(clinician.get(f"{base}?end={local_day(last)}"))) == 3
    assert points(text_of(clinician.get(f"{base}?start={local_day(first)}"))) == 3
    before = local_day(first - timedelta(days=1))
    assert "No assessments in this range" in text_of(clinician.get(f"{base}?end={before}"))


def test_hours_mode_draws_hours_since_the_episode_start(clinician, ids, cows_three):
    base = f"/patients/{ids.pid_n}/charts/cows"
    hours = clinician.get(f"{base}.svg?x=hours")
    time = clinician.get(f"{base}.svg?x=time")
    default = clinician.get(f"{base}.svg")
    assert hours.status_code == 200 and time.status_code == 200
    assert "Hours since episode start" in text_of(hours)
    assert "Hours since episode start" not in text_of(time)
    assert points(text_of(hours)) == 3
    assert hours.headers["ETag"] != time.headers["ETag"]
    assert time.headers["ETag"] == default.headers["ETag"]
    assert clinician.get(f"{base}.png?x=hours").data.startswith(PNG_MAGIC)


def test_the_heatmap_follows_the_trends_time_axis(clinician, ids, cows_three):
    base = f"/patients/{ids.pid_n}/charts/cows"
    hours = clinician.get(f"{base}/items.svg?x=hours")
    time = clinician.get(f"{base}/items.svg")
    assert "Hours since episode start" in text_of(hours)
    assert "Hours since episode start" not in text_of(time)
    assert "Observed (Europe/London)" in text_of(time)
    assert clinician.get(f"{base}/items.svg?x=days").status_code == 400


def test_tracker_images_are_drawn_at_the_size_the_page_gives_them(clinician, ids, cows_three):
    """The <img> width is the PNG's own, so at 820 px both shrink by the same factor and
    the trend and its heatmap stay lined up (tests/test_chart_render.py checks the text)."""
    page = text_of(clinician.get(f"/patients/{ids.pid_n}/tracker"))
    section = sections(page)["cows"]
    for src, width in re.findall(r'<img class="chart" src="([^"]+)"[^>]* width="(\d+)"', section):
        png = clinician.get(html.unescape(src)).data
        assert struct.unpack(">II", png[16:24])[0] == int(width), src


# --------------------------------------------------------------------------- tracker page


def test_tracker_lists_scales_with_data_in_display_order(clinician, world, add_assessment, ids):
    now = now_utc()
    # Recorded out of display order, and one more entry of a scale is later voided.
    add_assessment(world["patient_n"], world["clin_n"], "symptom_nrs", observed_at=now)
    add_assessment(world["patient_n"], world["clin_n"], "gad7", observed_at=now)
    add_assessment(world["patient_n"], world["clin_n"], "cows", observed_at=now)
    voided = add_assessment(world["patient_n"], world["clin_n"], "sows", observed_at=now)
    begin_write(db.session)
    db.session.execute(update(Assessment).where(Assessment.id == voided.id).values(status="voided"))
    db.session.commit()
    page = text_of(clinician.get(f"/patients/{ids.pid_n}/tracker"))
    assert list(sections(page)) == ["cows", "gad7", "symptom_nrs"]


def test_tracker_sections_have_the_chart_its_summary_and_the_same_numbers(
    clinician, ids, cows_three
):
    response = clinician.get(f"/patients/{ids.pid_n}/tracker")
    assert response.status_code == 200
    page = text_of(response)
    cows = sections(page)["cows"]
    start_day, end_day = local_day(cows_three.times[0]), local_day(cows_three.times[-1])

    trend_src, items_src = img_srcs(cows)
    for src, path in ((trend_src, "charts/cows.png"), (items_src, "charts/cows/items.png")):
        parts = urlsplit(src)
        assert parts.path == f"/patients/{ids.pid_n}/{path}"
        assert parse_qs(parts.query) == {"start": [start_day], "end": [end_day]}
        assert clinician.get(src).data.startswith(PNG_MAGIC)

    alt = trend_alt(cows)
    assert alt.startswith("Trend of COWS totals. 3 COWS assessments from ")
    assert "Latest 30 (Moderately severe)" in alt
    assert "lowest 6" in alt and "highest 30" in alt and "rising" in alt
    assert "<figcaption>" + alt.removeprefix("Trend of COWS totals. ") in html.unescape(cows)

    rows = table_rows(cows, "COWS totals (3)")
    assert len(rows) == 3
    # Newest first, each with its total and band.
    for row, (total, band) in zip(
        rows, [(30, "Moderately severe"), (15, "Moderate"), (6, "Mild")], strict=True
    ):
        assert f'<td class="num">{total}</td>' in row
        assert f">{band}</span>" in row
        assert "Clin.North" in row


def test_tracker_shows_an_incomplete_total_as_its_floor_never_banded(
    clinician, world, add_assessment, ids, cows_three
):
    scores = scores_for("cows", 20)
    scores["gooseflesh"] = None
    add_assessment(
        world["patient_n"],
        world["clin_n"],
        scores=scores,
        not_assessed_reasons={"gooseflesh": "not_measured"},
        observed_at=now_utc() - timedelta(minutes=30),
    )
    db.session.commit()
    cows = sections(text_of(clinician.get(f"/patients/{ids.pid_n}/tracker")))["cows"]
    # 20 is a lower bound already in Moderate: at least Moderate, never Moderate itself.
    floor = "at least Moderate — incomplete, 1 item not assessed"
    alt = trend_alt(cows)
    assert f"Latest 20 ({floor})" in alt
    assert "Latest 20 (Moderate)" not in alt
    newest = table_rows(cows, "COWS totals (4)")[0]
    assert '<td class="num">20</td>' in newest
    assert f'<span class="band band-floor band-moderate">{floor}</span>' in newest
    assert ">Moderate</span>" not in newest and "Mild" not in newest


def test_tracker_symptom_ratings_add_the_domains_chart_and_table(clinician, ids, cows_three):
    nrs = sections(text_of(clinician.get(f"/patients/{ids.pid_n}/tracker")))["symptom_nrs"]
    srcs = [urlsplit(src).path for src in img_srcs(nrs)]
    assert srcs == [
        f"/patients/{ids.pid_n}/charts/symptom_nrs.png",
        f"/patients/{ids.pid_n}/charts/symptom_nrs/items.png",
        f"/patients/{ids.pid_n}/charts/domains.png",
    ]
    (row,) = table_rows(nrs, "Domain ratings (0–10)")
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert cells == ["4", "not assessed", "7", "2"]
    assert "Latest 13 (Incomplete)" in trend_alt(nrs)
    # The custom rating publishes no bands, and the page invents none.
    assert "Incomplete" in table_rows(nrs, "Symptom NRS totals (1)")[0]
    cows = sections(text_of(clinician.get(f"/patients/{ids.pid_n}/tracker")))["cows"]
    assert "Domain ratings" not in cows


def test_tracker_range_is_shared_by_its_images(clinician, ids, cows_three):
    """An open end is filled from the entries, and every image gets the same range."""
    start = local_day(cows_three.times[1])
    end = local_day(cows_three.times[-1])
    page = text_of(clinician.get(f"/patients/{ids.pid_n}/tracker?start={start}&x=hours"))
    found = sections(page)
    shown = sum(local_day(t) >= start for t in cows_three.times)
    assert shown in (2, 3)
    assert f"{shown} COWS assessments" in trend_alt(found["cows"])
    assert len(table_rows(found["cows"], f"COWS totals ({shown})")) == shown
    assert list(found) == ["cows", "symptom_nrs"]
    for section in found.values():
        for src in img_srcs(section):
            query = parse_qs(urlsplit(src).query)
            assert query == {"start": [start], "end": [end], "x": ["hours"]}, src


def test_tracker_bad_range_shows_the_message_and_the_full_range(clinician, ids, cows_three):
    response = clinician.get(f"/patients/{ids.pid_n}/tracker?start=2026-13-01&end=yesterday")
    assert response.status_code == 400
    page = text_of(response)
    assert "The start date must look like 2026-03-04. The full range is shown instead." in page
    assert 'aria-invalid="true"' in page
    cows = sections(page)["cows"]
    assert "3 COWS assessments" in trend_alt(cows)
    query = parse_qs(urlsplit(img_srcs(cows)[0]).query)
    assert query == {
        "start": [local_day(cows_three.times[0])],
        "end": [local_day(cows_three.times[-1])],
    }

    reversed_range = clinician.get(f"/patients/{ids.pid_n}/tracker?start=2026-03-05&end=2026-03-04")
    assert reversed_range.status_code == 400
    assert "The end date is before the start date." in text_of(reversed_range)


def test_tracker_empty_range_and_no_entries(clinician, ids, cows_three):
    empty = clinician.get(f"/patients/{ids.pid_n}/tracker?start=2020-01-01&end=2020-01-02")
    assert empty.status_code == 200
    assert "No assessments in this range." in text_of(empty)
    assert sections(text_of(empty)) == {}


def test_tracker_of_a_patient_without_entries(browser, world, ids):
    browser.login("clin.south")
    page = browser.get(f"/patients/{ids.pid_s}/tracker")
    assert page.status_code == 200
    assert "No assessments recorded yet." in text_of(page)


def test_tracker_end_before_the_first_entry_is_an_empty_range_not_an_error(
    clinician, ids, cows_three
):
    """Only ``end`` given, before every entry: the open start must not come after it."""
    before = local_day(cows_three.times[0] - timedelta(days=3))
    response = clinician.get(f"/patients/{ids.pid_n}/tracker?end={before}")
    assert response.status_code == 200
    page = text_of(response)
    assert "No assessments in this range." in page
    assert sections(page) == {}
    after = local_day(now_utc() + timedelta(days=3))
    later = clinician.get(f"/patients/{ids.pid_n}/tracker?start={after}")
    assert later.status_code == 200
    assert "No assessments in this range." in text_of(later)


def test_tracker_never_shows_dosing_wording_and_carries_the_notice(
    clinician, world, add_assessment, ids, cows_three
):
    for key in ("sows", "oows", "sows_gossop", "gad7"):
        add_assessment(world["patient_n"], world["clin_n"], key)
    db.session.commit()
    page = text_of(clinician.get(f"/patients/{ids.pid_n}/tracker"))
    assert len(sections(page)) == 6
    assert NOTICE in page
    assert no_dosing(page) is None


# --------------------------------------------------------------------------- query counts


def bulk_entries(world, ids, scale_key: str, first: int, count: int) -> None:
    """``count`` active entries of N-001, every item scored 0, five minutes apart from just
    after the episode start, inserted in bulk (the service would take far longer)."""
    scale = get_scale(scale_key)
    episode_id = world["patient_n"].episodes[0].id
    clin_id = world["clin_n"].id
    begin_write(db.session)
    entries = [
        {
            "patient_id": ids.pid_n,
            "episode_id": episode_id,
            "scale_key": scale.key,
            "scale_version": scale.version,
            "observed_at": ids.start_n + timedelta(minutes=5 * i + 1),
            "recorded_by_id": clin_id,
            "total": 0,
            "complete": True,
            "band": None,
            "status": "active",
            "version": 1,
        }
        for i in range(first, first + count)
    ]
    made = db.session.scalars(insert(Assessment).returning(Assessment.id), entries).all()
    db.session.execute(
        insert(ItemScore),
        [
            {"assessment_id": a, "item_key": item.key, "position": n, "score": 0}
            for a in made
            for n, item in enumerate(scale.items)
        ],
    )
    db.session.commit()


def test_one_chart_costs_the_same_queries_for_5_or_60_points(clinician, world, ids, count_queries):
    def measure():
        counts = {}
        for path in ("cows.png", "cows/items.png", "symptom_nrs.svg", "domains.png"):
            with count_queries() as statements:
                response = clinician.get(f"/patients/{ids.pid_n}/charts/{path}")
                assert response.status_code == 200
            counts[path] = len(statements)
        return counts

    for key in ("cows", "symptom_nrs"):
        bulk_entries(world, ids, key, 0, 5)
    few = measure()
    for key in ("cows", "symptom_nrs"):
        bulk_entries(world, ids, key, 5, 55)
    many = measure()
    assert few == many
    # The user and their sites (2), the patient, the freshness check, the view's audit line
    # (2, and PostgreSQL's audit lock) and the chart's own rows.
    assert max(many.values()) <= 8 + (db.engine.dialect.name == "postgresql"), many


def test_the_heatmap_costs_the_same_queries_past_500_entries(clinician, world, ids, count_queries):
    url = f"/patients/{ids.pid_n}/charts/cows/items.png"
    bulk_entries(world, ids, "cows", 0, 5)
    with count_queries() as few:
        assert clinician.get(url).status_code == 200
    bulk_entries(world, ids, "cows", 5, 520)
    with count_queries() as many:
        assert clinician.get(url).status_code == 200
    assert len(few) == len(many)
