"""Alternative Uses Test scoring: fluency, originality, elaboration.

- fluency: number of distinct uses after merging near-duplicates (cosine similarity of
  use embeddings >= 0.85, merged transitively);
- originality: mean semantic distance (1 - cosine similarity) between the object and
  each distinct use, as in SemDis (Beaty & Johnson 2021), here with the chosen embedder;
- elaboration: mean number of words per distinct use.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from analysis.embeddings import Embedder, cosine_similarity_matrix, zero_rows
from analysis.notices import ZeroVectorWarning
from analysis.parsers import parse_aut_uses

USE_DUPLICATE_THRESHOLD = 0.85
_WORD = re.compile(r"[A-Za-z0-9']+")


def _clusters(vectors: np.ndarray, threshold: float) -> np.ndarray:
    sim = cosine_similarity_matrix(vectors)
    _, labels = connected_components(sp.csr_matrix(sim >= threshold), directed=False)
    return labels


def score_aut(
    texts: Sequence[str],
    *,
    item_texts: Sequence[str] | None,
    embedder: Embedder,
    duplicate_threshold: float = USE_DUPLICATE_THRESHOLD,
) -> pd.DataFrame:
    """Score AUT answers.

    Long because its parameters and results are documented here; the body is under 45 lines.

    Parameters
    ----------
    texts : sequence of str
        One answer (a list of uses) per element.
    item_texts : sequence of str or None
        The object each answer is about, as the model saw it (the item's *text*, e.g.
        "a brick"; not its key, which may be "item03"). ``None``: originality is not
        computed (NaN); fluency and elaboration do not need it.
    embedder : Embedder
        Used for near-duplicate merging and semantic distance.

    Returns
    -------
    pandas.DataFrame
        ``aut_fluency, aut_originality, aut_elaboration, aut_n_uses`` (uses before
        merging), one row per answer; originality/elaboration are NaN for empty answers.
    """
    parsed = [parse_aut_uses(t if isinstance(t, str) else "") for t in texts]
    objects: Sequence[str | None] = [None] * len(parsed) if item_texts is None else list(item_texts)
    if len(objects) != len(parsed):
        raise ValueError(f"score_aut: {len(parsed)} texts but {len(objects)} item texts")
    all_uses = sorted({u for uses in parsed for u in uses})
    all_objects = sorted({str(o) for o in objects if o is not None})
    # One batched encode of everything, then lookups.
    vecs = embedder.encode(all_uses + all_objects) if all_uses or all_objects else np.zeros((0, 1))
    lookup = {s: vecs[i] for i, s in enumerate(all_uses + all_objects)}
    rows = []
    for uses, obj in zip(parsed, objects, strict=True):
        if not uses:
            rows.append({"aut_fluency": 0, "aut_originality": np.nan, "aut_elaboration": np.nan, "aut_n_uses": 0})
            continue
        u = np.stack([lookup[x] for x in uses]).astype(np.float64)
        zero = zero_rows(u)
        if zero.any():
            warnings.warn(
                ZeroVectorWarning(f"AUT: {int(zero.sum())} use(s) with an all-zero embedding left out of the scores"),
                stacklevel=2,
            )
            uses = [x for x, z in zip(uses, zero, strict=True) if not z]
            u = u[~zero]
        if not uses:
            rows.append({"aut_fluency": 0, "aut_originality": np.nan, "aut_elaboration": np.nan, "aut_n_uses": 0})
            continue
        labels = _clusters(u, duplicate_threshold)
        # The first use of each cluster stands for it.
        first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
        distinct = u[first]
        originality = np.nan
        if obj is not None:
            o = np.asarray(lookup[str(obj)], dtype=np.float64)
            sims = cosine_similarity_matrix(np.vstack([o, distinct]))[0, 1:]
            originality = float(np.mean(1.0 - sims))  # NaN when the object's vector is zero
        rows.append(
            {
                "aut_fluency": len(first),
                "aut_originality": originality,
                "aut_elaboration": float(np.mean([len(_WORD.findall(uses[i])) for i in first])),
                "aut_n_uses": len(uses),
            }
        )
    return pd.DataFrame(rows)
