"""The DAT table: per model and condition, valid share, mean score, human percentile, gain.

The paper's "+14 human percentile points" is this table's last column: steered minus
base, in percentile points, for one model. Percentiles need the reference embedding
(GloVe 840B 300d, recognised by content: see :func:`analysis.embeddings.reference_embedding_check`)
and human norms; with any other embedding the scores are on another scale and the
percentile fields are null, with a warning that says why.

Units and intervals. An answer is one generated text. Copies of a base answer in twin
deployments count once (``text_id``, else (item, sample_index, text)). ``valid_share`` is
the share of answers with at least 7 valid words; ``score`` the mean over valid answers;
``percentile`` the mean over valid answers of each answer's human percentile (the rank of
that answer among the human sample). 95% CIs: percentile bootstrap resampling answers
within each item (the items are the prompts the study fixed). ``percentile_gain`` is
steered minus base of the same model; its CI bootstraps both arms independently (their
answers are independent samples).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from analysis._frames import require_columns
from analysis.dat import DatScorer, dat_percentile, load_dat_norms
from analysis.embeddings import Embedder, WordVectors
from analysis.notices import (
    ApproximateNormsWarning,
    NoPercentileWarning,
    SmallSampleWarning,
    collect_warnings,
    warning_text,
)

REFERENCE = "base"


def dat_answers(stimuli: pd.DataFrame) -> pd.DataFrame:
    """The DAT rows of a stimuli export, each generated answer once.

    A base answer copied into twin deployments appears once: identified by ``text_id``
    when present, else by (model, condition, item, sample_index, text). Genuinely
    repeated answers (different samples, same text: mode collapse) are kept.
    """
    require_columns(stimuli, ["condition", "text"], "stimuli")
    df = stimuli
    if "task" in df.columns:
        df = df[df["task"].astype(str).str.lower() == "dat"]
    df = df.copy()
    if "model" not in df.columns:
        df["model"] = df["deployment"] if "deployment" in df.columns else ""
    if "item" not in df.columns:
        df["item"] = ""
    for col in ("model", "condition", "item"):
        df[col] = df[col].astype(str)
    if "text_id" in df.columns and df["text_id"].notna().all():
        key = ["text_id"]
    elif "sample_index" in df.columns and "deployment" in df.columns:
        key = ["sample_index", "text"]
    else:
        key = None  # nothing tells copies from repeats: keep every row
    if key is not None:
        df = df.drop_duplicates(["model", "condition", "item", *key])
    return df


def _stratified_means(values: np.ndarray, strata: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Bootstrap means of ``values`` (NaN ignored) resampling within each stratum."""
    idx_parts = []
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        idx_parts.append(members[rng.integers(0, len(members), size=(n_boot, len(members)))])
    idx = np.concatenate(idx_parts, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no valid answer: NaN
        return np.nanmean(values[idx], axis=1)


def _ci(boots: np.ndarray) -> list[float | None]:
    # A resample without a valid answer has no mean score: the CI is conditional on at least
    # one valid answer, and is not given when that condition fails in half the resamples.
    finite = boots[np.isfinite(boots)]
    if len(finite) < 0.5 * len(boots) or len(finite) == 0:
        return [None, None]
    lo, hi = np.quantile(finite, [0.025, 0.975])
    return [float(lo), float(hi)]


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def dat_table(
    stimuli: pd.DataFrame,
    *,
    vectors: str | os.PathLike[str] | WordVectors | Embedder | None = None,
    words: str | os.PathLike[str] | Iterable[str] | None = None,
    norms: str | os.PathLike[str] | pd.DataFrame | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The paper's DAT table from a stimuli export.

    Parameters
    ----------
    stimuli : pandas.DataFrame
        Stimuli export; rows with ``task == "dat"`` are used (all rows when there is no
        ``task`` column). Needs ``condition, text``; uses ``model, item, text_id,
        sample_index, deployment`` when present.
    vectors : path, WordVectors, embedder or None
        Word vectors (GloVe 840B 300d for percentiles); None: the embedded MiniLM.
    words : path, iterable or None
        DAT dictionary; None: ``/usr/share/dict/words``.
    norms : path, DataFrame or None
        Human norms (``percentile, score``); None: the shipped approximation, labelled so.
    n_boot, seed : int
        Bootstrap resamples and seed.

    Returns
    -------
    dict
        ``{"rows": [{"model", "condition", "n", "valid_share", "valid_share_ci", "score",
        "score_ci", "percentile", "percentile_ci", "percentile_gain", "percentile_gain_ci"}],
        "norms": "<which norms, or why none>", "warnings": [...]}``.
        ``*_ci`` are ``[low, high]``; percentile fields are null when no percentile can
        honestly be given; ``percentile_gain`` is null on base rows.
    """
    answers = dat_answers(stimuli)
    if answers.empty:
        empty = SmallSampleWarning("no DAT answers in the stimuli (task == 'dat'): no DAT table")
        return {"rows": [], "norms": "none: no DAT answers", "warnings": [warning_text(empty)]}
    with collect_warnings() as found:
        scorer = DatScorer(vectors, words)
        norms_table, norms_label = _percentile_norms(scorer, norms)
        scored = scorer.score_texts(answers["text"].tolist())
        answers = answers.assign(
            _valid=scored["dat_valid"].to_numpy(float),
            _score=scored["dat_score"].to_numpy(float),
        )
        if norms_table is not None:
            answers["_pct"] = [dat_percentile(s, norms_table) if np.isfinite(s) else np.nan for s in answers["_score"]]
        else:
            answers["_pct"] = np.nan
        rows, boot_pct = _rows_per_model_and_condition(answers, np.random.default_rng(seed), n_boot)
        _add_percentile_gains(rows, boot_pct)
    return {"rows": rows, "norms": norms_label, "warnings": list(found)}


def _percentile_norms(
    scorer: DatScorer, norms: str | os.PathLike[str] | pd.DataFrame | None
) -> tuple[pd.DataFrame | None, str]:
    """The human norms that turn scores into percentiles, and their label.

    ``None`` (and why, as the label) when the embedding is not the reference one.
    """
    if isinstance(norms, pd.DataFrame):
        table, label = norms, str(norms.attrs.get("source", "norms given as a table"))
    elif norms is not None:
        table, label = load_dat_norms(norms), f"human norms from {norms}"
    else:
        table = load_dat_norms()
        label = "APPROXIMATE human norms (shipped): " + str(table.attrs["source"])
    if not scorer.is_reference:
        why_not = getattr(scorer.embedding, "reference_check", f"{scorer.embedding_name} is not a word-vector file")
        warnings.warn(
            NoPercentileWarning(
                f"no human percentiles: embedding {scorer.embedding_name} is not the reference GloVe 840B 300d "
                f"({why_not}); its scores are on another scale"
            ),
            stacklevel=3,
        )
        return None, f"none: percentiles need the reference embedding GloVe 840B 300d ({why_not})"
    if norms is None:
        warnings.warn(
            ApproximateNormsWarning(
                "percentiles use the shipped APPROXIMATE norms (a Normal(78, 6) fit to the published "
                "summary), not the human distribution: pass --norms for exact percentiles"
            ),
            stacklevel=3,
        )
    return table, label


def _rows_per_model_and_condition(
    answers: pd.DataFrame, rng: np.random.Generator, n_boot: int
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], np.ndarray]]:
    """Valid share, score and percentile with item-stratified bootstrap CIs; also the percentile resamples."""
    rows: list[dict[str, Any]] = []
    boot_pct: dict[tuple[str, str], np.ndarray] = {}
    for (model_key, condition_key), g in answers.groupby(["model", "condition"], sort=True):
        model, condition = str(model_key), str(condition_key)
        strata = g["item"].to_numpy()
        row: dict[str, Any] = {"model": model, "condition": condition, "n": len(g)}
        for name, col in (("valid_share", "_valid"), ("score", "_score"), ("percentile", "_pct")):
            values = g[col].to_numpy(float)
            row[name] = _num(np.nanmean(values)) if np.isfinite(values).any() else None
            if n_boot > 0 and len(g) >= 2 and row[name] is not None:
                boots = _stratified_means(values, strata, rng, n_boot)
                row[f"{name}_ci"] = _ci(boots)
                if name == "percentile":
                    boot_pct[(model, condition)] = boots
            else:
                row[f"{name}_ci"] = [None, None]
        row["percentile_gain"], row["percentile_gain_ci"] = None, [None, None]
        rows.append(row)
    return rows, boot_pct


def _add_percentile_gains(rows: list[dict[str, Any]], boot_pct: dict[tuple[str, str], np.ndarray]) -> None:
    """Each steered row's percentile minus its model's base row's, with the paired bootstrap CI."""
    by_key = {(r["model"], r["condition"]): r for r in rows}
    for row in rows:
        if row["condition"] == REFERENCE:
            continue
        base = by_key.get((row["model"], REFERENCE))
        if base is None:
            continue
        if row["percentile"] is not None and base["percentile"] is not None:
            row["percentile_gain"] = row["percentile"] - base["percentile"]
            a, b = boot_pct.get((row["model"], row["condition"])), boot_pct.get((row["model"], REFERENCE))
            if a is not None and b is not None:
                row["percentile_gain_ci"] = _ci(a - b)
    no_base = sorted({r["model"] for r in rows} - {r["model"] for r in rows if r["condition"] == REFERENCE})
    if no_base:
        message = f"model(s) {no_base} have no {REFERENCE!r} DAT answers: no percentile gain"
        warnings.warn(SmallSampleWarning(message), stacklevel=3)
