"""Automatic metrics of stimuli: the entry points the platform calls.

``stimulus_metrics`` scores each stimulus (DAT, AUT, length); ``diversity_by_group``
measures mode collapse across the samples of one prompt item under one condition.
``embedder=None`` means the embedded MiniLM model, loaded lazily once per process.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from analysis._frames import require_columns
from analysis.aut import score_aut
from analysis.combinatorial import CC_METRIC_COLUMNS, score_cc_walk_texts
from analysis.dat import DatScorer
from analysis.diversity import bootstrap_by, diversity_metrics, tokens
from analysis.embeddings import Embedder, WordVectors, default_embedder, load_word_list
from analysis.notices import ItemTextWarning

METRIC_COLUMNS = [
    "n_words",
    "dat_score",
    "dat_n_valid",
    "dat_valid",
    "aut_fluency",
    "aut_originality",
    "aut_elaboration",
    *CC_METRIC_COLUMNS,
]
DIVERSITY_METRICS = [
    "mean_pairwise_similarity",
    "share_pairs_similar",
    "vendi_score",
    "distinct_1",
    "distinct_2",
    "n_clusters",
    "share_clusters",
    "dat_distinct_word_share",
]


@functools.cache
def _default_words() -> frozenset[str]:
    return frozenset(load_word_list())


def _words(word_list: str | os.PathLike[str] | Iterable[str] | None) -> set[str] | frozenset[str]:
    if word_list is None:
        return _default_words()
    if isinstance(word_list, str | os.PathLike):
        return load_word_list(word_list)
    return set(word_list)


def stimulus_metrics(
    stimuli: pd.DataFrame,
    *,
    text_col: str = "text",
    task_col: str = "task",
    item_text_col: str | None = "item_text",
    embedder: Embedder | WordVectors | None = None,
    word_list: str | os.PathLike[str] | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Per-stimulus automatic metrics.

    Long because its parameters and results are documented here; the body is under 35 lines.

    Parameters
    ----------
    stimuli : pandas.DataFrame
        One row per stimulus; ``task`` is ``"dat"``, ``"aut"``, ``"task_task"`` (others
        only get ``n_words``). ``cc_walk`` rows are scored on the subgraph and prompt in
        their item's text: ``cc_valid, cc_utility, cc_novelty, cc_creativity``.
    item_text_col : str or None
        Column with the item as the model saw it (for the AUT: the object, "a brick").
        AUT originality is the distance from this *text*; an item key ("item03") would
        give a meaningless number, so there is no fallback to the key column. ``None``
        or an absent column: ``aut_originality`` is NaN with an :class:`ItemTextWarning`.
    embedder : Embedder, WordVectors or None
        Embedding for DAT distances and AUT similarity; None = embedded MiniLM.
    word_list : path, iterable or None
        DAT dictionary; None = ``/usr/share/dict/words``.

    Returns
    -------
    pandas.DataFrame
        Same index as ``stimuli``; columns ``n_words, dat_score, dat_n_valid, dat_valid,
        aut_fluency, aut_originality, aut_elaboration``. Metrics that do not apply to a
        row's task are NaN (``dat_valid`` is a nullable boolean, NA off the DAT).
        Invalid DAT answers (fewer than 7 valid words) have ``dat_valid`` False and a
        NaN score. ``attrs["embedding"]`` names the embedding used.
    """
    require_columns(stimuli, [text_col, task_col], "stimuli")
    texts = stimuli[text_col].fillna("").astype(str)
    tasks = stimuli[task_col].astype(str).str.lower()
    out = pd.DataFrame(index=stimuli.index)
    # List numbering ("1.", "2)") is not a word: count tokens that contain a letter.
    out["n_words"] = texts.map(lambda t: sum(any(c.isalpha() for c in tok) for tok in tokens(t))).astype(float)
    for col in METRIC_COLUMNS[1:]:
        out[col] = np.nan
    out["dat_valid"] = pd.array([pd.NA] * len(out), dtype="boolean")
    is_dat, is_aut = (tasks == "dat").to_numpy(), (tasks == "aut").to_numpy()
    emb = embedder if embedder is not None else (default_embedder() if (is_dat.any() or is_aut.any()) else None)
    if is_dat.any():
        scorer = DatScorer(emb, _words(word_list))
        dat = scorer.score_texts(texts[is_dat].tolist())
        out.loc[is_dat, "dat_score"] = dat["dat_score"].to_numpy()
        out.loc[is_dat, "dat_n_valid"] = dat["dat_n_valid"].to_numpy(float)
        out.loc[is_dat, "dat_valid"] = dat["dat_valid"].to_numpy()
    if is_aut.any() and emb is not None:
        aut = score_aut(
            texts[is_aut].tolist(), item_texts=_aut_item_texts(stimuli, is_aut, item_text_col), embedder=emb
        )
        for col in ("aut_fluency", "aut_originality", "aut_elaboration"):
            out.loc[is_aut, col] = aut[col].to_numpy(float)
    is_cc = (tasks == "cc_walk").to_numpy()
    if is_cc.any():
        # The walk is scored on the subgraph and prompt written in the item's text.
        if item_text_col is None:
            raise ValueError("stimuli with cc_walk rows need item_text_col (the item's text holds the subgraph)")
        require_columns(stimuli, [item_text_col], "stimuli with cc_walk rows")
        cc = score_cc_walk_texts(texts[is_cc].tolist(), stimuli.loc[is_cc, item_text_col].astype(str).tolist())
        for col in CC_METRIC_COLUMNS:
            out.loc[is_cc, col] = cc[col].to_numpy(float)
    out.attrs["embedding"] = emb.name if emb is not None else None
    return out


