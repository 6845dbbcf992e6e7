from wtforms import HiddenField, PasswordField
from wtforms.validators import DataRequired, Length

from ..forms import BaseForm


class SignForm(BaseForm):
    password = PasswordField(
        "Your password (to sign)",
        validators=[DataRequired("Enter your password to sign."), Length(max=1024)],
    )
    version = HiddenField()


class SignTrendForm(BaseForm):
    password = PasswordField(
        "Your password (to sign)",
        validators=[DataRequired("Enter your password to sign."), Length(max=1024)],
    )
    # When the supervisor opened the trend: entries recorded later are not signed unseen.
    up_to = HiddenField()
