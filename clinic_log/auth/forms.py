from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

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


class EnrolForm(BaseForm):
    # Passwords are not stripped: a space is a legitimate character in a passphrase.
    password = PasswordField(
        "Your password", validators=[DataRequired("Enter your password."), Length(max=1024)]
    )
    current_code = StringField(
        "6-digit code now shown by your current app", validators=[Length(max=12)]
    )
    code = StringField(
        "6-digit code now shown by your app",
        validators=[DataRequired("Enter the code your app shows."), Length(max=12)],
    )