def _aut_item_texts(stimuli: pd.DataFrame, is_aut: np.ndarray, item_text_col: str | None) -> list[str] | None:
    """The AUT rows' objects as the model saw them; None (originality NaN) with a warning when absent."""
    if item_text_col is not None and item_text_col in stimuli.columns:
        return stimuli.loc[is_aut, item_text_col].astype(str).tolist()
    warnings.warn(
        ItemTextWarning(
            f"AUT originality not computed: no item text column ({item_text_col!r}); "
            "it needs the object as the model saw it, not the item key"
        ),
        stacklevel=3,
    )
    return None


def diversity_by_group(
    stimuli: pd.DataFrame,
    *,
    group_cols: Sequence[str] = ("condition", "item"),
    text_col: str = "text",
    task_col: str = "task",
    embedder: Embedder | WordVectors | None = None,
    word_list: str | os.PathLike[str] | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Mode-collapse metrics for each group of samples (by default: condition x item).

    Returns one row per group with the group columns, ``n_samples``,
    ``mean_pairwise_similarity``, ``share_pairs_similar`` (>= 0.8),
    ``vendi_score``, ``distinct_1``, ``distinct_2``, ``n_clusters`` (near-duplicate
    clusters at similarity >= 0.9), ``share_clusters`` and, for groups of DAT answers,
    ``dat_distinct_word_share`` (distinct valid words / all valid words; NaN elsewhere).
    Use :func:`diversity_summary` for bootstrap CIs by item.
    """
    group_cols = list(group_cols)
    require_columns(stimuli, [*group_cols, text_col], "stimuli")
    emb = embedder if embedder is not None else default_embedder()
    texts = stimuli[text_col].fillna("").astype(str)
    vectors = np.asarray(emb.encode(texts.tolist()), dtype=np.float64) if len(texts) else np.zeros((0, 1))
    is_dat = (
        (stimuli[task_col].astype(str).str.lower() == "dat").to_numpy()
        if task_col in stimuli.columns
        else np.zeros(len(stimuli), dtype=bool)
    )
    text_list = texts.tolist()
    scorer = None
    rows = []
    # Positional indices per group: one pass, no per-group DataFrame.
    for key, idx in stimuli.groupby(group_cols, sort=True, dropna=False).indices.items():
        key = key if isinstance(key, tuple) else (key,)
        group_texts = [text_list[i] for i in idx]
        dat_words = None
        if is_dat[idx].all():
            if scorer is None:
                scorer = DatScorer(emb, _words(word_list))
            dat_words = scorer.score_texts(group_texts)["dat_words"].tolist()
        metrics = diversity_metrics(group_texts, vectors[idx], dat_words=dat_words)
        metrics.setdefault("dat_distinct_word_share", np.nan)
        rows.append({**dict(zip(group_cols, key, strict=True)), **metrics})
    out = pd.DataFrame(rows, columns=[*group_cols, "n_samples", *DIVERSITY_METRICS])
    out = out.sort_values(group_cols, kind="stable").reset_index(drop=True)
    out.attrs["embedding"] = emb.name
    return out


def diversity_summary(
    diversity: pd.DataFrame,
    *,
    by: str | Sequence[str] = "condition",
    unit: str = "item",
    n_boot: int = 2000,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Mean of each diversity metric per ``by`` with a bootstrap 95% CI resampling items.

    ``diversity`` is the output of :func:`diversity_by_group`; returns one row per
    group and metric (``estimate, ci_low, ci_high, n_units``).
    """
    metrics = [m for m in DIVERSITY_METRICS if m in diversity.columns and diversity[m].notna().any()]
    return bootstrap_by(diversity, metrics=metrics, by=by, unit=unit, n_boot=n_boot, seed=seed)
