import re

from wtforms import HiddenField, IntegerField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
)

from ..due import INTERVAL_MAX_HOURS, INTERVAL_MESSAGE, INTERVAL_MIN_HOURS
from ..forms import (
    BaseForm,
    LocalDateTimeField,
    normalise_identifier,
    normalise_newlines,
    refuse_control_characters,
    refuse_invisible_characters,
    refuse_line_breaks,
)
from ..models import SUBSTANCE_LABELS

SUBSTANCE_CHOICES = [SelectChoice(str(key), label) for key, label in SUBSTANCE_LABELS.items()]


class HoursField(IntegerField):
    """Whole hours as typed: ASCII digits only ("٣" or "４" would be read as a number no one
    meant to type), empty for None; anything else keeps what was typed and says why."""

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        raw = valuelist[0].strip() if isinstance(valuelist[0], str) else ""
        self.data = None
        if raw and not re.fullmatch(r"[0-9]{1,4}", raw):
            raise ValueError(INTERVAL_MESSAGE)
        if raw:
            self.data = int(raw)


def _interval_field():
    return HoursField(
        "Assess every (hours)",
        validators=[
            Optional(),
            NumberRange(INTERVAL_MIN_HOURS, INTERVAL_MAX_HOURS, message=INTERVAL_MESSAGE),
        ],
    )


class EpisodeFieldsMixin:
    started_at = LocalDateTimeField(
        "Episode start (site local time)",
        validators=[InputRequired("Enter when the episode started.")],
    )
    # Only asked for when the start time falls in the repeated hour of a clock change.
    started_at_fold = HiddenField()
    substance_context = RadioField(
        "Substance context",
        choices=SUBSTANCE_CHOICES,
        validators=[InputRequired("Choose the substance context.")],
    )
    episode_note = TextAreaField(
        "Episode note (optional)",
        filters=[normalise_newlines],
        validators=[Optional(), Length(max=2000), refuse_control_characters],
    )
    assess_every_hours = _interval_field()


class PatientForm(EpisodeFieldsMixin, BaseForm):
    # Optional here: empty means "now" at the chosen site (see patients.new).
    started_at = LocalDateTimeField("Episode start (site local time)", validators=[Optional()])
    site_id = SelectField("Site", coerce=int, validators=[InputRequired("Choose a site.")])
    identifier = StringField(
        "Identifier (clinic number or study code)",
        filters=[normalise_identifier],
        validators=[
            DataRequired("Enter the patient's identifier."),
            Length(max=64),
            refuse_control_characters,
            refuse_line_breaks,
            refuse_invisible_characters,
        ],
    )
    display_label = StringField(
        "Display label (optional, e.g. initials or bed)",
        validators=[
            Optional(),
            Length(max=120),
            refuse_control_characters,
            refuse_line_breaks,
            refuse_invisible_characters,
        ],
    )


class EpisodeForm(EpisodeFieldsMixin, BaseForm):
    pass


class EndEpisodeForm(BaseForm):
    ended_at = LocalDateTimeField(
        "Episode end (site local time)", validators=[InputRequired("Enter when the episode ended.")]
    )
    ended_at_fold = HiddenField()


class MonitoringForm(BaseForm):
    """How often the patient is to be assessed while the open episode lasts."""

    assess_every_hours = _interval_field()


def _search_text(_form, field) -> None:
    """An empty search is no search; one of blanks alone is a search for nothing, said so."""
    raw = field.raw_data[0] if field.raw_data else ""
    if not isinstance(raw, str) or not raw:
        raise StopValidation()
    if not raw.strip():
        raise StopValidation(
            "Spaces alone match nothing: type part of an identifier or a label. "
            "Every patient is listed."
        )


class SearchForm(BaseForm):
    class Meta:
        csrf = False

    q = StringField(
        "Search by identifier or label",
        validators=[_search_text, Length(max=64), refuse_control_characters],
    )
