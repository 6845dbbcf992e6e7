"""Forms of the admin pages: sites and accounts. The rules themselves live in services."""

from wtforms import RadioField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from ..forms import BaseForm, refuse_control_characters, refuse_invisible_characters
from ..models import Role
from .services import EMERGENCY_HOURS, EMERGENCY_REASON_MAX

ROLE_CHOICES = [
    SelectChoice(str(Role.CLINICIAN), "Clinician"),
    SelectChoice(str(Role.SUPERVISOR), "Supervisor"),
    SelectChoice(str(Role.ADMIN), "Administrator (accounts and sites only, no clinical data)"),
]

_TEXT_CHECKS = [refuse_control_characters, refuse_invisible_characters]


class MultiCheckboxField(SelectMultipleField):
    """A group of checkboxes; nothing ticked is an empty list, not a missing field."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class SiteEditForm(BaseForm):
    name = StringField(
        "Name", validators=[DataRequired("Enter the site's name."), Length(max=120), *_TEXT_CHECKS]
    )
    timezone = StringField(
        "Timezone",
        validators=[DataRequired("Enter the site's timezone."), Length(max=64), *_TEXT_CHECKS],
    )


class SiteForm(SiteEditForm):
    code = StringField(
        "Code", validators=[DataRequired("Enter a short code for the site."), Length(max=16)]
    )


class AccountEditForm(BaseForm):
    display_name = StringField(
        "Display name",
        validators=[DataRequired("Enter the person's name."), Length(max=120), *_TEXT_CHECKS],
    )
    role = RadioField("Role", choices=ROLE_CHOICES, validators=[InputRequired("Choose a role.")])
    # Choices are the site codes, filled in by the view from the sites that exist.
    sites = MultiCheckboxField("Sites")


class AccountForm(AccountEditForm):
    username = StringField(
        "Username", validators=[DataRequired("Enter a username."), Length(max=64), *_TEXT_CHECKS]
    )


class EmergencyAccessForm(BaseForm):
    # Choices are the sites the person does not belong to, filled in by the view.
    site = SelectField("Site", validators=[InputRequired("Choose the site.")])
    hours = RadioField(
        "For how long",
        choices=[
            SelectChoice(str(h), "1 hour" if h == 1 else f"{h} hours") for h in EMERGENCY_HOURS
        ],
        validators=[InputRequired("Choose how long the access lasts.")],
    )
    reason = StringField(
        "Reason",
        validators=[
            DataRequired("Give the reason for emergency access; the site's supervisors review it."),
            Length(max=EMERGENCY_REASON_MAX),
            *_TEXT_CHECKS,
        ],
    )
