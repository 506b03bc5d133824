"""Output parsers by name, for task families (``parser: dat_words``).

The parsers themselves live in :mod:`analysis.parsers`, the one module both the
generation side (the sweep, task families) and the scorers use, so that an answer is
split into words or uses the same way wherever it is scored.
"""

from __future__ import annotations

from collections.abc import Callable

from analysis.parsers import parse_aut_uses, parse_dat_words


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

__all__ = ["PARSERS", "get_parser", "parse_aut_uses", "parse_dat_words"]


def get_parser(name: str) -> Callable[[str], list[str]]:
    """The parser registered under ``name`` (``dat_words`` or ``aut_uses``)."""
    try:
        return PARSERS[name]
    except KeyError:
        raise ValueError(f"unknown output parser {name!r}; known: {', '.join(sorted(PARSERS))}") from None
