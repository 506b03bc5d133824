"""Validity, utility, novelty and creativity of labelled walks (Schapiro et al., arXiv 2509.21043).

Definitions (what is checked against the paper's text, and the choices it leaves open, are
in ``docs/combinatorial.md``):

- conceptual space: a simple undirected labelled graph G = (V, E, Sigma);
- artifact: a walk P = (v0, l1, v1, ..., lh, vh); *valid* when every v(t) is in
  N(v(t-1), l(t)), i.e. (v(t-1), l(t), v(t)) is an edge of G carrying that label;
- prompt: x = (u, v, I, X), I and X disjoint;
- utility U(P; x) = (1 + a_I |I|) (1 + a_X |X|) when P is valid, v0 = u, vh = v, every
  label of I occurs in P and none of X does; 0 otherwise;
- novelty N(P) = a_h h + a_r S(P), with h the number of steps and S(P) the mean label
  surprise -log w(l) over the steps, w the frequency of a label in what the model was
  trained on; N = 0 for an invalid walk (it is not an artifact of the space);
- creativity C = E[U N].

Everything is vectorised over walks (numpy; a dense edge table, or sorted-key look-ups for
a graph too large for one), scanned in cache-sized chunks; no torch, no networkx.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

SCORE_COLUMNS = ["valid", "utility", "novelty", "creativity"]
# Why a walk fails, in the order it is checked: the first that applies is the walk's error
# (docs/combinatorial.md, "Why walks fail"). First whether the walk is made of the graph's
# concepts, then whether each step is an edge and carries its label (the walk is then valid),
# then the prompt: start, end, inclusion, exclusion.
WALK_ERRORS = (
    "unknown_concept",
    "not_an_edge",
    "wrong_label",
    "wrong_start",
    "wrong_end",
    "missing_inclusion",
    "used_exclusion",
)
CC_METRIC_COLUMNS = ["cc_valid", "cc_utility", "cc_novelty", "cc_creativity"]


@dataclass(frozen=True)
class Weights:
    """The paper's scalar weights; all 1 by default (the paper leaves them free)."""

    alpha_h: float = 1.0
    alpha_r: float = 1.0
    alpha_include: float = 1.0
    alpha_exclude: float = 1.0


@dataclass(frozen=True)
class Prompt:
    """A creative prompt x = (u, v, I, X) by name, with ``I`` and ``X`` disjoint label sets."""

    prompt_id: str
    start: str
    end: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        both = set(self.include) & set(self.exclude)
        if both:
            raise ValueError(f"prompt {self.prompt_id}: labels both included and excluded: {', '.join(sorted(both))}")

    def as_dict(self) -> dict:
        """The JSONL form ``{"prompt_id", "start", "end", "include", "exclude"}``."""
        return {
            "prompt_id": self.prompt_id,
            "start": self.start,
            "end": self.end,
            "include": list(self.include),
            "exclude": list(self.exclude),
        }


def label_counts_from_walks(walks: Iterable[Sequence[str]]) -> dict[str, int]:
    """How often each label occurs as a step of the given walks (training sequences)."""
    counts: dict[str, int] = {}
    for walk in walks:
        for label in list(walk)[1::2]:
            counts[label] = counts.get(label, 0) + 1
    return counts


class _NameCodes(dict):
    """Name -> code, -1 for a name not in the graph, looked up with the C-level ``__getitem__``
    (no default argument per call: the name-to-code pass is most of the cost of scoring)."""

    def __missing__(self, name: str) -> int:
        return -1


# Largest (n_concepts + n_labels + 1) ** 2 for the dense (code, code) -> label table (two
# bytes each): one gather per token instead of a binary search. Larger graphs use sorted keys.
_DENSE_EDGE_TABLE_MAX = 1 << 24
# Up to this many labels, the labels a walk uses are one bit mask per walk (an OR over its
# tokens), and I / X are checked with two mask comparisons per walk.
_LABEL_BITMASK_MAX = 63
# The dense table's "no edge": never a token (tokens are at most n_concepts + n_labels).
_NO_EDGE = np.iinfo(np.uint16).max


# Walks are scanned in chunks of about this many tokens: every temporary array of the scan
# then stays in cache and is reused heap memory; arrays over the whole batch (100 MB and
# more) would be fresh, page-faulting memory for every pass.
_CHUNK_TOKENS = 1 << 15


