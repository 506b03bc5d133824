"""Alternative Uses Test scoring: fluency, originality, elaboration.

- fluency: number of distinct uses after merging near-duplicates (cosine similarity of
  use embeddings >= 0.85, merged transitively);
- originality: mean semantic distance (1 - cosine similarity) between the object and
  each distinct use, as in SemDis (Beaty & Johnson 2021), here with the chosen embedder;
- elaboration: mean number of words per distinct use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from analysis.embeddings import Embedder, cosine_similarity_matrix

USE_DUPLICATE_THRESHOLD = 0.85
_MARKER = re.compile(r"^\s*(?:[-*•]|\(?\d+[.):]|[a-zA-Z][.)])\s+")
_WORD = re.compile(r"[A-Za-z0-9']+")


def parse_uses(text: str) -> list[str]:
    """Split an AUT answer into uses: one per line or list item; a paragraph splits on sentences/semicolons."""
    text = text.strip()
    if not text:
        return []
    lines = [_MARKER.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) == 1:
        lines = [p.strip() for p in re.split(r"(?<=[.!?;])\s+", lines[0]) if p.strip()]
    return [ln.rstrip(".;") for ln in lines if _WORD.search(ln)]


def _clusters(vectors: np.ndarray, threshold: float) -> np.ndarray:
    sim = cosine_similarity_matrix(vectors)
    _, labels = connected_components(sp.csr_matrix(sim >= threshold), directed=False)
    return labels


def score_aut(
    texts: Sequence[str],
    objects: Sequence[str],
    embedder: Embedder,
    *,
    duplicate_threshold: float = USE_DUPLICATE_THRESHOLD,
) -> pd.DataFrame:
    """Score AUT answers.

    Parameters
    ----------
    texts : sequence of str
        One answer (a list of uses) per element.
    objects : sequence of str
        The object each answer is about (the item, e.g. "brick").
    embedder : Embedder
        Used for near-duplicate merging and semantic distance.

    Returns
    -------
    pandas.DataFrame
        ``aut_fluency, aut_originality, aut_elaboration, aut_n_uses`` (uses before
        merging), one row per answer; originality/elaboration are NaN for empty answers.
    """
    parsed = [parse_uses(t if isinstance(t, str) else "") for t in texts]
    all_uses = sorted({u for uses in parsed for u in uses})
    all_objects = sorted({str(o) for o in objects})
    # One batched encode of everything, then lookups.
    vecs = embedder.encode(all_uses + all_objects) if all_uses or all_objects else np.zeros((0, 1))
    lookup = {s: vecs[i] for i, s in enumerate(all_uses + all_objects)}
    rows = []
    for uses, obj in zip(parsed, objects, strict=True):
        if not uses:
            rows.append({"aut_fluency": 0, "aut_originality": np.nan, "aut_elaboration": np.nan, "aut_n_uses": 0})
            continue
        u = np.stack([lookup[x] for x in uses]).astype(np.float64)
        labels = _clusters(u, duplicate_threshold)
        # The first use of each cluster stands for it.
        first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
        distinct = u[first]
        o = np.asarray(lookup[str(obj)], dtype=np.float64)
        sims = cosine_similarity_matrix(np.vstack([o, distinct]))[0, 1:]
        rows.append(
            {
                "aut_fluency": len(first),
                "aut_originality": float(np.mean(1.0 - sims)),
                "aut_elaboration": float(np.mean([len(_WORD.findall(uses[i])) for i in first])),
                "aut_n_uses": len(uses),
            }
        )
    return pd.DataFrame(rows)
