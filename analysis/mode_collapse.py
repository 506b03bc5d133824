"""Mode collapse, steered minus base: the paper's diversity result, paired by item.

Grouping. A diversity metric describes the samples of one prompt item from one model
under one condition, so a group is (deployment, condition, item): a deployment is one
model x task x steering method, and ``condition`` is only the arm label (``base`` is the
same word in every deployment). Grouping by (condition, item) alone, as an earlier
version did, pools every model's base texts into one group and holds each copied base
text twice, which makes base look more collapsed than it is.

Copied base texts. The base arm of a model is generated once and copied into each of
its twin deployments (weight vs base, activation vs base). The export's ``text_id``
names a generated text across those copies; without it, a text is identified by
(model, condition, item, text). Within a group each distinct text is counted once.

Pairing. For every deployment, steered condition and item: difference = metric(steered
samples) - metric(base samples of the same deployment and item). Per model, the
estimate is the mean difference over its items, with a percentile bootstrap CI that
resamples items. Pooled over models (per steered condition), the estimate is the mean
of the per-model means, with a two-stage bootstrap: models resampled, then items within
each drawn model. Items and models are the units a new study would draw afresh. The
resampled item means are widened for small samples (see :func:`_item_bootstrap`), so that
the test rejects near the nominal 5% of null studies with 20 items (6% measured).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats as st

from analysis._frames import require_columns
from analysis.embeddings import Embedder, WordVectors
from analysis.metrics import DIVERSITY_METRICS, diversity_by_group
from analysis.notices import CopiedStimuliWarning, MissingReferenceWarning, SmallSampleWarning, collect_warnings

REFERENCE = "base"
_GROUP = ["model", "task", "deployment", "condition", "item"]


def distinct_texts(stimuli: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct generated text within each (deployment, condition, item) group.

    A text is identified by ``text_id`` when the column is present (it is shared by a
    base text copied into twin deployments), else by (model, condition, item, text).
    """
    key = ["text_id"] if "text_id" in stimuli.columns and stimuli["text_id"].notna().all() else ["text"]
    return stimuli.drop_duplicates([*_GROUP, *key])


def _with_defaults(stimuli: pd.DataFrame) -> pd.DataFrame:
    require_columns(stimuli, ["condition", "item", "text"], "stimuli")
    df = stimuli.copy()
    if "deployment" not in df.columns:
        if "model" not in df.columns:
            raise ValueError("stimuli needs a 'deployment' or a 'model' column to pair steered with base samples")
        df["deployment"] = df["model"].astype(str) + "/" + df.get("task", pd.Series("", index=df.index)).astype(str)
    for col, default in (("model", df["deployment"]), ("task", pd.Series("", index=df.index))):
        if col not in df.columns:
            df[col] = default
    if "text_id" not in df.columns:
        copies = df[df["condition"].astype(str) == REFERENCE].groupby(["model", "item", "text"])["deployment"].nunique()
        if (copies > 1).any():
            warnings.warn(
                CopiedStimuliWarning(
                    f"{int((copies > 1).sum())} base text(s) appear in several deployments of one model and the "
                    "export has no text_id: identified by (model, condition, item, text)"
                ),
                stacklevel=3,
            )
    for col in _GROUP:
        df[col] = df[col].astype(str)
    return df


def paired_differences(diversity: pd.DataFrame, *, metrics: Iterable[str] = DIVERSITY_METRICS) -> pd.DataFrame:
    """Steered minus base per (deployment, steered condition, item), long format.

    ``diversity`` has one row per (model, task, deployment, condition, item) group (the
    output of :func:`analysis.metrics.diversity_by_group` with those group columns).
    Returns ``model, task, deployment, condition, item, metric, base, steered,
    difference``; groups with no base in their deployment are left out (the caller warns).
    """
    keys = ["model", "task", "deployment", "item"]
    metrics = [m for m in metrics if m in diversity.columns]
    base = diversity.loc[diversity["condition"] == REFERENCE, [*keys, *metrics]]
    steered = diversity[diversity["condition"] != REFERENCE]
    joined = steered.merge(base, on=keys, suffixes=("", "__base"), how="inner")
    frames = []
    for metric in metrics:
        frame = joined[[*keys, "condition"]].assign(
            metric=metric, base=joined[f"{metric}__base"].to_numpy(float), steered=joined[metric].to_numpy(float)
        )
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*keys, "condition", "metric", "base", "steered", "difference"])
    long = pd.concat(frames, ignore_index=True)
    long["difference"] = long["steered"] - long["base"]
    return long.dropna(subset=["difference"])


