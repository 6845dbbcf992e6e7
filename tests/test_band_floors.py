"""An incomplete total is a lower bound: where it already lies in a band, that band is certain
as a floor ("at least Severe — incomplete, 1 item not assessed"), wherever a band appears.
Where the recorded items reach no band the entry stays "Incomplete", and complete entries read
as they always have."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import MetaData, select, text

from clinic_log import create_app
from clinic_log.assessments.services import Answers, amend_assessment
from clinic_log.charts.render import FLOOR_LABEL, KEY_LABEL, build_trend_figure, render_trend
from clinic_log.charts.series import BandSpan, TrendPoint, TrendSeries, summarise
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment
from clinic_log.scale_registry import get_scale

FLOOR_TEXT = "at least Severe — incomplete, 1 item not assessed"
EXPORT_KEY = "fixed-test-export-key"
NOT_ASSESSED_COUNT_REVISION = "3a043569c076"
NOT_ASSESSED_COUNT_PARENT = "b9727a62cebb"


def cows_scores(**scores) -> dict[str, int | None]:
    """Every COWS item at its highest score unless given (None: not assessed)."""
    scale = get_scale("cows")
    return {item.key: scores.get(item.key, item.max_score) for item in scale.items}


def lowest_cows(**scores) -> dict[str, int | None]:
    scale = get_scale("cows")
    return {item.key: scores.get(item.key, item.min_score) for item in scale.items}


def page_text(response) -> str:
    """What a person reads: the page without its tags, spaces collapsed."""
    body = response.get_data(as_text=True)
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


class _BandSpans(HTMLParser):
    """Collects each ``<span class="band ...">`` with its whole text, nested spans included."""

    def __init__(self):
        super().__init__()
        self.found: list[list[str]] = []
        self.depth = 0  # open spans inside the band span being read

    def handle_starttag(self, tag, attrs):
        if tag != "span":
            return
        if self.depth:
            self.depth += 1
        elif (dict(attrs).get("class") or "").startswith("band "):
            self.found.append([dict(attrs)["class"], ""])
            self.depth = 1

    def handle_endtag(self, tag):
        if tag == "span" and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.found[-1][1] += data


def band_spans(response) -> list[tuple[str, str]]:
    """Each severity label on the page: (its classes, its text)."""
    parser = _BandSpans()
    parser.feed(response.get_data(as_text=True))
    return [(classes, re.sub(r"\s+", " ", text).strip()) for classes, text in parser.found]


def parse_csv(raw: bytes) -> list[dict[str, str]]:
    text = raw.decode("utf-8").lstrip("\ufeff")
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("".join(lines), newline="")))


@pytest.fixture
def export_key(app):
    path = Path(app.instance_path) / "export_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXPORT_KEY)


@pytest.fixture
def floor_entry(world, add_assessment):
    """COWS 43 with gooseflesh (5) not assessed: the true total is 43 or more, Severe is certain."""
    return add_assessment(
        world["patient_n"],
        world["clin_n"],
        "cows",
        cows_scores(gooseflesh=None),
        not_assessed_reasons={"gooseflesh": "asleep"},
    )


@pytest.fixture
def low_entry(world, add_assessment):
    """COWS 3 with two items not assessed: below every band, so only "Incomplete"."""
    return add_assessment(
        world["patient_n"],
        world["clin_n"],
        "cows",
        lowest_cows(resting_pulse=2, gi_upset=1, sweating=None, tremor=None),
        not_assessed_reasons={"sweating": "asleep", "tremor": "not_measured"},
    )


@pytest.fixture
def complete_entry(world, add_assessment):
    return add_assessment(
        world["patient_n"],
        world["clin_n"],
        "cows",
        cows_scores(),
        observed_at=now_utc() - timedelta(hours=3),
    )


def assert_floor(response, other_bands=False):
    assert response.status_code in (200, 409), response.status_code
    assert FLOOR_TEXT in page_text(response)
    spans = band_spans(response)
    assert ("band band-floor band-severe", FLOOR_TEXT) in spans, spans
    if not other_bands:
        # Never the band itself: the recorded items reached Severe only as a lower bound.
        assert ("band band-severe", "Severe") not in spans, spans


# --------------------------------------------------------------------------- stored count


def test_the_number_not_assessed_is_stored_when_recorded_and_amended(world, floor_entry):
    assert floor_entry.not_assessed_count == 1
    replacement = amend_assessment(
        world["clin_n"],
        floor_entry,
        floor_entry.version,
        Answers(
            cows_scores(gooseflesh=None, tremor=None),
            floor_entry.observed_at,
            not_assessed_reasons={"gooseflesh": "asleep", "tremor": "asleep"},
        ),
        "Tremor was not looked at",
    )
    assert replacement.not_assessed_count == 2
    db.session.expire_all()
    stored = db.session.scalar(select(Assessment.not_assessed_count).filter_by(id=replacement.id))
    assert stored == 2


def test_the_migration_counts_the_items_not_assessed_of_existing_entries(
    tmp_path, empty_database_url
):
    """Entries written before the count existed get it from their item scores."""
    app = create_app(
        {"DATABASE_URL": empty_database_url, "INSTANCE_PATH": str(tmp_path / "instance")}
    )
    with app.app_context():
        upgrade(revision=NOT_ASSESSED_COUNT_PARENT)
        tables = MetaData()
        tables.reflect(db.engine)
        at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
        with db.engine.begin() as conn:

            def add(table: str, **values) -> int:
                return conn.execute(
                    tables.tables[table].insert().values(**values)
                ).inserted_primary_key[0]

            site = add("site", code="NORTH", name="North", timezone="Europe/London", created_at=at)
            user = add(
                "user", username="clin", display_name="Clin", password_hash="x", role="clinician",
                active=True, session_version=1, must_change_password=False, failed_login_count=0,
                created_at=at,
            )  # fmt: skip
            patient = add(
                "patient", site_id=site, identifier="N-001", identifier_key="n-001",
                identifier_skeleton="n-001", created_by_id=user, created_at=at,
            )  # fmt: skip
            episode = add(
                "episode", patient_id=patient, started_at=at, substance_context="opioid", note="",
                created_by_id=user, created_at=at,
            )  # fmt: skip
            expected = {}
            for missing in (0, 1, 3):
                entry = add(
                    "assessment", patient_id=patient, episode_id=episode, scale_key="cows",
                    scale_version="1", observed_at=at, recorded_at=at, recorded_by_id=user,
                    total=20, complete=not missing, notes="", status="active", version=1,
                )  # fmt: skip
                for position, key in enumerate(get_scale("cows").item_keys):
                    not_assessed = position < missing
                    add(
                        "item_score", assessment_id=entry, item_key=key, position=position,
                        score=None if not_assessed else 1,
                        not_assessed_reason="asleep" if not_assessed else None,
                    )  # fmt: skip
                expected[entry] = missing
        upgrade(revision=NOT_ASSESSED_COUNT_REVISION)
        with db.engine.connect() as conn:
            counts = dict(conn.execute(text("SELECT id, not_assessed_count FROM assessment")).all())
        assert counts == expected
        db.engine.dispose()


# --------------------------------------------------------------------------- pages


def test_patient_page_shows_the_floor(world, floor_entry, login):
    response = login("clin.north").get(f"/patients/{world['patient_n'].id}")
    assert_floor(response)


def test_flowsheet_shows_the_floor(world, floor_entry, login):
    response = login("clin.north").get(f"/patients/{world['patient_n'].id}/flowsheet/cows")
    assert_floor(response)


def test_entry_page_shows_the_floor_and_says_why(world, floor_entry, login):
    response = login("clin.north").get(f"/assessments/{floor_entry.id}")
    assert_floor(response)
    text = page_text(response)
    assert "the true total can only be higher" in text
    assert "is given no band" not in text


def test_history_and_conflict_pages_show_the_floor(world, add_assessment, login):
    first = add_assessment(world["patient_n"], world["clin_n"], "cows", cows_scores())
    amended = amend_assessment(
        world["clin_n"],
        first,
        first.version,
        Answers(
            cows_scores(gooseflesh=None),
            first.observed_at,
            not_assessed_reasons={"gooseflesh": "asleep"},
        ),
        "Gooseflesh was not looked at",
    )
    browser = login("clin.north")
    history = browser.get(f"/assessments/{amended.id}/history")
    assert_floor(history, other_bands=True)
    # The first version was complete: its band reads as before.
    assert ("band band-severe", "Severe") in band_spans(history)
    # Opening the amend form of the replaced version shows what the entry is now.
    conflict = browser.get(f"/assessments/{first.id}/amend")
    assert conflict.status_code == 409
    assert_floor(conflict)


def test_review_queue_row_shows_the_floor(world, floor_entry, login):
    response = login("sup.north").get("/review/")
    assert_floor(response)


def test_tracker_table_and_chart_alt_text_show_the_floor(world, floor_entry, login):
    response = login("clin.north").get(f"/patients/{world['patient_n'].id}/tracker")
    assert_floor(response)
    body = response.get_data(as_text=True)
    alts = [html.unescape(a) for a in re.findall(r'alt="(Trend of COWS[^"]*)"', body)]
    assert alts and f"Latest 43 ({FLOOR_TEXT})." in alts[0], alts


def test_trend_chart_marks_the_floor(world, floor_entry, login):
    response = login("clin.north").get(f"/patients/{world['patient_n'].id}/charts/cows.svg")
    assert response.status_code == 200
    assert FLOOR_LABEL in response.get_data(as_text=True)


# --------------------------------------------------------------------------- the chart itself

T0 = datetime(2026, 11, 10, 14, 0, tzinfo=UTC)
COWS_BANDS = (
    BandSpan(5, 12, "Mild"),
    BandSpan(13, 24, "Moderate"),
    BandSpan(25, 36, "Moderately severe"),
    BandSpan(37, 48, "Severe"),
)


def series_of(*points: TrendPoint) -> TrendSeries:
    return TrendSeries(
        title="COWS total — patient N-001",
        y_label="COWS total (0–48)",
        y_min=0,
        y_max=48,
        bands=COWS_BANDS,
        points=points,
        episode_starts=(),
        tz_name="Europe/London",
    )


def test_floor_points_get_their_own_marker_and_key():
    series = series_of(
        TrendPoint(T0, 30, True, "Moderately severe"),
        TrendPoint(T0 + timedelta(hours=4), 3, False, "Incomplete"),
        TrendPoint(T0 + timedelta(hours=8), 43, False, FLOOR_TEXT, "Severe"),
    )
    ax = build_trend_figure(series).axes[0]
    data = {line.get_label(): line for line in ax.get_lines() if line.get_label() != KEY_LABEL}
    floor = data[FLOOR_LABEL]
    assert list(floor.get_ydata()) == [43]
    assert floor.get_marker() == "^"  # pointing up: the true total can only be higher
    assert floor.get_linestyle() == "None"
    # The incomplete total below every band keeps the hollow circle of a plain lower bound.
    hollow = [label for label, line in data.items() if list(line.get_ydata()) == [3]]
    assert hollow and hollow[0] != FLOOR_LABEL
    assert FLOOR_LABEL in [t.get_text() for t in ax.texts]
    assert FLOOR_LABEL in render_trend(series, fmt="svg").decode()


def test_summary_gives_the_floor_of_the_latest_total():
    series = series_of(
        TrendPoint(T0, 30, True, "Moderately severe"),
        TrendPoint(T0 + timedelta(hours=8), 43, False, FLOOR_TEXT, "Severe"),
    )
    assert summarise(series).endswith(
        f"Latest 43 ({FLOOR_TEXT}), lowest 30, highest 43 (incomplete)."
    )


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize(
    "params",
    [
        {"layout": "wide", "scale": "cows"},
        {"layout": "long"},
        {"layout": "wide", "scale": "cows", "profile": "deidentified"},
        {"layout": "long", "profile": "deidentified"},
    ],
    ids=["wide", "long", "wide-deidentified", "long-deidentified"],
)
def test_csv_puts_the_floor_in_its_own_column(
    world, floor_entry, low_entry, complete_entry, login, export_key, params
):
    response = login("clin.north").get("/exports/assessments.csv", query_string=params)
    assert response.status_code == 200
    rows = parse_csv(response.data)
    header = list(rows[0])
    assert header.index("band_floor") == header.index("band") + 1
    found = {(r["total"], r["band"], r["band_floor"], r["completeness"]) for r in rows}
    assert found == {
        ("43", "", "Severe", "incomplete"),
        ("3", "", "", "incomplete"),
        ("48", "Severe", "", "complete"),
    }


def test_the_dictionary_explains_the_floor(world, login):
    response = login("clin.north").get("/exports/dictionary.csv")
    text = response.get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    described = {row[1]: row[-1] for row in rows if row and row[0] == "column"}
    assert "lower bound" in described["band_floor"]
    assert "at least" in described["band_floor"]
    treated = {row[1]: row[6] for row in rows if row and row[0] == "deidentified"}
    assert treated["band_floor"] == "kept"


# --------------------------------------------------------------------------- no floor


def test_a_lower_bound_below_every_band_reads_incomplete_everywhere(world, low_entry, login):
    browser = login("sup.north")
    pages = [
        browser.get(f"/patients/{world['patient_n'].id}"),
        browser.get(f"/patients/{world['patient_n'].id}/flowsheet/cows"),
        browser.get(f"/assessments/{low_entry.id}"),
        browser.get(f"/assessments/{low_entry.id}/history"),
        browser.get("/review/"),
        browser.get(f"/patients/{world['patient_n'].id}/tracker"),
    ]
    for response in pages:
        assert response.status_code == 200
        spans = band_spans(response)
        assert spans and all(c == "band band-incomplete" for c, _ in spans), spans
        assert all(t.startswith("Incomplete") for _, t in spans), spans
        assert "at least" not in page_text(response)
    alt = re.search(r'alt="(Trend of COWS[^"]*)"', pages[-1].get_data(as_text=True)).group(1)
    assert "Latest 3 (Incomplete)." in html.unescape(alt)
    svg = browser.get(f"/patients/{world['patient_n'].id}/charts/cows.svg")
    assert FLOOR_LABEL not in svg.get_data(as_text=True)


# --------------------------------------------------------------------------- complete


def test_complete_entries_read_as_before(world, complete_entry, login):
    browser = login("sup.north")
    for url, shown in (
        (f"/patients/{world['patient_n'].id}", 2),  # the summary at the top and the timeline
        (f"/patients/{world['patient_n'].id}/flowsheet/cows", 1),
        (f"/assessments/{complete_entry.id}", 1),
        ("/review/", 1),
        (f"/patients/{world['patient_n'].id}/tracker", 1),
    ):
        response = browser.get(url)
        assert band_spans(response) == [("band band-severe", "Severe")] * shown, url
        assert "at least" not in page_text(response)
    tracker = browser.get(f"/patients/{world['patient_n'].id}/tracker").get_data(as_text=True)
    assert "Latest 48 (Severe)." in html.unescape(tracker)
