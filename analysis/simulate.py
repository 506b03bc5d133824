"""Simulated rating exports with known effects, for validation, power and benchmarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


def simulate_ratings(
    *,
    n_deployments: int = 24,
    raters_per_deployment: int = 30,
    stimuli_per_condition: int = 5,
    conditions: Sequence[str] = ("base", "weight"),
    dimensions: Sequence[str] = ("originality", "surprise", "creativity"),
    effects: Mapping[str, float] | float = 0.4,
    intercept: float = 50.0,
    sd_rater: float = 8.0,
    sd_stimulus: float = 6.0,
    sd_residual: float = 15.0,
    sd_item: float = 0.0,
    sd_rater_slope: float = 0.0,
    sd_item_slope: float = 0.0,
    one_arm_per_deployment: bool = False,
    raters_cross_deployments: bool = False,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Simulate a long ratings export from a crossed mixed model with known parameters.

    Long because its parameters are documented here; the body is under 20 lines.
    Every rater of a deployment rates every stimulus of that deployment on every
    dimension, as in the N=720 design (24 deployments x 30 raters x 10 stimuli). Items
    (the prompts: ``item00``, ``item01``, …) are shared by all deployments, one stimulus
    per item and condition in each. The score of rater r on stimulus s of item i is::

        intercept + effect(condition) + u_r + v_s + w_i + (a_r + c_i) * steered + e

    with ``steered`` 1 for every condition but the first; ``a_r`` (SD ``sd_rater_slope``)
    and ``c_i`` (SD ``sd_item_slope``) are how much steering moves that rater or item.

    Parameters
    ----------
    n_deployments, raters_per_deployment, stimuli_per_condition : int
        Design size; ``stimuli_per_condition`` is also the number of items.
    conditions : sequence of str
        The first is the reference condition.
    dimensions : sequence of str
        Rated dimensions; each gets its own independent random effects.
    effects : float or mapping
        Effect of every non-reference condition in units of the total SD
        ``sqrt(sd_rater² + sd_stimulus² + sd_residual²)`` (Cohen's d with total variance),
        or a mapping ``condition -> d``.
    intercept, sd_rater, sd_stimulus, sd_residual, sd_item : float
        Mean of the reference condition and the SDs of the random intercepts and residual.
    sd_rater_slope, sd_item_slope : float
        SDs of the by-rater and by-item random slopes of ``steered`` (0: no slopes).
    one_arm_per_deployment : bool
        With several non-reference conditions: each deployment has the reference and one
        of them, in turn (the paper's design: a rater sees one steered arm); else every
        deployment has all conditions.
    raters_cross_deployments : bool
        When true, each rater rates the stimuli of two deployments, so raters are no
        longer nested in deployments (the design stays connected).
    seed : int or None
        Seed of the random generator.

    Returns ``rater, deployment, condition, model, task, item, stimulus, dimension, score``.
    """
    rng = np.random.default_rng(seed)
    total_sd = float(np.sqrt(sd_rater**2 + sd_stimulus**2 + sd_residual**2))
    pairs, raters, stimuli = _crossed_design(
        n_deployments, raters_per_deployment, stimuli_per_condition, conditions, one_arm_per_deployment,
        raters_cross_deployments,
    )  # fmt: skip
    mean = intercept + pairs["condition"].map(_effects_by_condition(effects, conditions)).to_numpy() * total_sd
    spread = _Spread(sd_rater, sd_stimulus, sd_item, sd_rater_slope, sd_item_slope, sd_residual)
    levels = _Levels(
        pd.Index(raters["rater"]), pd.Index(stimuli["stimulus"]), pd.Index(sorted(stimuli["item"].unique()))
    )
    steered = (pairs["condition"] != conditions[0]).to_numpy(float)
    frames = [
        pairs.assign(dimension=dim, score=_scores(mean, pairs, steered, spread, levels, rng)) for dim in dimensions
    ]
    out = pd.concat(frames, ignore_index=True)
    out["model"] = "sim"
    out["task"] = "aut"
    return out[["rater", "deployment", "condition", "model", "task", "item", "stimulus", "dimension", "score"]]


def _effects_by_condition(effects: Mapping[str, float] | float, conditions: Sequence[str]) -> dict[str, float]:
    if isinstance(effects, Mapping):
        d_by_condition = {c: float(effects.get(c, 0.0)) for c in conditions}
    else:
        d_by_condition = {c: (0.0 if i == 0 else float(effects)) for i, c in enumerate(conditions)}
    d_by_condition[conditions[0]] = 0.0
    return d_by_condition


@dataclass(frozen=True)
class _Spread:
    """The SDs of the simulated random effects and residual."""

    rater: float
    stimulus: float
    item: float
    rater_slope: float
    item_slope: float
    residual: float


@dataclass(frozen=True)
class _Levels:
    """The levels of each grouping factor, one draw per level."""

    raters: pd.Index
    stimuli: pd.Index
    items: pd.Index


def _scores(
    mean: np.ndarray,
    pairs: pd.DataFrame,
    steered: np.ndarray,
    spread: _Spread,
    levels: _Levels,
    rng: np.random.Generator,
) -> np.ndarray:
    """One dimension's scores: the means plus random effects and residual, drawn in a fixed order."""

    def draw(sd: float, index: pd.Index, keys: pd.Series) -> np.ndarray:
        # A zero SD draws nothing, so a seed gives the same ratings as before slopes existed.
        if sd == 0:
            return np.zeros(len(keys))
        return pd.Series(rng.normal(0, sd, len(index)), index=index).reindex(keys).to_numpy()

    return (
        mean
        + draw(spread.rater, levels.raters, pairs["rater"])
        + draw(spread.stimulus, levels.stimuli, pairs["stimulus"])
        + draw(spread.item, levels.items, pairs["item"])
        + draw(spread.rater_slope, levels.raters, pairs["rater"]) * steered
        + draw(spread.item_slope, levels.items, pairs["item"]) * steered
        + rng.normal(0, spread.residual, len(pairs))
    )


