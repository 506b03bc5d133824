"""Turn raw model outputs into the units a task is scored on.

Small models answer in many shapes (a JSON array, a numbered list, lines, commas, a
sentence), so the parsers accept all of them and never raise: an unparseable answer is
an empty list, which the scorer then counts as invalid instead of dropping it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

_LIST_MARKER = re.compile(r"^\s*(?:[-*•]+|\(?\d{1,3}[.)\]:]|\(?[a-zA-Z][.)]\s)\s*")
_JSON_ARRAY = re.compile(r"\[[^\[\]]*\]", re.DOTALL)
_TRAILING_GLOSS = re.compile(r"\s*(?:[-–—:(]|\s-\s).*$")


def _strip_marker(line: str) -> str:
    return _LIST_MARKER.sub("", line, count=1).strip()


def parse_dat_words(text: str, *, limit: int = 10) -> list[str]:
    """Extract the candidate words of a DAT answer, in order.

    Accepts a JSON array, one word per line (with or without list markers), or words
    separated by commas or semicolons. A gloss after a dash or colon ("apple - a fruit")
    is dropped. Words are returned as written (the scorer normalises them); at most
    ``limit`` are kept.

    Parameters
    ----------
    text
        The model's response.
    limit
        The DAT asks for 10 words; anything after the tenth is ignored.

    Returns
    -------
    list of str
        Possibly empty; never raises.
    """
    words: list[str] = []
    match = _JSON_ARRAY.search(text)
    if match:
        try:
            parsed = json.loads(match.group(0))
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            words = [str(entry).strip() for entry in parsed if str(entry).strip()]
    if not words:
        lines = [line for line in text.splitlines() if line.strip()]
        pieces: list[str] = []
        for line in lines:
            line = _strip_marker(line)
            # A line holding a comma-separated answer counts as many words.
            if "," in line or ";" in line:
                pieces.extend(part for part in re.split(r"[,;]", line))
            else:
                pieces.append(line)
        for piece in pieces:
            piece = _TRAILING_GLOSS.sub("", piece.strip()).strip().strip("\"'`*.!?")
            # Sentences ("Here are ten words") are not answers; a DAT word is short.
            if piece and len(piece.split()) <= 2:
                words.append(piece)
    return words[:limit]


def parse_aut_uses(text: str) -> list[str]:
    """Extract the listed uses of an AUT answer, in order.

    Each bullet or numbered line is one use; without list markers every non-empty line
    is one use. Introductory lines ending in a colon ("Here are some uses:") are skipped.

    Returns
    -------
    list of str
        Possibly empty; never raises.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    marked = [line for line in lines if _LIST_MARKER.match(line)]
    chosen = marked if marked else lines
    uses = []
    for line in chosen:
        # Small models wrap the use's name in markdown bold ("**Doorstop**: ..."): keep the words.
        use = _strip_marker(line).replace("**", "").replace("__", "").strip()
        if use and not use.endswith(":"):
            uses.append(use)
    return uses


def parse_cc_walk(text: str) -> list[str]:
    """The walk of a ``cc_walk`` answer (``concept > relation > concept ...``); see
    :func:`analysis.combinatorial.parse_walk_text`. Imported late: spec checks stay light."""
    from analysis.combinatorial import parse_walk_text

    return parse_walk_text(text)


PARSERS: dict[str, Callable[[str], list[str]]] = {
    "dat_words": parse_dat_words,
    "aut_uses": parse_aut_uses,
    "cc_walk": parse_cc_walk,
}


def get_parser(name: str) -> Callable[[str], list[str]]:
    """The parser registered under ``name`` (``dat_words`` or ``aut_uses``)."""
    try:
        return PARSERS[name]
    except KeyError:
        raise ValueError(f"unknown output parser {name!r}; known: {', '.join(sorted(PARSERS))}") from None
