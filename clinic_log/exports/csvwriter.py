"""A streaming, spreadsheet-safe CSV writer. Pure: no Flask, no database.

Text cells that a spreadsheet would run as a formula (starting with =, +, -, @, tab, carriage
return, line feed or NUL) get a leading apostrophe; numbers stay numbers, so a negative number
is never quoted into text. Quoting follows RFC 4180 with CRLF line ends; every text cell is quoted.

``csv_cell`` is the rule. A caller that writes many rows can ask for it once per distinct value
(``CellCache``) and write rows of cells itself (``line_writer``, ``csv_line``), handing
``csv_chunks`` rows that carry their own text (``csv_text``); the bytes are the same.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from decimal import Decimal

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
BOM = "\ufeff"
# Chosen so a chunk is a few tens of kilobytes: big enough to be cheap, small enough to stream.
ROWS_PER_CHUNK = 500
# CellCache stops learning new values past this many (memory stays bounded on unique notes).
CACHE_LIMIT = 20_000
_QUOTING = {"quoting": csv.QUOTE_NONNUMERIC}


def csv_cell(value: object) -> object:
    """The value as it should appear in a cell: safe text, or an untouched number."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


class CellCache(dict):
    """``csv_cell`` of text values that repeat (codes, names, labels, short notes), worked out
    once per distinct value: ``cells[value]``.

    For text and None only: as dictionary keys 1, 1.0 and True are the same key, and
    ``csv_cell`` treats them differently.
    """

    __slots__ = ()

    def __missing__(self, value: str | None) -> str:
        cell = csv_cell(value)
        if len(self) < CACHE_LIMIT:
            self[value] = cell
        return cell


class _Appender:
    __slots__ = ("write",)

    def __init__(self, write: Callable[[str], object]):
        self.write = write


def line_writer(write: Callable[[str], object], *, line_end: str = "\r\n"):
    """A ``csv.writer`` with the export's quoting that hands each row's text to ``write``
    (``list.append`` collects lines). Its rows must already be cells (see ``csv_cell``)."""
    # Every text cell quoted, numbers bare: a '#' or ',' inside text can never be read as a
    # comment (R comment.char, pandas comment) or a separator, and numbers stay numbers.
    return csv.writer(_Appender(write), lineterminator=line_end, **_QUOTING)


def csv_line(values: Iterable[object], *, line_end: str = "\r\n") -> str:
    """One row as ``csv_chunks`` writes it, ``csv_cell`` applied to every value."""
    lines: list[str] = []
    line_writer(lines.append, line_end=line_end).writerow([csv_cell(v) for v in values])
    return lines[0]


def csv_chunks(
    header: list[str],
    rows: Iterable[Iterable[object]],
    *,
    preamble: Iterable[str] = (),
    bom: bool = False,
) -> Iterator[str]:
    """Yield the CSV text in chunks: optional BOM, ``# `` preamble lines, header, rows.

    ``rows`` gives lists of values, each written through ``csv_cell``; or it has a
    ``csv_text()`` method that yields its rows already written, whole lines a chunk, exactly
    as they would be from its values (the exports' fast path).
    Memory stays flat whatever the number of rows: each chunk is written and handed on.
    """
    buffer = io.StringIO()
    writer = line_writer(buffer.write)
    if bom:
        buffer.write(BOM)
    for line in preamble:
        buffer.write("# " + _plain(line) + "\r\n")
    writer.writerow([csv_cell(name) for name in header])
    written = getattr(rows, "csv_text", None)
    if written is not None:
        head = buffer.getvalue()
        for chunk in written():
            yield head + chunk if head else chunk
            head = ""
        if head:
            yield head
        return
    count = 0
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        count += 1
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators: a TAB splits a
# line into cells for a tab-separated reader, and str.splitlines breaks at VT, FF, FS, GS, RS,
# NEL, U+2028 and U+2029 as well as at CR and LF.
_UNPLAIN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _plain(line: str) -> str:
    """A preamble line that stays one unquoted cell on one line, so readers can skip it as a
    comment (R ``comment.char="#"``, pandas ``comment="#"``); what would break it is a space."""
    return _UNPLAIN.sub(" ", line.replace(",", ";").replace('"', "'"))
