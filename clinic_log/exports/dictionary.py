"""The data dictionary: the export's columns and every installed scale, as CSV rows."""

from __future__ import annotations

from ..product import NO_ADVICE_NOTICE
from ..scales import NOT_ASSESSED_REASONS, Scale

PREAMBLE = [
    "clinic_log data dictionary: export columns and scale definitions",
    NO_ADVICE_NOTICE,
    "record_type 'column' describes an export column; 'item' rows list each allowed score; "
    "'deidentified' rows say what the de-identified profile removes, pseudonymises, shifts, "
    "coarsens, reorders or keeps (in label)",
]
HEADER = [
    "record_type", "name", "scale", "scale_name", "scale_version", "custom", "label",
    "respondent", "domain", "score", "anchor", "total_range", "bands", "citation",
    "description",
]  # fmt: skip

COLUMNS = {
    "patient_identifier": "The clinic number or study code (identified profile).",
    "patient_pseudonym": "Keyed hash of the patient, stable within this installation "
    "(de-identified profile).",
    "site": "Site (clinic) code.",
    "episode_id": "The monitoring episode the entry belongs to.",
    "episode_number": "1 for the patient's first episode, 2 for the next (de-identified).",
    "episode_started_at_utc": "Episode start, UTC, ISO 8601 with Z.",
    "scale": "Scale key.",
    "scale_version": "Version of the scale definition the entry was scored with.",
    "assessment_id": "The entry; an amendment is a new entry whose replaces_id names the old one. "
    "De-identified: a keyed hash of the entry (E-...), never its number.",
    "observed_at_utc": "When the symptoms were observed, UTC, ISO 8601 with Z. De-identified: "
    "moved back by the patient's number of days and cut to the minute (intervals kept).",
    "observed_at_local": "The same instant in the site's timezone, with its UTC offset.",
    "total": "Sum of the assessed items. For an incomplete entry it is a lower bound.",
    "band": "The scale's published severity label; empty when incomplete or when none applies.",
    "band_floor": "Incomplete entries only: the published band the total already lies in. The "
    "total is a lower bound (items not assessed can only add to it), so at least this band is "
    "certain: 'Severe' here reads 'at least Severe'. Empty for a complete entry (see band) and "
    "when the recorded items reach no band (the entry is only 'Incomplete'). Never the entry's "
    "band: band stays empty for every incomplete entry.",
    "completeness": "complete, or incomplete when any item was not assessed.",
    "status": "active, amended (replaced by a newer version) or voided.",
    "status_reason": "Why the entry was amended or voided.",
    "replaces_id": "For an amendment: the assessment_id it replaces.",
    "recorded_by": "Who entered it.",
    "recorded_at_utc": "When it was entered (server clock), UTC.",
    "reviewed": "yes when a supervisor signed it off (de-identified profile).",
    "reviewed_by": "Supervisor who signed it off as reviewed.",
    "reviewed_at_utc": "When it was signed off, UTC.",
    "notes": "Free-text notes (left out of the de-identified profile).",
    "item_key": "Item of the scale (long layout).",
    "item_respondent": "patient_reported or clinician_observed.",
    "item_domain": "Symptom domain of the item.",
    "score": "The item's score; NA when the item was not assessed (never 0 or empty).",
    "not_assessed_reason": "Why the item was not assessed, as a code: "
    + "; ".join(f"{code} = {label}" for code, label in NOT_ASSESSED_REASONS.items())
    + ".",
    "measured_value": "The measurement the score was derived from (COWS pulse, beats/min).",
    "not_assessed": "Wide layout: the items not assessed, with their reasons.",
}