def _walk_chunks(n_tokens: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive walk ranges [w0, w1) of about ``_CHUNK_TOKENS`` tokens each (at least one walk)."""
    if not len(n_tokens):
        return []
    ends = np.cumsum(n_tokens)
    cuts = np.searchsorted(ends, np.arange(_CHUNK_TOKENS, int(ends[-1]), _CHUNK_TOKENS)) + 1
    bounds = np.unique(np.concatenate([[0], cuts, [len(n_tokens)]])).tolist()
    return list(pairwise(bounds))


class _Scan:
    """Per-walk results of the token scan, filled chunk by chunk."""

    def __init__(self, n_walks: int, bitmask_dtype: np.dtype | None):
        self.valid = np.zeros(n_walks, dtype=bool)
        self.first = np.full(n_walks, -1, dtype=np.int64)
        self.last = np.full(n_walks, -1, dtype=np.int64)
        self.surprise_sum = np.zeros(n_walks)
        # Why an invalid walk is invalid: 1 + its index in WALK_ERRORS (0 for a valid walk).
        self.step_error = np.zeros(n_walks, dtype=np.int8)
        # The labels each walk uses: a bit mask, or (many labels) (walk, label) pairs.
        self.used = np.zeros(n_walks, dtype=bitmask_dtype) if bitmask_dtype is not None else None
        self.label_owner: list[np.ndarray] = []
        self.label_id: list[np.ndarray] = []


class WalkScorer:
    """Scores walks against one graph.

    Walks are read in one code space: concepts 0..n-1, labels n..n+k-1, anything else
    unknown (what :meth:`encode` returns and :meth:`score_encoded` takes).

    Parameters
    ----------
    triples
        The graph's edges as ``(head, label, tail)`` names (undirected).
    train_label_counts
        Label occurrences in what the model was trained on, for the surprise term; default:
        the graph's own edges (each counted once). A label never seen in training gets the
        frequency ``1 / (T + 1)`` with T all occurrences (rarer than a label seen once).
    weights
        :class:`Weights`.
    """

    def __init__(
        self,
        triples: Iterable[Sequence[str]],
        *,
        train_label_counts: Mapping[str, int] | None = None,
        weights: Weights = Weights(),
    ):
        rows = [tuple(t) for t in triples]
        concepts = pd.Index(pd.unique(np.array([c for h, _, t in rows for c in (h, t)], dtype=object)))
        labels_from_graph = pd.unique(np.array([lab for _, lab, _ in rows], dtype=object))
        extra = [lab for lab in (train_label_counts or {}) if lab not in set(labels_from_graph)]
        self.concepts = concepts
        self.labels = pd.Index(list(labels_from_graph) + extra)
        self.weights = weights
        self._label_code = {name: i for i, name in enumerate(self.labels)}
        self._names_disjoint = not set(self._label_code) & set(concepts)
        n, k = len(concepts), len(self.labels)
        self._code = _NameCodes({name: i for i, name in enumerate(concepts)})
        self._code.update({name: n + i for name, i in self._label_code.items()})
        labs = self.labels.get_indexer([lab for _, lab, _ in rows])
        self._index_edges(
            concepts.get_indexer([h for h, _, _ in rows]), labs, concepts.get_indexer([t for *_, t in rows])
        )
        if train_label_counts is None:
            counts = np.bincount(labs, minlength=k).astype(float)
        else:
            counts = np.array([float(train_label_counts.get(lab, 0)) for lab in self.labels])
        total = counts.sum()
        freq = np.where(counts > 0, counts / max(total, 1.0), 1.0 / (total + 1.0))
        self.surprise_of_label = -np.log(freq)
        # Per code (concept, label, unknown): a concept or unknown token adds nothing, so a
        # sum or OR over all of a valid walk's tokens is the one over its labels.
        self._surprise_of_code = np.zeros(n + k + 1)
        self._surprise_of_code[n : n + k] = self.surprise_of_label
        self._bit_of_code = np.zeros(n + k + 1, dtype=self._bitmask_dtype() or np.uint8)
        if k <= _LABEL_BITMASK_MAX:
            self._bit_of_code[n : n + k] = np.left_shift(1, np.arange(k, dtype=np.uint64))

    def _index_edges(self, heads: np.ndarray, labs: np.ndarray, tails: np.ndarray) -> None:
        """The undirected edges as sorted keys ``low * n + high`` with their labels, and, when
        it fits, a dense table code x code -> label code (both directions, no loops)."""
        n, m = self.n_concepts, self.n_concepts + len(self.labels)
        keys = np.minimum(heads, tails).astype(np.int64) * n + np.maximum(heads, tails)
        order = np.argsort(keys, kind="stable")
        self._keys, self._edge_labels = keys[order], labs[order]
        self._edge_table: np.ndarray | None = None
        if n and (m + 1) ** 2 <= _DENSE_EDGE_TABLE_MAX:
            # The label of the first triple of each pair: what the sorted look-up (stable
            # order) finds.
            unique_keys, first = np.unique(self._keys, return_index=True)
            low, high = unique_keys // n, unique_keys % n
            keep = low != high  # a simple graph has no loops
            low, high, code = low[keep], high[keep], n + self._edge_labels[first][keep]
            table = np.full((m + 1) ** 2, _NO_EDGE, dtype=np.uint16)
            table[low * (m + 1) + high] = code
            table[high * (m + 1) + low] = code
            self._edge_table = table

    @property
    def n_concepts(self) -> int:
        return len(self.concepts)

    def _codes(self, walks: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token counts per walk and one code per token (-1 unknown): one C-level dict pass
        over all tokens, no per-token Python code, no intermediate list."""
        n_tokens = np.fromiter(map(len, walks), dtype=np.int64, count=len(walks))
        total = int(n_tokens.sum())
        codes = np.fromiter(map(self._code.__getitem__, chain.from_iterable(walks)), dtype=np.int32, count=total)
        return n_tokens, codes

    def encode(self, walks: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token counts per walk and one code per token: concepts 0..n-1, labels n..n+k-1,
        -1 for a name that is neither (or not one where it stands, when a name is both a
        concept and a label)."""
        if self._names_disjoint:
            return self._codes(walks)
        n_tokens = np.fromiter(map(len, walks), dtype=np.int64, count=len(walks))
        flat = list(chain.from_iterable(walks))
        starts = np.cumsum(n_tokens) - n_tokens
        is_label = (np.arange(len(flat)) - np.repeat(starts, n_tokens)) % 2 == 1
        label_ids = self.labels.get_indexer(flat)
        label_codes = np.where(label_ids >= 0, label_ids + self.n_concepts, -1)
        return n_tokens, np.where(is_label, label_codes, self.concepts.get_indexer(flat)).astype(np.int32)

    def score(self, walks: Sequence[Sequence[str]], prompts: Sequence[Prompt]) -> pd.DataFrame:
        """Score ``walks[i]`` against ``prompts[i]``.

        Returns one row per walk: ``valid`` (bool), ``satisfies`` (bool: valid and meets
        x), ``length`` (h), ``surprise`` (S), ``utility``, ``novelty``, ``creativity``, and
        ``error`` (categorical: missing when the walk satisfies x, else the first of
        :data:`WALK_ERRORS` that applies). A walk with an even number of entries, an unknown
        concept or label, or a step that is not an edge with that label, is invalid.
        """
        if len(walks) != len(prompts):
            raise ValueError(f"{len(walks)} walks but {len(prompts)} prompts")
        n_tokens = np.fromiter(map(len, walks), dtype=np.int64, count=len(walks))
        scan = _Scan(len(walks), self._bitmask_dtype())
        for w0, w1 in _walk_chunks(n_tokens):
            # Encoded chunk by chunk, so the codes too stay in cache.
            self._scan_chunk(self.encode(walks[w0:w1])[1], n_tokens[w0:w1], scan, w0)
        return self._scores(n_tokens, scan, prompts)

    def score_encoded(self, n_tokens: np.ndarray, codes: np.ndarray, prompts: Sequence[Prompt]) -> pd.DataFrame:
        """:meth:`score` on walks already encoded as by :meth:`encode` (all vectorised)."""
        n_tokens = np.asarray(n_tokens, dtype=np.int64)
        codes = np.asarray(codes)
        if len(n_tokens) != len(prompts) or codes.size != n_tokens.sum():
            raise ValueError(
                f"{len(n_tokens)} walks of {n_tokens.sum()} tokens, {codes.size} codes, {len(prompts)} prompts"
            )
        starts = np.cumsum(n_tokens) - n_tokens
        scan = _Scan(len(n_tokens), self._bitmask_dtype())
        for w0, w1 in _walk_chunks(n_tokens):
            self._scan_chunk(codes[starts[w0] : starts[w1 - 1] + n_tokens[w1 - 1]], n_tokens[w0:w1], scan, w0)
        return self._scores(n_tokens, scan, prompts)

    def _bitmask_dtype(self) -> np.dtype | None:
        """The smallest unsigned integer holding one bit per label; None past 63 labels."""
        k = len(self.labels)
        if k > _LABEL_BITMASK_MAX:
            return None
        return next(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64) if k <= 8 * np.dtype(t).itemsize)

    def _scan_chunk(self, codes: np.ndarray, n_tokens: np.ndarray, scan: _Scan, w0: int) -> None:
        """Per walk of one chunk (its first walk ``w0``): ends, validity, labels used and
        the sum of their surprise, into ``scan``."""
        w1 = w0 + len(n_tokens)
        tokens = self._clamped(codes)
        starts = np.cumsum(n_tokens) - n_tokens
        first, last = self._ends(tokens, starts, n_tokens)
        scan.first[w0:w1], scan.last[w0:w1] = first, last
        scan.valid[w0:w1] = self._validity(tokens, starts, n_tokens, first)
        scan.step_error[w0:w1] = self._step_errors(tokens, n_tokens, ~scan.valid[w0:w1])
        nonempty = np.flatnonzero(n_tokens > 0)
        if not nonempty.size:
            return
        # reduceat over the non-empty walks' starts: their segments tile the tokens.
        at = starts[nonempty]
        scan.surprise_sum[w0 + nonempty] = np.add.reduceat(self._surprise_of_code.take(tokens), at)
        if scan.used is not None:
            scan.used[w0 + nonempty] = np.bitwise_or.reduceat(self._bit_of_code.take(tokens), at)
        else:
            n, k = self.n_concepts, len(self.labels)
            is_label = (tokens >= n) & (tokens < n + k)
            scan.label_owner.append(w0 + np.repeat(np.arange(len(n_tokens)), n_tokens)[is_label])
            scan.label_id.append(tokens[is_label].astype(np.int64) - n)

    def _scores(self, n_tokens: np.ndarray, scan: _Scan, prompts: Sequence[Prompt]) -> pd.DataFrame:
        """The score table from the per-walk scan: the prompt's constraints, then U, N, U N."""
        n_walks = len(n_tokens)
        valid = scan.valid
        length = np.maximum(n_tokens - 1, 0) // 2
        surprise = np.divide(scan.surprise_sum, length, out=np.zeros(n_walks), where=length > 0)
        table, which = self._encode_prompts(prompts)
        p_start, p_end, n_inc, n_exc = table[:4]
        start_ok = (scan.first == p_start[which]) & (p_start[which] >= 0)
        end_ok = scan.last == p_end[which]
        used = scan.used
        if used is None:
            owner, label = (
                np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
                for parts in (scan.label_owner, scan.label_id)
            )
            used = self._label_presence(owner, label, n_walks, len(self.labels))
        inc_ok, exc_ok = self._constraints_met(used, which, table)
        satisfies = valid & start_ok & end_ok & inc_ok & exc_ok
        prompt_error = np.zeros(n_walks, dtype=np.int8)
        checks = (
            ("used_exclusion", exc_ok),
            ("missing_inclusion", inc_ok),
            ("wrong_end", end_ok),
            ("wrong_start", start_ok),
        )
        for kind, ok in checks:  # the last written, the first in the order, wins
            prompt_error[~ok] = WALK_ERRORS.index(kind) + 1
        error = np.where(valid, prompt_error, scan.step_error)
        error -= 1  # categorical codes: -1 for none
        w = self.weights
        scale = (1 + w.alpha_include * n_inc[which]) * (1 + w.alpha_exclude * n_exc[which])
        utility = np.where(satisfies, scale, 0.0).astype(float)
        novelty = np.where(valid, w.alpha_h * length + w.alpha_r * surprise, 0.0)
        return pd.DataFrame(
            {
                "valid": valid,
                "satisfies": satisfies,
                "length": length,
                "surprise": np.where(valid, surprise, np.nan),
                "utility": utility,
                "novelty": novelty,
                "creativity": utility * novelty,
                "error": pd.Categorical.from_codes(error, categories=pd.Index(WALK_ERRORS), validate=False),
            }
        )

    def _clamped(self, codes: np.ndarray) -> np.ndarray:
        """Codes as index-sized tokens in 0..m, m = n + k standing for every unknown code (a
        negative code read unsigned is huge, so one ``minimum`` maps both kinds). Index-sized
        so that the table look-ups take them as they are (a chunk is small enough for cache)."""
        m = self.n_concepts + len(self.labels)
        if codes.dtype.kind not in "iu":
            codes = codes.astype(np.int64)
        unsigned = codes.view(codes.dtype.str.replace("i", "u"))
        return np.minimum(unsigned, m, out=np.empty(codes.shape, dtype=np.intp), casting="unsafe")

    @staticmethod
    def _ends(tokens: np.ndarray, starts: np.ndarray, n_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each walk's first and last token; -1 for an empty walk."""
        nonempty = n_tokens > 0
        if not tokens.size:
            return np.full(len(n_tokens), -1), np.full(len(n_tokens), -1)
        first = np.where(nonempty, tokens[np.where(nonempty, starts, 0)], -1)
        last = np.where(nonempty, tokens[np.where(nonempty, starts + n_tokens - 1, 0)], -1)
        return first, last

    def _validity(self, tokens: np.ndarray, starts: np.ndarray, n_tokens: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Per walk, whether it is valid.

        Checked at every token position g at once, with no per-step index arithmetic: where
        token g is a concept, (g, g + 1, g + 2) must be a step, an edge carrying that label.
        A walk of odd length that starts with a concept and passes this check at every
        position but its last two is valid: by induction its even positions hold concepts,
        its odd ones labels, and each (concept, label, concept) is an edge with that label."""
        bad_before = self._bad_step_counts(tokens)
        end = np.maximum(starts + n_tokens - 2, starts)
        valid = (n_tokens % 2 == 1) & (first >= 0) & (first < self.n_concepts)
        valid &= bad_before[end] == bad_before[starts]
        return valid

    def _bad_step_counts(self, tokens: np.ndarray) -> np.ndarray:
        """How many positions before g (for g in 0..T) hold a concept that does not start an
        edge step: a running count, so a walk's count is one difference."""
        size = tokens.size
        counts = np.zeros(size + 1, dtype=np.int32)
        if size < 3:
            return counts
        heads, middles, tails = tokens[:-2], tokens[1:-1], tokens[2:]
        if self._edge_table is not None:
            key = np.multiply(heads, self.n_concepts + len(self.labels) + 1, dtype=np.intp)
            key += tails
            is_step = self._edge_table.take(key) == middles
        else:
            is_step = self._edge_label_codes(heads, tails) == middles
        bad = heads < self.n_concepts
        np.greater(bad, is_step, out=bad)  # a concept, and no step
        np.cumsum(bad, dtype=np.int32, out=counts[1 : size - 1])
        counts[size - 1 :] = counts[size - 2]
        return counts

    def _edge_label_codes(self, heads: np.ndarray, tails: np.ndarray) -> np.ndarray:
        """The code of the label of the edge joining each (head, tail) pair of (clamped) tokens,
        or -1 where no edge joins them (a token that is not a concept joins nothing)."""
        n = self.n_concepts
        if self._edge_table is not None:
            width = n + len(self.labels) + 1
            codes = self._edge_table.take(np.multiply(heads, width, dtype=np.intp) + tails).astype(np.int64)
            codes[codes == _NO_EDGE] = -1
            return codes
        out = np.full(heads.size, -1, dtype=np.int64)
        if not len(self._keys):
            return out
        heads, tails = heads.astype(np.int64), tails.astype(np.int64)
        ok = (heads < n) & (tails < n) & (heads != tails)
        keys = np.minimum(heads, tails) * n + np.maximum(heads, tails)
        where = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = ok & (self._keys[where] == keys)
        out[found] = self._edge_labels[where[found]] + n
        return out

    def _step_errors(self, tokens: np.ndarray, n_tokens: np.ndarray, invalid: np.ndarray) -> np.ndarray:
        """Per walk of a chunk, why it is invalid: 1 + the index in :data:`WALK_ERRORS` of the
        first of unknown_concept, not_an_edge, wrong_label that applies; 0 for a valid walk.

        Only the invalid walks' tokens are read. Each token gets the code of what it shows
        (1, 2, 3 as above, 4 nothing), its place in its walk coming from the parity of the
        walk's first position; a walk's error is the minimum over its tokens (one reduction)."""
        out = np.zeros(len(n_tokens), dtype=np.int8)
        lengths = n_tokens[invalid]
        if not lengths.size:
            return out
        tok = tokens[np.repeat(invalid, n_tokens)]
        size, n = tok.size, self.n_concepts
        starts = np.cumsum(lengths) - lengths
        even = (np.arange(size) & 1) == np.repeat(starts & 1, lengths)  # the places of concepts
        code = np.full(size + 1, 4, dtype=np.int8)  # one spare place: reduceat needs in-range starts
        if size >= 3:
            # Steps start at even places, not in a walk's last two.
            step = even[:-2].copy()
            ends = starts + lengths
            for back, shortest in ((1, 1), (2, 2)):
                place = (ends - back)[lengths >= shortest]
                step[place[place < size - 2]] = False
            if self._edge_table is not None:  # the label codes as stored: no conversion
                width = n + len(self.labels) + 1
                edge_label = self._edge_table.take(np.multiply(tok[:-2], width, dtype=np.intp) + tok[2:])
                no_edge = edge_label == _NO_EDGE
            else:
                edge_label = self._edge_label_codes(tok[:-2], tok[2:])
                no_edge = edge_label < 0
            code[: size - 2][step & (edge_label != tok[1:-1])] = 3  # no edge is no label either
            code[: size - 2][step & no_edge] = 2
        code[:size][even & (tok >= n)] = 1
        nonempty = lengths > 0
        first = np.full(lengths.size, 4, dtype=np.int8)
        if nonempty.any():
            first[nonempty] = np.minimum.reduceat(code, starts[nonempty])[: int(nonempty.sum())]
        first[lengths % 2 == 0] = 1  # a missing concept: an empty walk, or one ending on a label
        out[invalid] = np.where(first == 4, 0, first)
        return out

    def _encode_prompts(self, prompts: Sequence[Prompt]) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """Arrays per distinct prompt (start, end, |I|, |X|, I and X as CSR) and each walk's row."""
        # Keyed by object identity: walks of one prompt usually share its object, and
        # identity is much cheaper to hash than the fields.
        keys = np.fromiter(map(id, prompts), dtype=np.int64, count=len(prompts))
        which, _ = pd.factorize(keys)  # rows numbered in order of first appearance
        which = which.astype(np.int64, copy=False)
        # A new row's first walk is where the running maximum of the row numbers rises.
        first = np.flatnonzero(np.diff(np.maximum.accumulate(which), prepend=-1) > 0)
        distinct = [prompts[i] for i in first.tolist()]
        lget = self._label_code.get
        n = self.n_concepts

        def concept(name: str) -> int:
            code = self._code.get(name, -1)
            return code if code < n else -1

        p_start = np.array([concept(p.start) for p in distinct], dtype=np.int64)
        p_end = np.array([concept(p.end) for p in distinct], dtype=np.int64)
        n_inc = np.array([len(p.include) for p in distinct], dtype=np.int64)
        n_exc = np.array([len(p.exclude) for p in distinct], dtype=np.int64)
        inc_ids = np.array([lget(x, -1) for p in distinct for x in p.include], dtype=np.int64)
        exc_ids = np.array([lget(x, -1) for p in distinct for x in p.exclude], dtype=np.int64)
        inc_ptr = np.concatenate([[0], np.cumsum(n_inc)])
        exc_ptr = np.concatenate([[0], np.cumsum(n_exc)])
        return (p_start, p_end, n_inc, n_exc, inc_ptr, inc_ids, exc_ptr, exc_ids), which

    def _constraints_met(
        self, used: np.ndarray, which: np.ndarray, table: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per walk, whether it uses every label of its prompt's I, and none of its X."""
        _, _, n_inc, n_exc, inc_ptr, inc_ids, exc_ptr, exc_ids = table
        if len(self.labels) <= _LABEL_BITMASK_MAX:
            return self._constraints_by_bitmask(used, which, (n_inc, inc_ptr, inc_ids, exc_ptr, exc_ids))
        n_walks, k = len(which), len(self.labels)
        w_inc, w_exc = n_inc[which], n_exc[which]
        inc_ok = self._hits(used, which, w_inc, inc_ptr, inc_ids, n_walks, k) == w_inc
        exc_ok = self._hits(used, which, w_exc, exc_ptr, exc_ids, n_walks, k) == 0
        return inc_ok, exc_ok

    @staticmethod
    def _constraints_by_bitmask(
        used: np.ndarray, which: np.ndarray, prompt_sets: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """I and X met, with the labels a walk uses as one bit mask per walk."""
        n_inc, inc_ptr, inc_ids, exc_ptr, exc_ids = prompt_sets
        used = used.astype(np.int64)  # at most 63 bits

        def masks(ptr: np.ndarray, ids: np.ndarray) -> np.ndarray:
            # Per prompt, the OR of its labels' bits; an unknown label (-1) contributes none.
            owner = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
            mask = np.zeros(len(ptr) - 1, dtype=np.int64)
            np.bitwise_or.at(mask, owner[ids >= 0], np.left_shift(np.int64(1), ids[ids >= 0]))
            return mask

        inc_mask, exc_mask = masks(inc_ptr, inc_ids), masks(exc_ptr, exc_ids)
        # A prompt asking for a label the graph lacks can never be met.
        owner = np.repeat(np.arange(len(n_inc)), n_inc)
        unknown_inc = np.bincount(owner[inc_ids < 0], minlength=len(n_inc)) > 0
        w_inc_mask = inc_mask[which]
        inc_ok = ((used & w_inc_mask) == w_inc_mask) & ~unknown_inc[which]
        exc_ok = (used & exc_mask[which]) == 0
        return inc_ok, exc_ok

    @staticmethod
    def _label_presence(walk: np.ndarray, label: np.ndarray, n_walks: int, k: int) -> np.ndarray:
        """Sorted unique keys ``walk * k + label`` of the labels each walk uses, or a dense
        boolean table of them when it fits (much faster than sorting)."""
        if n_walks * k <= 200_000_000:
            dense = np.zeros(n_walks * k + 1, dtype=bool)
            dense[walk * k + label] = True
            return dense
        return np.unique(walk * k + label)

    @staticmethod
    def _hits(
        used: np.ndarray, which: np.ndarray, counts: np.ndarray, ptr: np.ndarray, ids: np.ndarray, n_walks: int, k: int
    ) -> np.ndarray:
        """Per walk, how many labels of its prompt's I (or X) the walk uses."""
        total = int(counts.sum())
        if total == 0:
            return np.zeros(n_walks, dtype=np.int64)
        owner = np.repeat(np.arange(n_walks), counts)
        offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        label = ids[ptr[which][owner] + offset]
        known = label >= 0
        keys = owner[known] * k + label[known]
        hit = np.zeros(total, dtype=bool)
        hit[known] = used[keys] if used.dtype == bool else np.isin(keys, used)
        return np.bincount(owner[hit], minlength=n_walks)


def score_walks(
    triples: Iterable[Sequence[str]],
    walks: Sequence[Sequence[str]],
    prompts: Sequence[Prompt],
    *,
    train_label_counts: Mapping[str, int] | None = None,
    weights: Weights = Weights(),
) -> pd.DataFrame:
    """One-call form of :meth:`WalkScorer.score`."""
    return WalkScorer(triples, train_label_counts=train_label_counts, weights=weights).score(walks, prompts)


def per_prompt(scores: pd.DataFrame, *, prompt_col: str = "prompt_id") -> pd.DataFrame:
    """E[.] per prompt: ``n``, ``valid``, ``utility``, ``novelty``, ``creativity`` (= E[U N])."""
    cols = [c for c in ("valid", "satisfies", "utility", "novelty", "creativity") if c in scores.columns]
    frame = scores[[prompt_col, *cols]].copy()
    for col in ("valid", "satisfies"):
        if col in frame.columns:
            frame[col] = frame[col].astype(float)
    grouped = frame.groupby(prompt_col, sort=True)
    out = grouped[cols].mean()
    out.insert(0, "n", grouped.size())
    return out.reset_index()


def mean_ci_over_prompts(
    scores: pd.DataFrame, *, prompt_col: str = "prompt_id", columns: Sequence[str] = SCORE_COLUMNS, level: float = 0.95
) -> dict[str, float]:
    """Mean over prompts of each per-prompt mean, with a t-interval over prompts.

    Returns ``{col: mean, col_ci_low: ..., col_ci_high: ...}`` per column and ``n_prompts``.
    """
    table = per_prompt(scores, prompt_col=prompt_col)
    n = len(table)
    out: dict[str, float] = {"n_prompts": float(n)}
    for col in columns:
        values = table[col].to_numpy(float)
        mean = float(values.mean()) if n else math.nan
        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        out[col], out[f"{col}_ci_low"], out[f"{col}_ci_high"] = mean, mean - half, mean + half
    return out


class InputError(ValueError):
    """A malformed input line: the message names the file and line."""


def read_triples(path: str | Path) -> list[tuple[str, str, str]]:
    """``head,label,tail`` rows of a CSV (TSV for ``.tsv``) with that header."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in ("head", "label", "tail") if c not in header]
    if missing:
        raise InputError(f"{path}:1: header must name the columns head,label,tail (missing {', '.join(missing)})")
    ih, il, it = header.index("head"), header.index("label"), header.index("tail")
    rows = []
    for lineno, row in enumerate(reader, 2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(ih, il, it) or not all(row[i].strip() for i in (ih, il, it)):
            raise InputError(f"{path}:{lineno}: expected head{delimiter}label{delimiter}tail, got {row!r}")
        rows.append((row[ih].strip(), row[il].strip(), row[it].strip()))
    if not rows:
        raise InputError(f"{path}: no triples")
    return rows


def _json_lines(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, record


def _names(value, where: str, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InputError(f"{where}: {field!r} must be a list of non-empty strings")
    return tuple(value)


def read_prompts(path: str | Path) -> dict[str, Prompt]:
    """Prompt lines ``{"prompt_id", "start", "end", "include": [...], "exclude": [...]}``."""
    prompts: dict[str, Prompt] = {}
    for lineno, record in _json_lines(path):
        where = f"{path}:{lineno}"
        for key in ("prompt_id", "start", "end"):
            if not isinstance(record.get(key), str) or not record[key]:
                raise InputError(f"{where}: {key!r} must be a non-empty string")
        include = _names(record.get("include", []), where, "include")
        exclude = _names(record.get("exclude", []), where, "exclude")
        if set(include) & set(exclude):
            raise InputError(
                f"{where}: labels both included and excluded: {', '.join(sorted(set(include) & set(exclude)))}"
            )
        if record["prompt_id"] in prompts:
            raise InputError(f"{where}: prompt_id {record['prompt_id']!r} given twice")
        prompts[record["prompt_id"]] = Prompt(record["prompt_id"], record["start"], record["end"], include, exclude)
    if not prompts:
        raise InputError(f"{path}: no prompts")
    return prompts


def read_walks(path: str | Path, *, prompts: Mapping[str, Prompt] | None = None) -> list[dict]:
    """Walk lines ``{"prompt_id", "walk": [...]}`` (other keys kept); with ``prompts``,
    an unknown ``prompt_id`` is an error naming the line."""
    records = []
    for lineno, record in _json_lines(path):
        where = f"{path}:{lineno}"
        if prompts is not None:
            if not isinstance(record.get("prompt_id"), str):
                raise InputError(f"{where}: 'prompt_id' must be a string")
            if record["prompt_id"] not in prompts:
                raise InputError(f"{where}: unknown prompt_id {record['prompt_id']!r}")
        if "walk" not in record:
            raise InputError(f"{where}: missing 'walk'")
        _names(record["walk"], where, "walk")
        records.append(record)
    return records


def read_train_label_counts(path: str | Path) -> dict[str, int]:
    """Label counts of what the model saw: walk lines (``.jsonl``) or ``head,label,tail`` CSV."""
    if Path(path).suffix.lower() in {".jsonl", ".ndjson"}:
        return label_counts_from_walks(r["walk"] for r in read_walks(path))
    return label_counts_from_walks([h, lab, t] for h, lab, t in read_triples(path))


# --- the cc_walk task family: a subgraph shown as text, a walk answered as text ---------

_ITEM_LINE = re.compile(r"^\s*(.+?)\s*\|\s*(.+?)\s*\|\s*(.+?)\s*$")
_FIELD = re.compile(r"^\s*(start|end|must use|must not use)\s*:\s*(.*)$", re.IGNORECASE)
_SEPARATORS = re.compile(r"\s*(?:->|→|>|,|\||;)\s*")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]+|\d{1,3}[.)])\s+")


def render_cc_item(triples: Sequence[Sequence[str]], prompt: Prompt) -> str:
    """The text of a ``cc_walk`` item: the subgraph's edges, then the prompt's fields."""
    lines = ["Relations:"] + [f"{h} | {lab} | {t}" for h, lab, t in triples]
    lines += [
        f"Start: {prompt.start}",
        f"End: {prompt.end}",
        f"Must use: {', '.join(prompt.include) or 'nothing'}",
        f"Must not use: {', '.join(prompt.exclude) or 'nothing'}",
    ]
    return "\n".join(lines)


def parse_cc_item(text: str, *, prompt_id: str = "item") -> tuple[list[tuple[str, str, str]], Prompt]:
    """Inverse of :func:`render_cc_item`; ``ValueError`` naming what is missing."""
    triples: list[tuple[str, str, str]] = []
    fields: dict[str, str] = {}
    for line in text.splitlines():
        field = _FIELD.match(line)
        if field:
            fields[field.group(1).lower()] = field.group(2).strip()
            continue
        edge = _ITEM_LINE.match(line)
        if edge:
            triples.append((edge.group(1), edge.group(2), edge.group(3)))
    missing = [f for f in ("start", "end") if f not in fields]
    if missing or not triples:
        raise ValueError(f"cc_walk item {prompt_id}: needs 'head | label | tail' lines and Start/End fields")

    def names(value: str) -> tuple[str, ...]:
        return (
            () if value.lower() in {"", "nothing", "none"} else tuple(v.strip() for v in value.split(",") if v.strip())
        )

    prompt = Prompt(
        prompt_id,
        fields["start"],
        fields["end"],
        names(fields.get("must use", "")),
        names(fields.get("must not use", "")),
    )
    return triples, prompt


def parse_walk_text(text: str) -> list[str]:
    """The walk in a free-text answer: the first line with at least three parts split by
    ``>``, ``->``, ``,``, ``|`` or ``;`` (surrounding quotes, bullets and a trailing period
    dropped). Never raises; no such line gives ``[]`` (scored invalid, not dropped)."""
    for line in text.splitlines():
        line = _LIST_MARKER.sub("", line.strip()).strip("`* ").rstrip(".")
        parts = [p.strip().strip("\"'`*[]()").strip() for p in _SEPARATORS.split(line)]
        parts = [p for p in parts if p]
        if len(parts) >= 3:
            return parts
    return []


def score_cc_walk_texts(
    texts: Sequence[str], item_texts: Sequence[str], *, weights: Weights = Weights()
) -> pd.DataFrame:
    """``cc_walk`` stimuli: each answer scored on the subgraph and prompt of its item.

    Columns :data:`CC_METRIC_COLUMNS`. The label frequencies of the surprise term are those
    of the subgraph shown (the model's "training" for this task is the prompt itself).
    """
    rows = []
    scorers: dict[str, tuple[WalkScorer, Prompt]] = {}
    for text, item_text in zip(texts, item_texts, strict=True):
        if item_text not in scorers:
            triples, prompt = parse_cc_item(item_text)
            scorers[item_text] = (WalkScorer(triples, weights=weights), prompt)
        scorer, prompt = scorers[item_text]
        row = scorer.score([parse_walk_text(text)], [prompt]).iloc[0]
        rows.append([bool(row["valid"]), float(row["utility"]), float(row["novelty"]), float(row["creativity"])])
    return pd.DataFrame(rows, columns=CC_METRIC_COLUMNS)


def novelty_utility_by_group(
    stimuli: pd.DataFrame, *, group_cols: Sequence[str] = ("condition",), n_boot: int = 0
) -> pd.DataFrame | None:
    """Mean ``cc_novelty``, ``cc_utility``, ``cc_creativity`` and valid share per group of
    ``cc_walk`` stimuli, for the report's novelty-utility section; ``None`` without them."""
    if not set(CC_METRIC_COLUMNS) <= set(stimuli.columns):
        return None
    rows = stimuli.dropna(subset=["cc_utility"])
    if rows.empty:
        return None
    group_cols = [c for c in group_cols if c in rows.columns]
    frame = rows[[*group_cols, *CC_METRIC_COLUMNS]].copy()
    frame["cc_valid"] = frame["cc_valid"].astype(float)
    if not group_cols:
        return frame[CC_METRIC_COLUMNS].mean().to_frame().T.assign(n=len(frame))
    out = frame.groupby(group_cols, sort=True)[CC_METRIC_COLUMNS].mean()
    out["n"] = frame.groupby(group_cols, sort=True).size()
    return out.reset_index()


def report_section(page, metrics: pd.DataFrame | None) -> None:
    """The report's combinatorial-creativity section: mean novelty, utility and creativity of
    ``cc_walk`` stimuli per condition, and novelty against utility. Nothing without them."""
    table = novelty_utility_by_group(metrics) if metrics is not None else None
    if table is None:
        return
    import matplotlib.pyplot as plt

    page.h("Combinatorial creativity (cc_walk): novelty and utility")
    page.p(
        "Walks scored as in Schapiro et al. (arXiv 2509.21043): utility is 0 unless the walk is valid and "
        "meets the prompt; creativity is the mean of utility x novelty. See docs/combinatorial.md.",
        "note",
    )
    page.table(table, "cc_novelty_utility")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(table["cc_utility"], table["cc_novelty"])
    for row in table.to_dict("records"):
        ax.annotate(str(row.get("condition", "all")), (row["cc_utility"], row["cc_novelty"]), fontsize=8)
    ax.set_xlabel("utility E[U]")
    ax.set_ylabel("novelty E[N]")
    fig.tight_layout()
    page.figure(fig, "cc_novelty_utility", "cc_walk novelty against utility by condition")