def _crossed_design(
    n_deployments: int,
    raters_per_deployment: int,
    stimuli_per_condition: int,
    conditions: Sequence[str],
    one_arm_per_deployment: bool,
    raters_cross_deployments: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(rater-stimulus pairs, raters, stimuli) of the simulated design."""
    arms = list(conditions[1:])
    stim_rows = []
    for dep in range(n_deployments):
        here = [conditions[0], arms[dep % len(arms)]] if one_arm_per_deployment and arms else list(conditions)
        for cond in here:
            for k in range(stimuli_per_condition):
                stim_rows.append((f"d{dep:02d}", cond, f"item{k:02d}", f"d{dep:02d}-{cond}-{k:02d}"))
    stimuli = pd.DataFrame(stim_rows, columns=["deployment", "condition", "item", "stimulus"])
    raters = pd.DataFrame(
        [(f"d{dep:02d}", f"r{dep:02d}-{j:03d}") for dep in range(n_deployments) for j in range(raters_per_deployment)],
        columns=["deployment", "rater"],
    )
    pairs = raters.merge(stimuli, on="deployment")
    if raters_cross_deployments and n_deployments > 1:
        # Half of each deployment's raters also rate the next deployment's stimuli: one
        # connected rater–stimulus graph, so no grouping factor nests both.
        dep_index = raters["deployment"].str[1:].astype(int)
        nxt = raters.assign(deployment=[f"d{(i + 1) % n_deployments:02d}" for i in dep_index])
        nxt = nxt[raters.groupby("deployment").cumcount() % 2 == 0]
        pairs = pd.concat([pairs, nxt.merge(stimuli, on="deployment")], ignore_index=True)
    return pairs, raters, stimuli


_DAT_WORDS = [
    "cat",
    "dog",
    "thimble",
    "ocean",
    "justice",
    "spoon",
    "volcano",
    "tree",
    "idea",
    "piano",
    "glacier",
    "ladder",
    "tomato",
    "galaxy",
    "pencil",
    "violin",
    "desert",
    "anchor",
    "lantern",
    "monkey",
]
_AUT_USES = [
    "build a wall",
    "use as a doorstop",
    "paperweight for notes",
    "grind into red pigment for paint",
    "hold a tent down in the wind",
    "a step to reach a shelf",
    "a bookend",
    "heat it to warm a bed",
    "build a wall",
    "a plant pot stand",
    "sculpt a small statue",
    "anchor a small boat",
]
_OBJECTS = ["brick", "paperclip", "shoe", "tire", "fork", "rope"]


def simulate_export(
    *,
    n_deployments: int = 4,
    raters_per_deployment: int = 6,
    stimuli_per_condition: int = 3,
    effects: float = 0.4,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small platform export: long ratings plus the stimulus table with texts.

    Even deployments run the AUT, odd ones the DAT; ratings carry the platform's extra
    columns (``attention_failed``, ``rater_complete``, ``seconds_on_page``,
    ``scale_min``, ``scale_max``) and a ``usefulness`` dimension. Steered DAT answers
    are made more often valid and more varied, so every report section has signal.
    For demos, notebooks and tests.
    """
    rng = np.random.default_rng(seed)
    ratings = simulate_ratings(
        n_deployments=n_deployments,
        raters_per_deployment=raters_per_deployment,
        stimuli_per_condition=stimuli_per_condition,
        dimensions=("originality", "surprise", "creativity", "usefulness"),
        effects=effects,
        seed=seed,
    )
    dep_index = ratings["deployment"].str[1:].astype(int)
    ratings["task"] = np.where(dep_index % 2 == 0, "aut", "dat")
    obj = {f"item{k:02d}": _OBJECTS[k % len(_OBJECTS)] for k in range(stimuli_per_condition)}
    ratings["item"] = np.where(ratings["task"] == "aut", ratings["item"].map(obj), ratings["item"])
    ratings["score"] = ratings["score"].clip(0, 100).round()
    ratings["scale_min"], ratings["scale_max"] = 0, 100
    ratings["seconds_on_page"] = rng.gamma(4.0, 3.0, len(ratings)).round(1)
    ratings["attention_failed"] = ratings["rater"] == ratings["rater"].iloc[0]
    ratings["rater_complete"] = True
    ratings["page_index"] = ratings.groupby("rater").cumcount()

    stimuli = ratings.drop_duplicates("stimulus")[["stimulus", "deployment", "condition", "model", "task", "item"]]
    stimuli = stimuli.reset_index(drop=True)
    stimuli["sample_index"] = stimuli.groupby(["deployment", "condition", "item"]).cumcount()
    texts = []
    for _, row in stimuli.iterrows():
        steered = row["condition"] != "base"
        if row["task"] == "dat":
            n = 10 if steered or rng.random() < 0.4 else 5
            pool = _DAT_WORDS if steered else _DAT_WORDS[:8]
            texts.append("\n".join(f"{i + 1}. {w}" for i, w in enumerate(rng.choice(pool, n, replace=True))))
        else:
            k = int(rng.integers(3, 7))
            pool = _AUT_USES if steered else _AUT_USES[:4]
            texts.append("\n".join(f"- {u}" for u in rng.choice(pool, k, replace=True)))
    stimuli["text"] = texts
    # As in the platform's export: the item as the model saw it, and the id of the generated text.
    stimuli["item_text"] = np.where(stimuli["task"] == "aut", stimuli["item"], "ten unrelated nouns")
    stimuli["text_id"] = stimuli["stimulus"]
    return ratings, stimuli
