"""The study vocabulary: steering methods, rating scales with their ranges, and the balance rule.

Declared once here; the spec checker, the models' choices, the export and the slot planner
all read them from this module. The methods themselves belong to the generation library
(``generation.types``, which owns conditions and cannot import Django). Torch- and
Django-free, so the spec checker stays plain Python.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from generation.types import METHOD_DESCRIPTIONS, METHODS

__all__ = [
    "METHODS", "METHOD_DESCRIPTIONS", "SCALES", "SCALE_RANGES", "SLIDER", "Scale", "balance_problem", "pairing_problem",
]  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """A rating scale: what the admin calls it and the lowest and highest score a rater can give."""

    label: str
    low: int
    high: int


SLIDER = "slider_0_100"  # the default; the only scale shown as a slider (Likert scales are radio buttons)
SCALES: dict[str, Scale] = {
    SLIDER: Scale("0-100 slider (must be moved)", 0, 100),
    "likert_5": Scale("1-5 Likert", 1, 5),
    "likert_7": Scale("1-7 Likert", 1, 7),
}
SCALE_RANGES: dict[str, tuple[int, int]] = {name: (scale.low, scale.high) for name, scale in SCALES.items()}


def balance_problem(*, n_conditions: int, per_condition: int, raters: int, per_rater: int) -> str | None:
    """Why the balanced slot design cannot exist for these numbers, or None when it can.

    The design (docs/rating.md): every rater sees each condition equally often and every
    stimulus gets the same number of ratings. So ``per_rater`` splits evenly over the
    ``n_conditions``, a rater takes at most the ``per_condition`` stimuli a condition has,
    and the ratings each condition gets are a whole multiple of its stimuli. All four
    numbers must be positive (the callers say so in their own terms first).
    """
    if per_rater % n_conditions:
        return (
            f"raters.stimuli_per_rater ({per_rater}) must be a multiple of the deployment's {n_conditions} "
            "conditions, so every rater sees each condition equally often"
        )
    take = per_rater // n_conditions
    if take > per_condition:
        return (
            f"raters.stimuli_per_rater ({per_rater}) asks for {take} stimuli per condition, but each condition "
            f"has only {per_condition} (items x rated samples per item)"
        )
    if (raters * take) % per_condition:
        return (
            f"raters.per_deployment x stimuli_per_rater / conditions = {raters * take} ratings per condition, "
            f"not a multiple of its {per_condition} stimuli: stimuli would get unequal numbers of ratings"
        )
    return None


def pairing_problem(*, n_conditions: int, n_items: int, rated_samples: int, per_rater: int) -> str | None:
    """Why every rater would see one item's texts under two conditions, or None when no rater must.

    A rater takes ``per_rater / n_conditions`` texts of each condition, which cover at least
    ``ceil(that / rated_samples)`` of its items; when the conditions together need more items
    than the deployment has, every rater meets some item under two conditions, side by side
    (docs/rating.md: such pairs invite comparison and make the manipulation guessable). Chance
    pairs in a design that does not force them are fine. Positive numbers only, as
    :func:`balance_problem`.
    """
    take = per_rater // n_conditions
    least_items = math.ceil(take / rated_samples)
    if n_conditions * least_items <= n_items:
        return None
    return (
        f"every rater would see texts of one item under two conditions side by side ({n_items} item(s), "
        f"{take} text(s) of each of {n_conditions} conditions per rater): add items, give raters fewer stimuli, "
        "or set raters.allow_paired_items: true to accept it"
    )


def did_you_mean(value: str, known: list[str]) -> str:
    """A hint for a misspelt key of a spec: `` (did you mean 'x'?)`` for the closest known one, else ""."""
    match = difflib.get_close_matches(value, known, n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""
