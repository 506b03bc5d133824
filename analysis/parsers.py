"""The one parser per task: a model's raw answer -> the units the task is scored on.

``generation`` (the sweep, task families) and ``analysis`` (the scorers) both import
these functions, so a setting picked by the sweep is scored the same way in the study.
Small models answer in many shapes (a JSON array, a numbered list, bullets, commas, one
space-separated line, markdown bold, a preamble such as "Here are some uses for a
brick:", trailing commentary, glosses such as "apple - a fruit"), so the parsers accept
all of them and never raise: an unparseable answer is an empty list, which the scorer
then counts as invalid instead of dropping it.
"""

from __future__ import annotations

import json
import re

DAT_WORDS_ASKED = 10  # "name 10 nouns" (Olson et al. 2021): words after the tenth are not part of the answer

_LIST_MARKER = re.compile(r"^\s*(?:[-*•+]+\s*|\(?\d{1,3}\s*[.):\]]\s*|\(?[a-jA-J][.)]\s+)")
_JSON_ARRAY = re.compile(r"\[[^\[\]]*\]", re.DOTALL)
_MARKDOWN = re.compile(r"\*\*|__|`")
# A gloss after the word: "apple - a fruit", "apple – ...", "apple (a fruit)", "apple: a fruit".
_GLOSS = re.compile(r"\s+[-–—]\s+.*$|\s*[–—].*$|\s*\(.*$|\s*:\s+.*$")
_TRIM = "\"'`*.,;:!?“”‘’ \t"
# Words that make a line a sentence rather than a list of nouns ("Here are some words").
_FUNCTION_WORDS = frozenset(
    str.split(
        "a an the and or but of to in on for with from as at by is are was were be been am i you we they it "
        "this that these those here there my your our their some any each other very as such which what "
        "who not no can will would should could may might do does did have has had sure okay ok"
    )
)
# Lines that talk about the answer instead of giving it.
_COMMENTARY = re.compile(
    r"^(?:sure|okay|ok|certainly|of course|absolutely|great|here(?:'s| is| are)|these|this|those|i |i'm|"
    r"i've|i hope|hope|let me|note|remember|feel free|enjoy|in summary|overall|each of|all of)\b",
    re.IGNORECASE,
)


def _strip_marker(line: str) -> str:
    return _LIST_MARKER.sub("", line, count=1).strip()


def _is_preamble(line: str) -> bool:
    return line.rstrip().endswith(":")


def _dat_piece(piece: str) -> str | None:
    """One candidate word from a list entry, or None when the entry is a sentence."""
    piece = _GLOSS.sub("", piece.strip()).strip(_TRIM)
    if not piece:
        return None
    tokens = piece.split()
    # A DAT word is short: a compound ("ice cream", "cul de sac") at most.
    if len(tokens) <= 3 and not any(t.lower().strip(_TRIM) in _FUNCTION_WORDS for t in tokens):
        return piece
    return None


def parse_dat_words(text: str, *, limit: int = DAT_WORDS_ASKED) -> list[str]:
    """The candidate words of a DAT answer, in order, as written (the scorer normalises them).

    Accepted shapes: a JSON array; one word per line, with or without list markers or
    markdown bold; comma- or semicolon-separated words; one line of space-separated
    words (when it reads as a list, not a sentence: no function words such as "the",
    "are"). Dropped: a preamble line ending in a colon, the preamble before a colon on
    the answer's line, sentences and commentary, glosses after a dash, colon or
    parenthesis. At most ``limit`` words (the task asks for 10) are returned; fewer are
    returned as they are, so the scorer counts too-short answers as invalid.

    Returns
    -------
    list of str
        Possibly empty; never raises.
    """
    if not isinstance(text, str):
        return []
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
        lines = [_MARKDOWN.sub("", raw).strip() for raw in text.splitlines()]
        lines = [line for line in lines if line and not _is_preamble(line)]
        for line in lines:
            line = _strip_marker(line)
            head, colon, tail = line.partition(":")
            if colon and len(head.split()) >= 3:
                line = tail.strip()  # "Here are my ten words: cat, dog, ..."
            if "," in line or ";" in line:
                pieces = re.split(r"[,;]|\band\b", line)
            elif len(lines) == 1 and _is_word_run(line):  # in a list, a line is one entry
                pieces = line.split()
            else:
                pieces = [line]
            words.extend(w for w in map(_dat_piece, pieces) if w)
    return words[:limit]


def _is_word_run(line: str) -> bool:
    """One line of three or more space-separated nouns ("cat dog thimble ocean ...")."""
    tokens = line.strip(_TRIM).split()
    return (
        len(tokens) >= 3
        and all(re.fullmatch(r"[A-Za-z][A-Za-z'-]*[.,]?", t) for t in tokens)
        and not any(t.lower().strip(".,") in _FUNCTION_WORDS for t in tokens)
    )


def parse_aut_uses(text: str) -> list[str]:
    """The listed uses of an AUT answer, in order.

    With list markers (bullets, numbers), each marked line is one use and unmarked lines
    (preambles, commentary) are ignored. Without markers every non-empty line is one
    use, except preambles ending in a colon and commentary ("Here are...", "I hope...");
    a single paragraph is split into sentences and semicolon-separated parts, after
    the preamble before a colon ("Here are some uses for a brick: ..."). Markdown bold is
    removed, the use's explanation kept ("Doorstop: keep a door open").

    Returns
    -------
    list of str
        Possibly empty; never raises.
    """
    if not isinstance(text, str):
        return []
    lines = [_MARKDOWN.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    marked = [line for line in lines if _LIST_MARKER.match(line)]
    if marked:
        chosen = [_strip_marker(line) for line in marked]
    else:
        chosen = [line for line in lines if not _is_preamble(line) and not _COMMENTARY.match(line)]
        if not chosen and len(lines) == 1:
            chosen = lines  # a one-line answer that opens with commentary: split it below
        if len(chosen) == 1:
            head, colon, tail = chosen[0].partition(":")
            is_preamble = bool(colon) and (bool(_COMMENTARY.match(head)) or len(head.split()) >= 4)
            body = tail if is_preamble else chosen[0]
            chosen = [p for p in re.split(r"(?<=[.!?;])\s+", body.strip()) if p.strip()]
    uses = []
    for use in chosen:
        use = use.strip().rstrip(".;").strip()
        if use and not _is_preamble(use) and re.search(r"[A-Za-z0-9]", use):
            uses.append(use)
    return uses
