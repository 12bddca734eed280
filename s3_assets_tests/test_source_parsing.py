"""Reading a UCI data file: it is exactly what the notebook's `pd.read_table` reads, or a
BadInputError naming the file and the line; never another exception (hypothesis)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3_assets.lib.source import BadInputError, UciTable, read_uci_table

NARROW = UciTable("narrow", "narrow2000.txt", "raw/narrow.csv", 3, "a 3-column data file")
TRAIN = UciTable("train", "ticdata2000.txt", "raw/train.csv", 86, "training set")
ROW = "\t".join(["1"] * 86)

GOOD_CELLS = st.integers(min_value=-50, max_value=50).map(str)
ODD_CELLS = st.sampled_from([
    "99999999999999999999999", "-99999999999999999999999", "9223372036854775808", "9223372036854775807",
    "-9223372036854775808", "1e5", "2.0", "+3", " 3", "3 ", "", "x", "0x1F", "nan", "inf", "1_000", "\ufeff1",
    "\u0663", "3\r", "\x0c", "1,5", "--1", "-", "007",
])
CELLS = st.one_of(GOOD_CELLS, GOOD_CELLS, GOOD_CELLS, ODD_CELLS)


@st.composite
def data_files(draw, columns: int) -> bytes:
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    lines = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        width = draw(st.sampled_from([columns] * 6 + [columns - 1, columns + 1, 1]))
        line = "\t".join(draw(CELLS) for _ in range(max(width, 1)))
        if draw(st.integers(0, 9)) == 0:
            line += "\t"  # trailing tab
        lines.append(line + (ending if draw(st.integers(0, 9)) else draw(st.sampled_from(["\n", "\r\n", "\r"]))))
    if draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), ending)  # a blank line somewhere
    text = "".join(lines) + draw(st.sampled_from(["", "", ending, ending * 2]))
    prefix = draw(st.sampled_from([b"", b"", b"", b"\xef\xbb\xbf"]))  # UTF-8 BOM
    return prefix + text.encode("utf-8")


def assert_names_file_and_line(error: BadInputError, filename: str) -> None:
    message = str(error)
    assert filename in message, message
    assert " line " in message or "line 1)" in message or message.endswith("is empty"), message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=data_files(NARROW.columns))
def test_read_uci_table_returns_the_notebooks_frame_or_names_file_and_line(content):
    try:
        frame = read_uci_table(content, NARROW)
    except BadInputError as error:
        assert_names_file_and_line(error, NARROW.filename)
        return
    assert frame.shape[1] == NARROW.columns and all(dtype == np.int64 for dtype in frame.dtypes)
    notebook = pd.read_table(io.BytesIO(content), header=None)
    pd.testing.assert_frame_equal(frame, notebook)
    assert frame.to_csv(index=False) == notebook.to_csv(index=False)


@pytest.mark.parametrize(("cell", "message"), [
    ("99999999999999999999999", "line 2, column 5: '99999999999999999999999' does not fit a 64-bit integer"),
    ("1e5", "line 2, column 5: '1e5' is not a whole number"),
    ("2.0", "line 2, column 5: '2.0' is not a whole number"),
    ("+3", r"line 2, column 5: '\+3' is not a whole number"),
    (" 3", "line 2, column 5: ' 3' is not a whole number"),
    ("", "line 2, column 5: missing value"),
    ("\x1b[31m", r"line 2, column 5: '\\x1b\[31m' is not a whole number"),  # shown escaped
])
def test_odd_cells_name_file_line_and_column(cell, message):
    cells = ["1"] * 86
    cells[4] = cell
    content = (ROW + "\r\n" + "\t".join(cells) + "\r\n").encode()
    with pytest.raises(BadInputError, match=message):
        read_uci_table(content, TRAIN)


@pytest.mark.parametrize(("content", "message"), [
    (b"\xef\xbb\xbf" + (ROW + "\r\n").encode(), "ticdata2000.txt line 1: byte 0xef is not ASCII"),
    ((ROW + "\t\r\n") .encode() * 3, r"ticdata2000.txt: expected 86 tab-separated columns, found 87 \(every line"),
    ((ROW + "\r\n" + ROW + "\t\r\n").encode(), r"Expected 86 fields in line 2, saw 87 \(a trailing tab\?\)"),
    ((ROW + "\r\n\r\n" + ROW + "\r\n").encode(), "line 2: empty line inside the data"),
    ((ROW + "\r" + ROW + "\r").encode(), "expected 86 tab-separated columns, found 171"),  # old Mac line ends
    ((ROW + "\r\n").encode() + b"\x00", "ticdata2000.txt line 2: contains NUL bytes"),
])
def test_file_level_oddities_name_the_line(content, message):
    with pytest.raises(BadInputError, match=message):
        read_uci_table(content, TRAIN)


def test_mixed_line_ends_and_trailing_blank_lines_read_like_the_notebook():
    content = (ROW + "\r\n" + ROW + "\n" + ROW + "\r\n\r\n\n").encode()
    frame = read_uci_table(content, TRAIN)
    pd.testing.assert_frame_equal(frame, pd.read_table(io.BytesIO(content), header=None))
    assert frame.shape == (3, 86)