_SHIFTED = (
    "Moved back by the patient's own whole number of days (1 to 364, the same in every export "
    "made with this installation's key) and cut to the minute: intervals between a patient's "
    "times, such as time since episode start, are kept to the minute."
)
# What the de-identified profile does to each column of the identified file, and to the file.
DEIDENTIFIED = {
    "patient_identifier": ("removed", "Replaced by patient_pseudonym."),
    "patient_pseudonym": ("pseudonymised", "Keyed hash (HMAC-SHA256) of site and identifier; "
                          "without the installation's key it cannot be linked back."),
    "episode_id": ("removed", "Replaced by episode_number (1, 2, ... per patient)."),
    "assessment_id": ("pseudonymised", "Keyed hash of the entry (E-...), not its number."),
    "replaces_id": ("pseudonymised", "The pseudonym of the entry it replaces, as in "
                    "assessment_id, so amendment chains are kept."),
    "episode_started_at_utc": ("shifted and coarsened", _SHIFTED),
    "observed_at_utc": ("shifted and coarsened", _SHIFTED),
    "observed_at_local": ("shifted and coarsened", _SHIFTED + " The UTC offset is the one in "
                          "force at the shifted time."),
    "recorded_at_utc": ("shifted and coarsened", _SHIFTED),
    "reviewed_at_utc": ("shifted and coarsened", _SHIFTED + " It is the signature's time."),
    "recorded_by": ("removed", "No person's name is in the file."),
    "reviewed_by": ("removed", "Replaced by reviewed (yes or no)."),
    "notes": ("removed", "Free text can name anyone and anything."),
    "status_reason": ("removed", "Free text; status (amended, voided) is kept."),
    "generated_by": ("removed", "The provenance lines name no user; the audit trail does."),
    "generated_at": ("withheld", "The day a file was made would date it against the "
                     "identified exports of that day; the audit trail keeps it."),
    "filters": ("coarsened", "A patient filter reads 'one patient' and real start and end "
                "dates are not shown."),
    "row order": ("reordered", "Patient by patient in pseudonym order, each patient's entries "
                  "by shifted time (then pseudonym), never in the order they were made."),
    "site": ("kept", "Site code: a research file needs the clinic."),
    "scale": ("kept", "Scale key and version."),
    "total": ("kept", "Scores, bands, completeness and item answers are the data."),
    "band": ("kept", "As in the identified file."),
    "band_floor": ("kept", "As in the identified file."),
    "status": ("kept", "active, amended or voided."),
    "episode_number": ("kept", "Counts the patient's episodes."),
    "reviewed": ("kept", "yes or no."),
}  # fmt: skip


def dictionary_rows(scales: dict[str, Scale]) -> tuple[list[str], list[list]]:
    rows: list[list] = [
        ["column", name, "", "", "", "", "", "", "", "", "", "", "", "", text]
        for name, text in COLUMNS.items()
    ]
    rows += [
        ["deidentified", name, "", "", "", "", handling, "", "", "", "", "", "", "", text]
        for name, (handling, text) in DEIDENTIFIED.items()
    ]
    for scale in scales.values():
        for item in scale.items:
            if item.measurement is not None:
                m = item.measurement
                rows.append(
                    ["column", m.key, scale.key, scale.name, scale.version, "", m.label, "",
                     "", "", "", f"{m.minimum}-{m.maximum}", "", "",
                     f"Wide layout: the measured {m.unit} that {item.key}'s score was derived "
                     "from; empty when not measured."]
                )  # fmt: skip
    for scale in scales.values():
        bands = "; ".join(f"{b.low}-{b.high} {b.label}" for b in scale.bands) or scale.band_note
        citation = "; ".join(
            dict.fromkeys([scale.citation, *(b.citation for b in scale.bands if b.citation)])
        )
        for item in scale.items:
            for anchor in item.anchors:
                rows.append(
                    [
                        "item", item.key, scale.key, scale.name, scale.version,
                        "yes" if scale.custom else "no", item.label, item.respondent,
                        item.domain, anchor.score, anchor.text,
                        f"{scale.total_min}-{scale.total_max}", bands, citation,
                        item.prompt,
                    ]
                )  # fmt: skip
    return HEADER, rows
