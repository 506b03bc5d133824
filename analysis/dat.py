"""Divergent Association Task scoring, as published (Olson et al. 2021, PNAS).

The algorithm follows the authors' reference implementation (github.com/jayolson/
divergent-association-task, ``dat.py``): clean each word (letters, hyphens and spaces
only; lower case; drop if length <= 1); look it up, trying the hyphenated then the
joined form of compounds; keep unique valid words in their order; with fewer than 7
valid words there is no score; else the score is 100 x the mean cosine distance over
the 21 pairs of the first 7.

A word is valid when it is in the dictionary *and* the embedding has a vector for it.
With a word-vector file the vectors are loaded only for dictionary words, so both
conditions reduce to "has a vector". With a sentence embedder (MiniLM) every string
has a vector, so validity is dictionary membership. Scores on any embedding but the
reference (GloVe 840B 300d) are on a different scale: percentiles against the human
sample are reported only for the reference embedding.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist

from analysis.embeddings import Embedder, WordVectors, default_embedder, load_word_list, zero_rows
from analysis.notices import ZeroVectorWarning
from analysis.parsers import parse_dat_words

MINIMUM_WORDS = 7
_CLEAN = re.compile(r"[^a-zA-Z- ]+")


def clean_word(word: str) -> str | None:
    """Olson et al.'s normalisation: letters, hyphens, spaces; lower case; None if length <= 1."""
    clean = _CLEAN.sub("", word).strip().lower()
    return clean if len(clean) > 1 else None


def candidates(clean: str) -> list[str]:
    """Spellings tried for a cleaned word, in order ("cul de sac" -> cul-de-sac, culdesac)."""
    if " " in clean:
        return [re.sub(r" +", "-", clean), re.sub(r" +", "", clean)]
    out = [clean]
    if "-" in clean:
        out.append(re.sub(r"-+", "", clean))
    return out


@dataclass
class DatResult:
    """One scored answer. ``score`` is None when fewer than 7 words were valid."""

    score: float | None
    valid_words: list[str]
    n_valid: int
    embedding: str
    percentile: float | None = None
    invalid_words: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "score": self.score,
            "valid_words": self.valid_words,
            "n_valid": self.n_valid,
            "embedding": self.embedding,
        }


class DatScorer:
    """Score DAT answers with a pluggable embedding.

    Parameters
    ----------
    embedding : WordVectors, Embedder, path or None
        A :class:`~analysis.embeddings.WordVectors`, a path to a word-vector text file
        (loaded filtered to the word list), any embedder with ``encode`` (words are
        embedded one by one), or None for the embedded MiniLM model.
    word_list : path, iterable of str or None
        Dictionary; defaults to ``/usr/share/dict/words`` filtered as in the published code.
    minimum : int
        Number of valid words scored (7 in the published task).
    norms : pandas.DataFrame or None
        Human norms (``percentile, score``) used only with the reference embedding;
        defaults to the shipped approximation (:func:`load_dat_norms`).
    """

    def __init__(
        self,
        embedding: WordVectors | Embedder | str | os.PathLike[str] | None = None,
        word_list: str | os.PathLike[str] | Iterable[str] | None = None,
        *,
        minimum: int = MINIMUM_WORDS,
        norms: pd.DataFrame | None = None,
    ):
        if word_list is None or isinstance(word_list, str | os.PathLike):
            self.words = load_word_list(word_list)
        else:
            self.words = set(word_list)
        if isinstance(embedding, str | os.PathLike):
            embedding = WordVectors(embedding, keep=self.words)
        self.embedding = embedding if embedding is not None else default_embedder()
        self.minimum = minimum
        self.is_reference = bool(getattr(self.embedding, "is_reference", False))
        self.norms = norms

    @property
    def embedding_name(self) -> str:
        return str(self.embedding.name)

    def _has_vector(self, word: str) -> bool:
        if isinstance(self.embedding, WordVectors):
            return word in self.embedding
        return True

    def validate(self, word: str) -> str | None:
        """The dictionary form of ``word`` if valid, else None."""
        clean = clean_word(word)
        if clean is None:
            return None
        for cand in candidates(clean):
            if cand in self.words and self._has_vector(cand):
                return cand
        return None

    def _vectors(self, words: Sequence[str]) -> np.ndarray:
        if isinstance(self.embedding, WordVectors):
            return np.stack([self.embedding.vectors[w] for w in words]).astype(np.float64)
        return np.asarray(self.embedding.encode(list(words)), dtype=np.float64)

    def score(self, words: Sequence[str]) -> DatResult:
        """Score one answer given as a list of words (see :func:`analysis.parsers.parse_dat_words` for text)."""
        uniques: list[str] = []
        invalid: list[str] = []
        for word in words:
            valid = self.validate(word)
            if valid is None:
                invalid.append(word)
            elif valid not in uniques:
                uniques.append(valid)
        if len(uniques) < self.minimum:
            return DatResult(None, uniques, len(uniques), self.embedding_name, None, invalid)
        subset = uniques[: self.minimum]
        vectors = self._vectors(subset)
        zero = zero_rows(vectors)
        if zero.any():
            # A zero vector has no direction: its cosine distance is undefined, not 1.
            warnings.warn(
                ZeroVectorWarning(f"DAT: all-zero vector for {[w for w, z in zip(subset, zero, strict=True) if z]}"),
                stacklevel=2,
            )
            return DatResult(None, uniques, len(uniques), self.embedding_name, None, invalid)
        value = float(pdist(vectors, metric="cosine").mean() * 100)
        pct = dat_percentile(value, self.norms) if self.is_reference else None
        return DatResult(value, uniques, len(uniques), self.embedding_name, pct, invalid)

    def score_texts(self, texts: Sequence[str]) -> pd.DataFrame:
        """Score free-text answers; one row per text, invalid answers kept with NaN score.

        Returns columns ``dat_score, dat_n_valid, dat_valid, dat_words`` (and
        ``dat_percentile`` with the reference embedding).
        """
        parsed = [parse_dat_words(t if isinstance(t, str) else "") for t in texts]
        if not isinstance(self.embedding, WordVectors):
            # One batched encode of every valid word beats thousands of one-word calls.
            valid = {v for words in parsed for w in words if (v := self.validate(w))}
            if valid:
                self.embedding.encode(sorted(valid))
        results = [self.score(words) for words in parsed]
        out = pd.DataFrame(
            {
                "dat_score": [np.nan if r.score is None else r.score for r in results],
                "dat_n_valid": [r.n_valid for r in results],
                "dat_valid": [r.score is not None for r in results],
                "dat_words": [r.valid_words for r in results],
            }
        )
        if self.is_reference:
            out["dat_percentile"] = [np.nan if r.percentile is None else r.percentile for r in results]
        out.attrs["embedding"] = self.embedding_name
        return out


