"""CSV a spreadsheet will not run: OWASP's rule against formula injection, and its exact inverse.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by
Excel, LibreOffice and Google Sheets as a formula: a stimulus (model output) or a rater's
answer beginning ``=HYPERLINK(`` would run in the researcher's spreadsheet. Such text cells
are written with a leading apostrophe, which spreadsheets take as "this is text" and do not
show. So that the file reads back exactly, a text cell that itself begins with an apostrophe
gets one more; :func:`frame_csv_read` removes the one added. Numbers are never touched (a
negative score stays a number), and Parquet files are written exact.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MARK = "'"


def cell_neutralise(value: Any) -> Any:
    """``value`` as a CSV cell: text that a spreadsheet would run (or that starts with the mark) marked."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, MARK)):
        return MARK + value
    return value


def cell_restore(value: Any) -> Any:
    """The inverse of :func:`cell_neutralise`."""
    if isinstance(value, str) and value.startswith(MARK):
        return value[1:]
    return value


def _text_cells_map(frame: pd.DataFrame, function) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(function)
    return frame


def frame_csv_write(frame: pd.DataFrame, target: Any = None) -> str | None:
    """``frame.to_csv(target, index=False)`` with every text cell neutralised (None: the text returned).

    Lines end in CRLF (RFC 4180), so that a text holding a lone carriage return is quoted
    (with ``\n`` endings it was not, and read back as two rows).
    """
    return _text_cells_map(frame, cell_neutralise).to_csv(target, index=False, lineterminator="\r\n")


def frame_csv_read(source: Any) -> pd.DataFrame:
    """A CSV written by :func:`frame_csv_write`, read back exactly."""
    return _text_cells_map(pd.read_csv(source), cell_restore)
