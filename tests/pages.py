"""Reading a rendered page the way the tests need it: the text a person reads, the error next
to a field, and what the form's inputs hold (so a refused form can be shown to keep its input).
"""

from __future__ import annotations

import html
import re


def text_of(page) -> str:
    """The page's markup with entities decoded (a response or a string)."""
    return html.unescape(page.get_data(as_text=True) if hasattr(page, "get_data") else page)


def readable_text(page) -> str:
    """The page as a person reads it: no tags, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.get_data(as_text=True))).split())


def field_errors(page, field_id: str) -> str:
    """The error list rendered next to one field ('' when there is none)."""
    match = re.search(
        rf'<div class="field-errors" id="{re.escape(field_id)}-errors"[^>]*>(.*?)</div>',
        page.get_data(as_text=True),
        re.DOTALL,
    )
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split()) if match else ""


def _attrs(tag: str) -> dict[str, str]:
    return {
        name: html.unescape(value) if value is not None else ""
        for name, value in re.findall(r'([\w-]+)(?:="([^"]*)")?', tag[len("<input") :])
    }


def inputs(page, name: str | None = None) -> list[dict[str, str]]:
    """The attributes of every ``<input>`` (named ``name``, when given), in page order."""
    tags = re.findall(r"<input\b[^>]*>", page.get_data(as_text=True))
    return [attrs for attrs in map(_attrs, tags) if name is None or attrs.get("name") == name]


def input_val(page, name: str) -> str:
    """The value of the first input named ``name`` (for csrf_token: the form's own, not the
    log-out form's)."""
    fields = inputs(page, name)
    if name == "csrf_token":
        fields = [f for f in fields if f.get("id") == "csrf_token"]
    assert fields, f"no input named {name!r} on the page"
    return fields[0].get("value", "")


def checked(page, name: str) -> list[str]:
    return [attrs["value"] for attrs in inputs(page, name) if "checked" in attrs]


def textarea(page, name: str) -> str:
    match = re.search(
        rf'<textarea[^>]*name="{name}"[^>]*>\r?\n?(.*?)</textarea>',
        page.get_data(as_text=True),
        re.DOTALL,
    )
    return html.unescape(match.group(1)) if match else ""
