import re

from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from ..forms import BaseForm, refuse_control_characters


class LoginForm(BaseForm):
    username = StringField(
        "Username", validators=[DataRequired(), Length(max=64), refuse_control_characters]
    )
    # Passwords are not stripped: a space is a legitimate character in a passphrase.
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class CodeForm(BaseForm):
    code = StringField(
        "6-digit code from your authenticator app",
        validators=[DataRequired("Enter the code your app shows now."), Length(max=12)],
    )


class PasswordChangeForm(BaseForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired("Enter your current password.")]
    )
    password = PasswordField(
        "New password",
        validators=[DataRequired("Choose a new password."), Length(max=256)],
    )
    confirm = PasswordField(
        "New password again",
        validators=[EqualTo("password", message="The two new passwords are not the same.")],
    )


_BASE32_SECRET = re.compile(r"^[A-Z2-7]{32}$")


class EnrolForm(BaseForm):
    secret = HiddenField()
    code = StringField(
        "6-digit code now shown by your app",
        validators=[DataRequired("Enter the code your app shows."), Length(max=12)],
    )

    def validate_secret(self, field):
        if not _BASE32_SECRET.match(field.data or ""):
            raise ValidationError("The enrolment expired; reload the page and scan again.")