def dat_summary(scores: pd.DataFrame, *, by: str | Sequence[str] = "condition") -> pd.DataFrame:
    """Per group: answers, valid answers, share valid, mean and SD of the score among valid.

    Invalid answers are counted in ``n_answers`` and ``n_invalid``; they are never dropped silently.
    """
    g = scores.groupby([by] if isinstance(by, str) else list(by), sort=True)
    out = g.agg(
        n_answers=("dat_valid", "size"),
        n_valid=("dat_valid", "sum"),
        mean_score=("dat_score", "mean"),
        sd_score=("dat_score", "std"),
    )
    out["n_invalid"] = out["n_answers"] - out["n_valid"]
    out["share_valid"] = out["n_valid"] / out["n_answers"]
    return out.reset_index()


# ----------------------------------------------------------------------------- norms

NORMS_SOURCE = (
    "approximation: Normal(mean 78, SD 6) quantiles, from the published summary of the human sample of "
    "Olson et al. 2021 (PNAS 118(25) e2022340118; N = 8,914; scores typically 65–90, mean near 78); "
    "build exact norms from the public human data with analysis.dat.build_dat_norms"
)


def load_dat_norms(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Human DAT norms: columns ``percentile`` (0–100) and ``score`` on the reference embedding.

    ``None`` loads the shipped approximation (see ``NORMS_SOURCE``); ``attrs["source"]``
    says where the table came from.
    """
    if path is None:
        with resources.files("analysis.data").joinpath("dat_norms_approx.csv").open() as f:
            table = pd.read_csv(f, comment="#")
        table.attrs["source"] = NORMS_SOURCE
    else:
        table = pd.read_csv(path, comment="#")
        table.attrs["source"] = str(path)
    return table


def build_dat_norms(human_scores: Iterable[float], *, out: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Exact norms from human DAT scores (e.g. the public data of Olson et al. 2021).

    Parameters
    ----------
    human_scores : iterable of float
        One score per participant, computed with the reference embedding; NaN ignored.
    out : path or None
        Where to write the table as CSV (usable as ``load_dat_norms(out)``).

    Returns
    -------
    pandas.DataFrame
        ``percentile`` 0.5, 1, …, 99.5 and the empirical ``score`` quantile.
    """
    scores = np.asarray([s for s in human_scores if s is not None and np.isfinite(s)], dtype=float)
    if len(scores) < 20:
        raise ValueError(f"need at least 20 human scores to build norms, got {len(scores)}")
    pct = np.concatenate([[0.5], np.arange(1, 100), [99.5]])
    table = pd.DataFrame({"percentile": pct, "score": np.percentile(scores, pct)})
    if out is not None:
        Path(out).write_text(f"# DAT norms from {len(scores)} human scores\n" + table.to_csv(index=False))
    return table


def dat_percentile(score: float, norms: pd.DataFrame | None = None) -> float:
    """Percentile of ``score`` among humans, by linear interpolation in the norms table."""
    norms = norms if norms is not None else load_dat_norms()
    return float(np.interp(score, norms["score"].to_numpy(), norms["percentile"].to_numpy(), left=0.0, right=100.0))
