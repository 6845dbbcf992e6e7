from wtforms import Field, HiddenField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Length, ValidationError

from ..forms import BaseForm
from ..params import parse_id


class SignForm(BaseForm):
    password = PasswordField(
        "Your password (to sign)",
        validators=[DataRequired("Enter your password to sign."), Length(max=1024)],
    )
    version = HiddenField()
    # The queue's filters the entry was opened from, so that "sign and next" keeps them.
    queue_patient = HiddenField()
    queue_scale = HiddenField()
    queue_order = HiddenField()
    then = SubmitField("Sign, then open the next waiting")


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


# A page shows 50; a batch longer than a few pages was not ticked by a person.
BATCH_LIMIT = 200


def parse_versions(tokens) -> list[tuple[int, int]] | None:
    """(id, version) pairs from "id.version" tokens; None when one cannot be read."""
    pairs = []
    for token in tokens:
        assessment_id, _, version = token.partition(".")
        pair = parse_id(assessment_id), parse_id(version)
        if None in pair:
            return None
        pairs.append(pair)
    return pairs


class VersionsField(Field):
    """The ticked entries of a queue page, one "id.version" value each, as the page showed
    them; ``raw`` keeps what was sent, so a refused form shows the same ticks again."""

    def process_formdata(self, valuelist):
        self.raw = list(valuelist)
        self.data = parse_versions(valuelist[: BATCH_LIMIT + 1])

    def _value(self):
        return ""

    def pre_validate(self, form):
        if self.data is None:
            raise ValidationError("A ticked entry could not be read; nothing was signed.")
        if len(self.data) > BATCH_LIMIT:
            raise ValidationError(f"Sign at most {BATCH_LIMIT} entries at once.")


class BatchSignForm(BaseForm):
    entry = VersionsField("Entries to sign", default=list)
    # Every entry on the page, for "sign all on this page": "id.version", space-separated.
    shown = HiddenField()
    password = PasswordField(
        "Your password (to sign)",
        validators=[DataRequired("Enter your password to sign."), Length(max=1024)],
    )
    sign = SubmitField("Sign the ticked entries")
    all = SubmitField("Sign all on this page")
    # The page the form was on, so the result shows the same page again.
    patient = HiddenField()
    scale = HiddenField()
    order = HiddenField()
    after = HiddenField()
    before = HiddenField()

    def chosen(self) -> list[tuple[int, int]] | None:
        """The entries to sign: the ticked ones, or with "sign all", every one shown."""
        if self.all.data:
            tokens = (self.shown.data or "").split()
            return parse_versions(tokens[: BATCH_LIMIT + 1])
        return self.entry.data

    def ticked(self) -> set[str]:
        return set(getattr(self.entry, "raw", []))
