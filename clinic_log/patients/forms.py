from wtforms import HiddenField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional

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


class SearchForm(BaseForm):
    class Meta:
        csrf = False

    q = StringField("Search by identifier", validators=[Optional(), Length(max=64)])
