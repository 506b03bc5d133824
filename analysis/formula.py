"""Model formulas in a documented subset of lme4's syntax, and the structure the design supports.

A formula reads ``score ~ <fixed part> + (<effects> | <group>) + ...``:

- the fixed part is a patsy formula (``condition``, ``0 + task + task:condition``);
- each random term is ``(1 | g)`` (an intercept per level of g), ``(1 + x | g)`` (an
  intercept and a slope per level, correlated), ``(1 + x || g)`` (the same, uncorrelated),
  ``(0 + x | g)`` (a slope alone); ``x`` may be several variables joined by ``+``;
- variables of a random term are ``steered`` (1 for a rating of any condition other than
  the reference, else 0: one slope, "how much steering moves this rater"), ``condition``
  (one slope per non-reference condition) or a numeric column of the ratings;
- groups and the response are the ratings' columns; ``rater``, ``stimulus``, ``item``,
  ``deployment`` and ``score`` stand for the columns the caller named for them.

:func:`design_terms` derives the maximal random structure a design supports (Barr et al.
2013): a slope of condition by every grouping factor within whose levels condition varies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pandas as pd

STEERED = "steered"  # the derived slope variable: condition differs from the reference
# Fewer levels than this cannot show how steering varies across them: a derived structure
# gives such a group its intercept only (two deployments, three items).
MIN_SLOPE_LEVELS = 5
CONDITION = "condition"
_TERM = re.compile(r"\(([^()|]*)(\|\|?)([^()|]*)\)")


@dataclass(frozen=True)
class RandomTerm:
    """One random term: ``effects`` ("1" for the intercept, then slope variables) varying by ``group``."""

    group: str
    effects: tuple[str, ...]
    correlated: bool = True

    @property
    def has_intercept(self) -> bool:
        return "1" in self.effects

    @property
    def slopes(self) -> tuple[str, ...]:
        return tuple(e for e in self.effects if e != "1")

    def __str__(self) -> str:
        lhs = " + ".join(self.effects) if self.has_intercept else " + ".join(("0", *self.slopes))
        # One column needs no correlation mark; `condition` is one column per arm, so it does.
        one_column = len(self.effects) == 1 and self.effects[0] != CONDITION
        bar = "|" if self.correlated or one_column else "||"
        return f"({lhs} {bar} {self.group})"

    def without(self, effect: str) -> RandomTerm | None:
        """The term with one effect left out; ``None`` when nothing is left."""
        left = tuple(e for e in self.effects if e != effect)
        return replace(self, effects=left) if left else None


@dataclass(frozen=True)
class ModelFormula:
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]

    def __str__(self) -> str:
        return " + ".join([f"{self.response} ~ {self.fixed}", *(str(t) for t in self.random)])

    def with_random(self, random: list[RandomTerm] | tuple[RandomTerm, ...]) -> ModelFormula:
        return replace(self, random=tuple(random))


def parse_formula(text: str) -> ModelFormula:
    """Parse ``response ~ fixed + (effects | group) + ...``; ``ValueError`` names what is wrong."""
    if text.count("~") != 1:
        raise ValueError(f"formula {text!r}: write it as 'score ~ condition + (1 | rater) + ...' (one '~')")
    response, rhs = (part.strip() for part in text.split("~"))
    depth = 0
    for char in rhs:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth > 1:
            raise ValueError(
                f"formula {text!r}: random terms take column names, 'steered' or 'condition', not functions of "
                "them (add the transformed variable as a column)"
            )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", response):
        raise ValueError(f"formula {text!r}: the response {response!r} must be one column name")
    random = tuple(_parse_term(m.group(1), m.group(2), m.group(3), text) for m in _TERM.finditer(rhs))
    fixed_parts = [p.strip() for p in _TERM.sub("", rhs).split("+")]
    if any(c in "".join(fixed_parts) for c in "()|"):
        raise ValueError(f"formula {text!r}: unbalanced parentheses or a '|' outside a random term")
    fixed = " + ".join(p for p in fixed_parts if p)
    if not fixed:
        raise ValueError(f"formula {text!r}: no fixed part (e.g. 'score ~ condition + ...')")
    groups = [t.group for t in random]
    if len(set(groups)) != len(groups):
        raise ValueError(f"formula {text!r}: one term per group; join the effects of a group in one term")
    return ModelFormula(response=response, fixed=fixed, random=random)


def _parse_term(lhs: str, bar: str, group: str, text: str) -> RandomTerm:
    group = group.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", group):
        raise ValueError(f"formula {text!r}: the group of a random term must be one column name, not {group!r}")
    parts = [p.strip() for p in lhs.split("+")]
    if any(not p for p in parts):
        raise ValueError(f"formula {text!r}: empty effect in '({lhs}{bar}{group})'")
    intercept = "0" not in parts
    slopes = [p for p in parts if p not in ("0", "1")]
    for s in slopes:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s):
            raise ValueError(f"formula {text!r}: random slopes are column names, 'steered' or 'condition', not {s!r}")
    if len(set(slopes)) != len(slopes):
        raise ValueError(f"formula {text!r}: a variable twice in '({lhs}{bar}{group})'")
    effects = (("1",) if intercept else ()) + tuple(slopes)
    if not effects:
        raise ValueError(f"formula {text!r}: '({lhs}{bar}{group})' has no effect")
    return RandomTerm(group=group, effects=effects, correlated=bar == "|")


@dataclass(frozen=True)
class DerivedTerm:
    term: RandomTerm
    reason: str


def design_terms(
    data: pd.DataFrame, *, groups: dict[str, str], condition_col: str, reference: str
) -> list[DerivedTerm]:
    """The maximal random terms the design supports, each with the reason for its shape.

    ``groups`` maps a group's name in the formula to its column. Condition varies within
    a group when some level of it has ratings in two conditions: then the group gets a
    slope, ``steered`` when every level sees at most one condition besides the reference
    (a rater of one deployment sees one steered arm and base), else one slope per
    condition; a group within whose levels condition is constant (a stimulus sits in one
    condition), or varies in fewer than ``MIN_SLOPE_LEVELS`` levels, gets an intercept only.
    """
    condition = data[condition_col].astype(str)
    is_arm = condition != reference
    out = []
    for name, col in groups.items():
        level = data[col].to_numpy()
        conditions_per_level = condition.groupby(level, sort=False).nunique()
        mixed = conditions_per_level[conditions_per_level > 1]
        if mixed.empty:
            out.append(DerivedTerm(RandomTerm(name, ("1",)), f"condition is constant within each {name}"))
            continue
        if len(mixed) < MIN_SLOPE_LEVELS:
            why = (
                f"condition varies within {len(mixed)} {name} level(s) only: too few to estimate how steering "
                f"varies across them ({MIN_SLOPE_LEVELS} needed), intercept only"
            )
            out.append(DerivedTerm(RandomTerm(name, ("1",)), why))
            continue
        arms_per_level = condition[is_arm].groupby(level[is_arm.to_numpy()], sort=False).nunique()
        if arms_per_level.reindex(mixed.index, fill_value=0).max() <= 1:
            term = RandomTerm(name, ("1", STEERED))
            why = f"condition varies within {name} (each sees {reference} and at most one other condition)"
        else:
            term = RandomTerm(name, ("1", CONDITION))
            why = f"several conditions vary within {name}: one slope per condition"
        out.append(DerivedTerm(term, f"{why}: {len(mixed)} of {len(conditions_per_level)} {name} levels see several"))
    return out