def _item_bootstrap(values: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Bootstrap means of ``values`` (array of ``shape``), widened for small samples.

    With the dozen or two items of a study the plain percentile interval of a mean is too
    narrow: its bootstrap variance is (n - 1)/n times s²/n, and it uses normal rather than
    Student quantiles (with the first correction alone: 7-8.5% false positives at 20 items
    in tests/analysis/test_calibration.py; with both: 6%). The resampled means are spread around the estimate
    by sqrt(n / (n - 1)) x t(0.975, n - 1) / z(0.975), so that for a symmetric sample the
    95% interval equals Student's t interval while keeping the bootstrap's shape otherwise.
    """
    n = len(values)
    means = values[rng.integers(0, n, size=(*shape, n))].mean(axis=-1)
    if n < 2:
        return means
    centre = values.mean()
    return centre + (means - centre) * small_sample_factor(n)


def small_sample_factor(n: int) -> float:
    """How far to stretch bootstrap means of ``n`` values around their mean so the 95%
    percentile interval of a symmetric sample is Student's t interval (``n >= 2``)."""
    return float(np.sqrt(n / (n - 1)) * st.t.ppf(0.975, n - 1) / st.norm.ppf(0.975))


def _ci(boots: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return float(lo), float(hi)


def summarise_differences(
    long: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-model and pooled estimates with bootstrap CIs from :func:`paired_differences` rows.

    Items are the units: an item's difference is averaged over its deployments first (a
    model runs one steered condition on an item in one deployment, except in unusual specs).
    """
    rng = np.random.default_rng(seed)
    by_model: list[dict[str, Any]] = []
    pooled: list[dict[str, Any]] = []
    per_item = long.groupby(["condition", "metric", "model", "task", "item"], sort=True)[
        ["base", "steered", "difference"]
    ].mean()
    for (condition, metric), block in per_item.groupby(level=["condition", "metric"], sort=True):
        model_values: dict[str, np.ndarray] = {}
        for model, g in block.groupby(level="model", sort=True):
            diffs = g["difference"].to_numpy(float)
            n = len(diffs)
            lo = hi = float("nan")
            if n >= 2 and n_boot > 0:
                lo, hi = _ci(_item_bootstrap(diffs, rng, (n_boot,)), level)
            model_values[str(model)] = diffs
            by_model.append(
                {
                    "model": str(model),
                    "condition": str(condition),
                    "metric": str(metric),
                    "base": float(g["base"].mean()),
                    "steered": float(g["steered"].mean()),
                    "difference": float(diffs.mean()),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_items": n,
                }
            )
        models = list(model_values)
        estimate = float(np.mean([v.mean() for v in model_values.values()]))
        lo = hi = float("nan")
        if n_boot > 0 and (len(models) >= 2 or any(len(v) >= 2 for v in model_values.values())):
            m = len(models)
            # Two stages: draw m models with replacement, then resample the items of each drawn model.
            item_means = np.stack([_item_bootstrap(model_values[k], rng, (n_boot, m)) for k in models])
            drawn = rng.integers(0, m, size=(n_boot, m)) if m > 1 else np.zeros((n_boot, 1), dtype=int)
            boots = item_means[drawn, np.arange(n_boot)[:, None], np.arange(m)[None, :]].mean(axis=1)
            if m > 1:
                # The bias of the plain bootstrap variance only (no Student factor: with two
                # models it would make the interval useless, and models are few by design).
                boots = estimate + (boots - estimate) * np.sqrt(m / (m - 1))
            lo, hi = _ci(boots, level)
        pooled.append(
            {
                "condition": str(condition),
                "metric": str(metric),
                "difference": estimate,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return by_model, pooled


def diversity_differences(
    stimuli: pd.DataFrame,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    embedder: Embedder | WordVectors | None = None,
    word_list: str | os.PathLike[str] | Iterable[str] | None = None,
) -> dict[str, Any]:
    """Steered minus base for each diversity metric, per model and pooled, with bootstrap CIs.

    Long because its parameters and results are documented here; the body is under 45 lines.

    Parameters
    ----------
    stimuli : pandas.DataFrame
        The stimuli export: ``deployment, condition, model, task, item, text`` and, when
        present, ``text_id`` (identifies a base text copied into twin deployments).
    n_boot : int
        Bootstrap resamples (0: no CIs).
    seed : int
        Seed of the bootstrap.
    embedder, word_list
        Embedding (default: the embedded MiniLM) and DAT dictionary (default: wamerican).

    Returns
    -------
    dict
        ``{"by_model": [{"model", "condition", "metric", "base", "steered", "difference",
        "ci_low", "ci_high", "n_items"}], "pooled": [{"condition", "metric", "difference",
        "ci_low", "ci_high"}], "warnings": ["Name: message", ...]}``;
        ``difference`` is steered minus base, metric names as in
        :data:`analysis.metrics.DIVERSITY_METRICS`.
    """
    with collect_warnings() as found:
        df = distinct_texts(_with_defaults(stimuli))
        if df.empty:
            warnings.warn(SmallSampleWarning("no stimuli: nothing to compare"), stacklevel=2)
        diversity = diversity_by_group(df, group_cols=_GROUP, embedder=embedder, word_list=word_list)
        sizes = diversity.pivot_table(index=["deployment", "item"], columns="condition", values="n_samples")
        if REFERENCE in sizes.columns:
            unequal = sizes.drop(columns=REFERENCE).ne(sizes[REFERENCE], axis=0) & sizes.drop(columns=REFERENCE).notna()
            if unequal.to_numpy().any():
                warnings.warn(
                    SmallSampleWarning(
                        f"{int(unequal.to_numpy().sum())} steered group(s) have a different number of distinct "
                        "samples than their base group: distinct-n, Vendi and cluster counts depend on group size"
                    ),
                    stacklevel=2,
                )
        with_base = set(diversity.loc[diversity["condition"] == REFERENCE, "deployment"])
        no_base = sorted(set(diversity["deployment"]) - with_base)
        if no_base:
            warnings.warn(
                MissingReferenceWarning(
                    f"deployment(s) {no_base} have no {REFERENCE!r} samples: their steered samples are not compared"
                ),
                stacklevel=2,
            )
        long = paired_differences(diversity)
        small = long.groupby(["model", "condition"])["item"].nunique()
        if (small < 2).any():
            warnings.warn(
                SmallSampleWarning(f"no CI for model x condition {list(small[small < 2].index)}: fewer than 2 items"),
                stacklevel=2,
            )
        by_model, pooled = summarise_differences(long, n_boot=n_boot, seed=seed)
    return {"by_model": by_model, "pooled": pooled, "warnings": list(found)}
