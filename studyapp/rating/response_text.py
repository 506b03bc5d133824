"""One normalisation of every response a rater reads, whatever its condition.

See docs/rating.md, "How responses are shown".

Models differ in how they format an answer: one writes ``**bold**`` and numbered lists, its
steered twin plain sentences. Shown as typed, the formatting itself could tell a rater which
condition wrote a response. So every response goes through the same steps before display:

1. Unicode NFC; ``\\r\\n`` and ``\\r`` become ``\\n``; tabs and other spaces become one space.
2. Markdown markup is removed, its text kept: headings (``# Title``), emphasis (``**b**``,
   ``__b__``, ``*i*``, ``_i_``), inline code, links (``[text](url)`` -> ``text``), block quotes,
   horizontal rules.
3. Every list item, numbered (``1.``, ``1)``) or bulleted (``-``, ``*``, ``+``, ``•``), starts
   with the same ``• `` marker on its own line.
4. Runs of spaces become one space; each line is stripped; more than one blank line becomes
   one (a paragraph break); leading and trailing blank lines are dropped.

The result is plain text; the template escapes it and turns line breaks into ``<br>`` and
``<p>`` (Django's ``linebreaks``). The stored text is never changed: the export has it as
generated.
"""

from __future__ import annotations

import re
import unicodedata

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_QUOTE = re.compile(r"^\s{0,3}>\s?")
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*+•])\s+")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_CODE = re.compile(r"`+([^`\n]*)`+")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u3000]+")


def _inline(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    text = _BOLD.sub(r"\2", text)
    text = _ITALIC_STAR.sub(r"\1", text)
    return _ITALIC_UNDERSCORE.sub(r"\1", text)


def normalise_response(text: str) -> str:
    """The text a rater sees for a generated response (plain text; see the module docstring)."""
    text = unicodedata.normalize("NFC", text or "").replace("\r\n", "\n").replace("\r", "\n")
    lines: list[str] = []
    for raw in text.split("\n"):
        line = _SPACES.sub(" ", raw).strip()
        if _RULE.match(line):
            line = ""
        line = _QUOTE.sub("", line)
        if heading := _HEADING.match(line):
            line = heading.group(1)
        if _LIST_ITEM.match(line):
            line = "• " + _LIST_ITEM.sub("", line, count=1)
        lines.append(_SPACES.sub(" ", _inline(line)).strip())
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip("\n")
