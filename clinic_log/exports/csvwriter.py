"""A streaming, spreadsheet-safe CSV writer. Pure: no Flask, no database.

Text cells that a spreadsheet would run as a formula (starting with =, +, -, @, tab, carriage
return, line feed or NUL) get a leading apostrophe; numbers stay numbers, so a negative number
is never quoted into text. Quoting follows RFC 4180 with CRLF line ends; every text cell is quoted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
BOM = "\ufeff"
# Chosen so a chunk is a few tens of kilobytes: big enough to be cheap, small enough to stream.
ROWS_PER_CHUNK = 500


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


def csv_chunks(
    header: list[str],
    rows: Iterable[Iterable[object]],
    *,
    preamble: Iterable[str] = (),
    bom: bool = False,
) -> Iterator[str]:
    """Yield the CSV text in chunks: optional BOM, ``# `` preamble lines, header, rows.

    Memory stays flat whatever the number of rows: each chunk is written and handed on.
    """
    buffer = io.StringIO()
    # Every text cell quoted, numbers bare: a '#' or ',' inside text can never be read as a
    # comment (R comment.char, pandas comment) or a separator, and numbers stay numbers.
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    if bom:
        buffer.write(BOM)
    for line in preamble:
        buffer.write("# " + _plain(line) + "\r\n")
    writer.writerow([csv_cell(name) for name in header])
    count = 0
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        count += 1
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _plain(line: str) -> str:
    """A preamble line that stays one unquoted cell, so readers can skip it as a comment
    (R ``comment.char="#"``, pandas ``comment="#"``)."""
    return line.replace(",", ";").replace('"', "'").replace("\r", " ").replace("\n", " ")
