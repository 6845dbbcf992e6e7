from wtforms import HiddenField, PasswordField
from wtforms.validators import DataRequired, Length

from ..forms import BaseForm
from ..params import parse_id


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
    # Exactly what the page showed, "id.version" for each entry, space-separated: entries
    # recorded or changed after the page was opened are never signed unseen.
    shown = HiddenField()

    @staticmethod
    def write_shown(entries) -> str:
        return " ".join(f"{a.id}.{a.version}" for a in entries)

    def shown_versions(self) -> list[tuple[int, int]] | None:
        """The (id, version) pairs the page showed; None when the field cannot be read."""
        pairs = []
        for token in (self.shown.data or "").split():
            assessment_id, _, version = token.partition(".")
            pair = parse_id(assessment_id), parse_id(version)
            if None in pair:
                return None
            pairs.append(pair)
        return pairs or None
