"""Mode-collapse and diversity measures over samples of one prompt under one condition.

- mean pairwise cosine similarity of response embeddings and the share of pairs with
  similarity >= 0.8 (Artificial Hivemind, Jiang et al. 2025);
- Vendi score: exp of the Shannon entropy of the eigenvalues of K/n, K the cosine
  similarity matrix (Friedman & Dieng 2023): the effective number of distinct samples;
- distinct-n: unique n-grams over all n-grams (Li et al. 2016);
- near-duplicate clusters: connected components of the graph joining samples with
  similarity >= a threshold (in the spirit of NoveltyBench's equivalence classes);
- for the DAT: share of distinct valid words across samples.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from analysis.embeddings import cosine_similarity_matrix, zero_rows
from analysis.notices import ZeroVectorWarning

HIVEMIND_THRESHOLD = 0.8
NEAR_DUPLICATE_THRESHOLD = 0.9
_WORD = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Unique n-grams over all n-grams, pooled across ``texts`` (NaN when there are none)."""
    grams = [tuple(t[i : i + n]) for t in map(tokens, texts) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def pairwise_similarity_stats(similarity: np.ndarray, threshold: float = HIVEMIND_THRESHOLD) -> tuple[float, float]:
    """Mean off-diagonal similarity and share of pairs >= ``threshold`` (NaN for < 2 samples)."""
    n = len(similarity)
    if n < 2:
        return float("nan"), float("nan")
    iu = np.triu_indices(n, k=1)
    pairs = similarity[iu]
    return float(pairs.mean()), float((pairs >= threshold).mean())


def vendi_score(similarity: np.ndarray) -> float:
    """Vendi score of a similarity matrix with unit diagonal (1 = all identical, n = all orthogonal)."""
    n = len(similarity)
    if n == 0:
        return float("nan")
    eig = np.linalg.eigvalsh(similarity / n)
    eig = eig[eig > 1e-12]  # K is PSD; tiny negative eigenvalues are rounding
    return float(np.exp(-(eig * np.log(eig)).sum()))


def near_duplicate_clusters(similarity: np.ndarray, threshold: float = NEAR_DUPLICATE_THRESHOLD) -> int:
    """Number of clusters when samples with similarity >= ``threshold`` are merged (transitively)."""
    if len(similarity) == 0:
        return 0
    n_clusters, _ = connected_components(sp.csr_matrix(similarity >= threshold), directed=False)
    return int(n_clusters)


def diversity_metrics(
    texts: Sequence[str],
    embeddings: np.ndarray,
    *,
    dat_words: Sequence[Sequence[str]] | None = None,
    hivemind_threshold: float = HIVEMIND_THRESHOLD,
    duplicate_threshold: float = NEAR_DUPLICATE_THRESHOLD,
) -> dict[str, float]:
    """All mode-collapse metrics for one group of samples.

    Samples whose embedding is all zeros have no direction: they are left out of the
    embedding-based metrics (with a :class:`ZeroVectorWarning`), not counted as orthogonal.
    """
    zero = zero_rows(embeddings)
    if zero.any():
        warnings.warn(
            ZeroVectorWarning(
                f"{int(zero.sum())} of {len(texts)} sample(s) have an all-zero embedding (no known word?): "
                "left out of the similarity, Vendi and cluster metrics"
            ),
            stacklevel=2,
        )
        embeddings = np.asarray(embeddings)[~zero]
    sim = cosine_similarity_matrix(embeddings)
    np.fill_diagonal(sim, 1.0)
    mean_sim, share_high = pairwise_similarity_stats(sim, hivemind_threshold)
    out = {
        "n_samples": len(texts),
        "mean_pairwise_similarity": mean_sim,
        "share_pairs_similar": share_high,
        "vendi_score": vendi_score(sim),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "n_clusters": near_duplicate_clusters(sim, duplicate_threshold),
    }
    out["share_clusters"] = out["n_clusters"] / len(sim) if len(sim) else float("nan")
    if dat_words is not None:
        words = [w for ws in dat_words for w in ws]
        out["dat_distinct_word_share"] = len(set(words)) / len(words) if words else float("nan")
    return out


def bootstrap_by(
    table: pd.DataFrame,
    *,
    metrics: Sequence[str],
    by: str | Sequence[str] = "condition",
    unit: str = "item",
    n_boot: int = 2000,
    level: float = 0.95,
    statistic: Callable[[np.ndarray], float] = np.nanmean,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Mean of each metric per group with a percentile bootstrap CI that resamples ``unit``.

    ``table`` has one row per (group, unit), e.g. the output of
    :func:`analysis.metrics.diversity_by_group` with one row per (condition, item):
    items are the independent units, so they are what is resampled.

    Returns
    -------
    pandas.DataFrame
        One row per group and metric: ``estimate, ci_low, ci_high, n_units``.
    """
    by = [by] if isinstance(by, str) else list(by)
    rng = np.random.default_rng(seed)
    rows = []
    alpha = (1 - level) / 2
    for key, g in table.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        g = g.groupby(unit)[list(metrics)].mean()  # one value per unit
        for metric in metrics:
            # Units where the metric does not apply (a DAT metric on AUT items) are not units of it.
            values = g[metric].dropna().to_numpy(float)
            n = len(values)
            estimate = float(statistic(values)) if n else float("nan")
            if n > 1:
                boots = np.apply_along_axis(statistic, 1, values[rng.integers(0, n, size=(n_boot, n))])
                lo, hi = np.quantile(boots, [alpha, 1 - alpha])
            else:
                lo = hi = float("nan")
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "metric": metric,
                    "estimate": estimate,
                    "ci_low": float(lo),
                    "ci_high": float(hi),
                    "n_units": n,
                }
            )
    return pd.DataFrame(rows)
