"""Entry forms generated from a scale definition: a new instrument file needs no form code."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from functools import lru_cache

from wtforms import HiddenField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from ..forms import (
    BaseForm,
    LocalDateTimeField,
    SingleRadioField,
    normalise_newlines,
    refuse_control_characters,
)
from ..scales import NOT_ASSESSED_REASONS, Item, Scale
from ..timeutil import EARLIEST_PLAUSIBLE, input_value, to_local
from .services import VOID_REASONS

NOT_ASSESSED_PREFIX = "na:"
NOTES_MAX_LENGTH = 2000
# Plain ASCII digits only: WTForms' IntegerField would take "+3", " 4 ", "٣" and "0_3".
_DIGITS = re.compile(r"^[0-9]{1,3}$")
_SUBMISSION_KEY = re.compile(r"^[0-9a-f]{32}$")
# Anchors this few and this short read best side by side, as one row of buttons (GAD-7's
# four come to 61 characters; COWS' descriptions to 84 and more).
ROW_MAX_ANCHORS = 5
ROW_MAX_ANCHOR_TEXT = 80


class ScoreField(SingleRadioField):
    """One item: a published score, or "not assessed" with its reason."""

    def __init__(self, label, item: Item, **kwargs):
        choices = [SelectChoice(str(anchor.score), anchor.text) for anchor in item.anchors]
        choices += [
            SelectChoice(NOT_ASSESSED_PREFIX + key, text)
            for key, text in NOT_ASSESSED_REASONS.items()
        ]
        super().__init__(label, choices=choices, validate_choice=False, **kwargs)
        self.item = item

    @property
    def layout(self) -> str:
        """How the options are laid out: ``nrs`` (a 0–10 rating, one row of eleven buttons),
        ``row`` (a few short anchors side by side) or ``stack`` (long descriptions, one per
        line). Every option is a touch-sized button in all three."""
        if self.item.allowed_scores == tuple(range(11)):
            return "nrs"
        anchors = self.item.anchors
        if len(anchors) <= ROW_MAX_ANCHORS and sum(len(a.text) for a in anchors) <= (
            ROW_MAX_ANCHOR_TEXT
        ):
            return "row"
        return "stack"

    def pre_validate(self, form):
        if self.data in (None, ""):
            return  # answered or derived in AssessmentForm.check_item
        if self.data not in {choice.value for choice in self.choices}:
            allowed = ", ".join(str(score) for score in self.item.allowed_scores)
            raise ValidationError(
                f"{self.data!r} is not an allowed score for this item. "
                f"Choose one of {allowed}, or mark it not assessed."
            )


class MeasurementField(StringField):
    """A measured value (COWS resting pulse in bpm) whose points the scale derives."""

    def __init__(self, label, measurement, **kwargs):
        super().__init__(label, **kwargs)
        self.measurement = measurement

    @property
    def script_attributes(self) -> dict[str, str]:
        """The scale's points rules, for the running total; the server still derives the score."""
        m = self.measurement
        return {
            "data-minimum": str(m.minimum),
            "data-maximum": str(m.maximum),
            "data-points-rules": json.dumps([[rule.up_to, rule.score] for rule in m.points]),
        }

    def process_formdata(self, valuelist):
        if len(valuelist) > 1:
            self.data = None
            raise ValueError("This field was sent more than once; send it once.")
        super().process_formdata(valuelist)

    def pre_validate(self, form):
        value = (self.data or "").strip()
        self.data = value
        if not value:
            return
        m = self.measurement
        if not _DIGITS.match(value) or not m.minimum <= int(value) <= m.maximum:
            raise ValidationError(
                f"Enter a whole number of {m.unit} between {m.minimum} and {m.maximum}."
            )


