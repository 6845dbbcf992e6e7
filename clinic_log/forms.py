"""Form building blocks shared by every blueprint."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from flask_wtf import FlaskForm
from wtforms import Field, PasswordField, RadioField, StringField
from wtforms.validators import ValidationError
from wtforms.widgets import DateTimeLocalInput

from .identifiers import invisible_characters
from .timeutil import AmbiguousLocalTime, LocalTimeError, local_to_utc, parse_local_input

# C0/C1 control characters except tab, newline and carriage return; PostgreSQL cannot even
# store NUL.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Tabs and line breaks of every kind: one-line fields (identifiers, labels) refuse them.
_TABS_AND_LINE_BREAKS = re.compile(r"[\t\n\r\x0b\x0c\x85\u2028\u2029]")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def normalise_newlines(value):
    """Browsers send textarea line breaks as CRLF; count and store them as one character."""
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


class BaseForm(FlaskForm):
    """Strips surrounding whitespace from every text field before validation.

    Passwords keep their spaces, and choices are matched exactly as sent (" 4 " is not 4).
    """

    class Meta:
        def bind_field(self, form, unbound_field, options):
            field_class = unbound_field.field_class
            if issubclass(field_class, StringField) and not issubclass(field_class, PasswordField):
                filters = unbound_field.kwargs.get("filters", [])
                if _strip not in filters:
                    unbound_field.kwargs["filters"] = [_strip, *filters]
            return unbound_field.bind(form=form, **options)


class EmptyForm(FlaskForm):
    """A POST-only button that changes state: carries the CSRF token and nothing else."""


class LocalDateTimeField(Field):
    """A wall-clock date and time in the site's zone, parsed strictly; ``data`` is naive.

    WTForms' own DateTimeLocalField accepts year 1 and year 9999; range checks belong to the
    form, which knows the site, the episode and the clock.
    """

    widget = DateTimeLocalInput()

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        if isinstance(self.data, datetime):
            # Seconds only when there are some, so a prefilled time round-trips exactly.
            fmt = "%Y-%m-%dT%H:%M:%S" if self.data.second else "%Y-%m-%dT%H:%M"
            return self.data.strftime(fmt)
        return ""

    def process_formdata(self, valuelist):
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        if len(valuelist) > 1:
            self.data = None
            raise ValueError("This field was sent more than once; send it once.")
        try:
            self.data = parse_local_input(valuelist[0].strip())
        except LocalTimeError as exc:
            self.data = None
            raise ValueError(str(exc)) from exc


class SingleRadioField(RadioField):
    """A radio group that refuses a repeated key instead of quietly taking the first value."""

    def process_formdata(self, valuelist):
        if len(valuelist) > 1:
            self.data = None
            raise ValueError("This question was answered more than once; choose one answer.")
        super().process_formdata(valuelist)


def refuse_control_characters(_form, field) -> None:
    if isinstance(field.data, str) and _CONTROL_CHARS.search(field.data):
        raise ValidationError(
            "Remove the control characters (invisible characters) from this text."
        )


def refuse_line_breaks(_form, field) -> None:
    if isinstance(field.data, str) and _TABS_AND_LINE_BREAKS.search(field.data):
        raise ValidationError("This must be one line: remove the tabs and line breaks.")


def refuse_invisible_characters(_form, field) -> None:
    """Invisible and text-direction characters (zero-width ones, Hangul fillers, a blank
    Braille cell, ...) make an identifier or a name look like another one."""
    if isinstance(field.data, str) and invisible_characters(field.data):
        raise ValidationError(
            "Remove the invisible or text-direction characters from this text: they make it "
            "look like something it is not."
        )


def normalise_identifier(value: str | None) -> str | None:
    """NFKC so that a full-width 'Ａ123' and 'A123' are the same patient identifier."""
    if value is None:
        return None
    return unicodedata.normalize("NFKC", value).strip()


def local_field_to_utc(form, field_name: str, tz_name: str) -> datetime | None:
    """Turn a validated wall-clock field into UTC, or put the reason on the field and return None.

    When the time happens twice (clocks going back) the field gets ``fold_choices`` so the
    template can ask which occurrence was meant, through the ``<field>_fold`` input.
    """
    field = form[field_name]
    if field.data is None:
        return None
    fold_field = form._fields.get(f"{field_name}_fold")
    fold_raw = fold_field.data if fold_field is not None else None
    fold = int(fold_raw) if fold_raw in ("0", "1") else None
    try:
        return local_to_utc(field.data, tz_name, fold)
    except AmbiguousLocalTime as exc:
        field.errors.append(str(exc))
        field.fold_choices = exc.choices
    except LocalTimeError as exc:
        field.errors.append(str(exc))
    return None


def redisplay_on_csrf_error(view):
    """Mark a form view whose input must survive an expired or missing CSRF token.

    The CSRF error handler calls such a view again; the form's own CSRF check fails the same
    way, so the view saves nothing and re-renders what the user typed with the error.
    """
    view.redisplay_on_csrf_error = True
    return view
