from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from ..forms import BaseForm


class LoginForm(BaseForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    # Passwords are not stripped: a space is a legitimate character in a passphrase.
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)], filters=[])
