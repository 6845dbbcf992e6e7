"""Numbers a request carries (ids in paths and query strings, page numbers), read in one place.

An id is what an id column can hold: 1 to 2**31 - 1, PostgreSQL's ``integer``. SQLite's
columns are wider, so without the bound a number would work on one database and end in an
overflow inside the driver (a 500) on the other; past 2**63 it fails on both. Only ASCII
digits count: ``str.isdigit`` says yes to "²", which ``int`` then refuses, and ``int`` reads
"١٢" and "１" as numbers that no link the app writes ever holds.
"""

from __future__ import annotations

import re

from flask import abort, request

ID_MAX = 2**31 - 1
PAGE_MAX = 100_000  # far past any real list; keeps OFFSET arithmetic small
_ID = re.compile(r"[0-9]{1,10}")
_DIGITS = re.compile(r"[0-9]+")


def parse_id(raw: object) -> int | None:
    """The id written in ``raw`` (surrounding whitespace allowed), or None when it is not one
    an id column could hold."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not _ID.fullmatch(text):
        return None
    value = int(text)
    return value if 1 <= value <= ID_MAX else None


def query_id(name: str) -> int | None:
    """The id in query parameter ``name``: None when it is absent or empty.

    :raise 404: a value no id can have, as for an id in the path (``IdConverter``); a filter
        that cannot match must not silently fall back to "no filter".
    """
    raw = request.args.get(name, "")
    if not raw.strip():
        return None
    value = parse_id(raw)
    if value is None:
        abort(404)
    return value


def query_page(name: str = "page", maximum: int = PAGE_MAX) -> int:
    """A page number from the query string: 1 when absent or not a number, never above
    ``maximum``. A list shows its nearest page rather than refusing, as its pager promises."""
    raw = request.args.get(name, "").strip()
    if not _DIGITS.fullmatch(raw):
        return 1
    digits = raw.lstrip("0") or "0"
    # Thousands of digits would cost int() real time before the clamp: too far is too far.
    return maximum if len(digits) > len(str(maximum)) else min(max(int(digits), 1), maximum)