class AssessmentForm(BaseForm):
    scale: Scale  # set on each generated subclass

    observed_at = LocalDateTimeField("Observed at (site local time)")
    observed_at_fold = HiddenField()
    notes = TextAreaField(
        "Notes (optional)",
        filters=[normalise_newlines],
        validators=[
            Optional(),
            Length(
                max=NOTES_MAX_LENGTH,
                message=f"Notes can be at most {NOTES_MAX_LENGTH} characters "
                "(%(length)s would be too many).",
            ),
            refuse_control_characters,
        ],
    )
    submission_key = HiddenField()

    @property
    def submission_key_value(self) -> str | None:
        """The form's one-time key, or None when it is not one this app issued."""
        key = self.submission_key.data or ""
        return key if _SUBMISSION_KEY.match(key) else None

    def for_site(self, tz: str, now: datetime) -> None:
        """Name the site's zone in the observed-time label, and bound the field so a browser
        refuses a year typed short (0002): from the earliest plausible time to the end of
        tomorrow (a form may stay open past midnight). ``data-server-now`` lets the "Now"
        control use the server's clock rather than a tablet's drifting one."""
        self.observed_at.label.text = f"Observed at ({tz} time)"
        tomorrow = (to_local(now, tz) + timedelta(days=1)).date()
        self.observed_at.render_kw = {
            "min": input_value(EARLIEST_PLAUSIBLE, tz),
            "max": f"{tomorrow.isoformat()}T23:59",
            "data-timezone": tz,
            "data-server-now": str(int(now.timestamp() * 1000)),
        }

    @property
    def bands_json(self) -> str:
        """The scale's bands, for the running total's band or floor (Scale.severity's rules)."""
        return json.dumps(
            [{"low": b.low, "high": b.high, "label": b.label} for b in self.scale.bands]
        )

    def item_fields(self):
        for item in self.scale.items:
            measurement = self[item.measurement.key] if item.measurement else None
            yield self[item.key], measurement

    def validate(self, extra_validators=None):
        extra = dict(extra_validators or {})
        for item in self.scale.items:
            extra.setdefault(item.key, []).append(self.check_item)
        return super().validate(extra_validators=extra)

    def validate_observed_at(self, field):
        if field.data is None and not field.errors:
            raise ValidationError("Enter when the symptoms were observed.")

    def check_item(self, form, field):
        """Require an answer, and keep a measured value and its points consistent."""
        if field.errors:
            return  # already refused as a value the item does not allow
        measurement_field = self[field.item.measurement.key] if field.item.measurement else None
        measured = None
        if (
            measurement_field is not None
            and measurement_field.data
            and not measurement_field.errors
        ):
            measured = int(measurement_field.data)
        if field.data in (None, ""):
            if measured is None:
                raise ValidationError("Answer this item, or mark it not assessed.")
            field.data = str(field.item.measurement.points_for(measured))
            return
        if measured is None:
            return
        if field.data.startswith(NOT_ASSESSED_PREFIX):
            raise ValidationError(
                f"You entered {measured} {field.item.measurement.unit} but marked this item not "
                "assessed; clear one of the two."
            )
        derived = field.item.measurement.points_for(measured)
        if derived != int(field.data):
            raise ValidationError(
                f"{measured} {field.item.measurement.unit} scores {derived}, not {field.data}. "
                "Correct the measurement or the score."
            )

    def answers(self) -> tuple[dict[str, int | None], dict[str, str], dict[str, int]]:
        """(scores with None for not assessed, not-assessed reasons, measured values)."""
        scores: dict[str, int | None] = {}
        reasons: dict[str, str] = {}
        measured: dict[str, int] = {}
        for field, measurement_field in self.item_fields():
            if field.data.startswith(NOT_ASSESSED_PREFIX):
                scores[field.name] = None
                reasons[field.name] = field.data[len(NOT_ASSESSED_PREFIX) :]
            else:
                scores[field.name] = int(field.data)
            if measurement_field is not None and measurement_field.data:
                measured[field.name] = int(measurement_field.data)
        return scores, reasons, measured


@lru_cache(maxsize=64)
def assessment_form_class(scale: Scale) -> type[AssessmentForm]:
    """One form class per scale (and version), built from its definition."""
    fields: dict[str, object] = {"scale": scale}
    for item in scale.items:
        # The measurement is declared first so it is validated before its item is checked.
        if item.measurement is not None:
            fields[item.measurement.key] = MeasurementField(
                f"{item.measurement.label} ({item.measurement.unit})", item.measurement
            )
        fields[item.key] = ScoreField(item.label, item=item)
    return type(f"{scale.key.title().replace('_', '')}Form", (AssessmentForm,), fields)


class ChangeReasonMixin:
    reason = TextAreaField(
        "Reason for the change",
        filters=[normalise_newlines],
        validators=[
            DataRequired("Give the reason for this change."),
            Length(max=2000),
            refuse_control_characters,
        ],
    )
    # The version the form was opened on: a save against a newer version is a conflict.
    version = HiddenField()


@lru_cache(maxsize=64)
def amend_form_class(scale: Scale) -> type[AssessmentForm]:
    """The entry form of the scale, plus the reason and the version being corrected."""
    return type(
        f"Amend{assessment_form_class(scale).__name__}",
        (ChangeReasonMixin, assessment_form_class(scale)),
        {},
    )


class VoidForm(BaseForm):
    reason_code = SingleRadioField(
        "Why is this entry void?",
        choices=[SelectChoice(code, text) for code, text in VOID_REASONS.items()],
        validators=[InputRequired("Choose why this entry is void.")],
    )
    reason = TextAreaField(
        "Details (required for 'Other')",
        filters=[normalise_newlines],
        # No Optional(): it would stop validate_reason from requiring details for 'Other'.
        validators=[Length(max=2000), refuse_control_characters],
    )
    version = HiddenField()

    def validate_reason(self, field):
        if self.reason_code.data == "other" and not field.data:
            raise ValidationError("Say why this entry is void.")
