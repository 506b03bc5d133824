"""Validity, utility, novelty and creativity of labelled walks (Schapiro et al., arXiv 2509.21043).

Definitions (the paper's framework section; choices it leaves open are in
``docs/combinatorial.md``):

- conceptual space: a simple undirected labelled graph G = (V, E, Sigma);
- artifact: a walk P = (v0, l1, v1, ..., lh, vh); *valid* when every (v(t-1), l(t), v(t))
  is an edge of G carrying that label;
- prompt: x = (u, v, I, X);
- utility U(P; x) = (1 + a_I |I|) (1 + a_X |X|) when P is valid, v0 = u, vh = v, every
  label of I occurs in P and none of X does; 0 otherwise;
- novelty N(P) = a_h h + a_r S(P), with h the number of steps and S(P) the mean label
  surprise -log w(l) over the steps, w the frequency of a label in what the model was
  trained on; N = 0 for an invalid walk (it is not an artifact of the space);
- creativity C = E[U N].

Everything is vectorised over walks (numpy; a dense edge table, or sorted-key look-ups for
a graph too large for one); no torch, no networkx.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

SCORE_COLUMNS = ["valid", "utility", "novelty", "creativity"]
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
    (no default argument per call: the name-to-id pass is most of the cost of scoring)."""

    def __missing__(self, name: str) -> int:
        return -1


# Largest n_concepts ** 2 for the dense (head, tail) -> label table (an int8 / int16 each):
# one gather per step instead of a binary search. Larger graphs use the sorted keys.
_DENSE_EDGE_TABLE_MAX = 1 << 24
# Up to this many labels, the labels a walk uses are one bit mask per walk (an OR over its
# steps), and I / X are checked with two mask comparisons per walk.
_LABEL_BITMASK_MAX = 63


class WalkScorer:
    """Scores walks against one graph.

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
        # One code space when names are disjoint: concepts 0..n-1, labels n..n+k-1.
        self._code = _NameCodes({name: i for i, name in enumerate(concepts)})
        self._code.update({name: len(concepts) + i for name, i in self._label_code.items()})
        heads = concepts.get_indexer([h for h, _, _ in rows])
        tails = concepts.get_indexer([t for _, _, t in rows])
        labs = self.labels.get_indexer([lab for _, lab, _ in rows])
        n = len(concepts)
        keys = np.minimum(heads, tails).astype(np.int64) * n + np.maximum(heads, tails)
        order = np.argsort(keys, kind="stable")
        self._keys, self._edge_labels = keys[order], labs[order]
        self._edge_table: np.ndarray | None = None
        if 0 < n * n <= _DENSE_EDGE_TABLE_MAX:
            # The label of the first triple of each pair, both directions: what the sorted
            # look-up (stable order) finds.
            unique_keys, first = np.unique(self._keys, return_index=True)
            low, high = unique_keys // n, unique_keys % n
            table = np.full(n * n, -1, dtype=np.int8 if len(self.labels) < 127 else np.int32)
            table[low * n + high] = self._edge_labels[first]
            table[high * n + low] = self._edge_labels[first]
            self._edge_table = table
        if train_label_counts is None:
            counts = np.bincount(labs, minlength=len(self.labels)).astype(float)
        else:
            counts = np.array([float(train_label_counts.get(lab, 0)) for lab in self.labels])
        total = counts.sum()
        freq = np.where(counts > 0, counts / max(total, 1.0), 1.0 / (total + 1.0))
        self.surprise_of_label = -np.log(freq)

    @property
    def n_concepts(self) -> int:
        return len(self.concepts)

    def _codes(self, walks: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token counts per walk and one code per token in the joint space (concepts 0..n-1,
        labels n..n+k-1, -1 unknown): one C-level dict pass over all tokens, no per-token
        Python code, no intermediate list."""
        n_tokens = np.fromiter(map(len, walks), dtype=np.int64, count=len(walks))
        total = int(n_tokens.sum())
        codes = np.fromiter(map(self._code.__getitem__, chain.from_iterable(walks)), dtype=np.int64, count=total)
        return n_tokens, codes

    def _encode(self, walks: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token counts per walk and one id per token: concepts 0..n-1 at even positions,
        labels 0..k-1 at odd ones, -1 for a name that is not one of those."""
        n = self.n_concepts
        if self._names_disjoint:
            n_tokens, codes = self._codes(walks)
            is_label = self._token_parity(n_tokens)
            ids = np.where(is_label, np.where(codes >= n, codes - n, -1), np.where(codes < n, codes, -1))
            return n_tokens, ids
        n_tokens = np.fromiter(map(len, walks), dtype=np.int64, count=len(walks))
        flat = list(chain.from_iterable(walks))
        is_label = self._token_parity(n_tokens)
        return n_tokens, np.where(is_label, self.labels.get_indexer(flat), self.concepts.get_indexer(flat))

    @staticmethod
    def _token_parity(n_tokens: np.ndarray) -> np.ndarray:
        """True at the odd positions (labels) of each walk, over all tokens."""
        starts = np.cumsum(n_tokens) - n_tokens
        return (np.arange(int(n_tokens.sum())) - np.repeat(starts, n_tokens)) % 2 == 1

    def score(self, walks: Sequence[Sequence[str]], prompts: Sequence[Prompt]) -> pd.DataFrame:
        """Score ``walks[i]`` against ``prompts[i]``.

        Returns one row per walk: ``valid`` (bool), ``satisfies`` (bool: valid and meets
        x), ``length`` (h), ``surprise`` (S), ``utility``, ``novelty``, ``creativity``.
        A walk with an even number of entries, an unknown concept or label, or a step
        that is not an edge with that label, is invalid.
        """
        if len(walks) != len(prompts):
            raise ValueError(f"{len(walks)} walks but {len(prompts)} prompts")
        if self._names_disjoint:
            # Joint codes go straight to the scorer: it reads labels only at label positions
            # and concepts only at concept positions, so no per-token id conversion is needed.
            n_tokens, codes = self._codes(walks)
            return self._score_tokens(n_tokens, codes, prompts, label_offset=self.n_concepts)
        n_tokens, ids = self._encode(walks)
        return self.score_encoded(n_tokens, ids, prompts)

    def score_encoded(self, n_tokens: np.ndarray, ids: np.ndarray, prompts: Sequence[Prompt]) -> pd.DataFrame:
        """:meth:`score` on walks already encoded as by :meth:`_encode` (all vectorised)."""
        return self._score_tokens(n_tokens, ids, prompts, label_offset=0)

    def _score_tokens(
        self, n_tokens: np.ndarray, tokens: np.ndarray, prompts: Sequence[Prompt], *, label_offset: int
    ) -> pd.DataFrame:
        """The vectorised scorer. A concept is a token in 0..n-1; a label is a token minus
        ``label_offset`` in 0..k-1 (offset 0 for :meth:`_encode`'s ids, n for joint codes)."""
        n_walks = len(n_tokens)
        w = self.weights
        n, k = self.n_concepts, len(self.labels)
        starts = np.cumsum(n_tokens) - n_tokens
        # A step is a label token with a concept after it: walk i has (len - 1) // 2 steps,
        # the j-th with its label at starts[i] + 1 + 2 j. Every token of an odd-length walk
        # with a step is in one, so checking the steps checks every name.
        n_steps = np.maximum(n_tokens - 1, 0) // 2
        step_walk = np.repeat(np.arange(n_walks), n_steps)
        label_pos = np.repeat(starts + 1 - 2 * (np.cumsum(n_steps) - n_steps), n_steps) + 2 * np.arange(step_walk.size)
        a, lab, b = tokens[label_pos - 1], tokens[label_pos] - label_offset, tokens[label_pos + 1]
        # Unsigned views: one comparison checks 0 <= x < bound (negative ids wrap to huge).
        lab_ok = lab.view(np.uint64) < k
        step_ok = (a.view(np.uint64) < n) & (b.view(np.uint64) < n) & lab_ok & (a != b)
        if self._edge_table is not None:
            step_ok &= self._edge_table[np.where(step_ok, a * n + b, 0)] == lab
        elif len(self._keys):
            keys = np.minimum(a, b) * n + np.maximum(a, b)
            where = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            step_ok &= (self._keys[where] == keys) & (self._edge_labels[where] == lab)
        else:
            step_ok[:] = False
        lab = np.where(lab_ok, lab, 0)  # only read where lab_ok, or for an invalid walk
        bad_step = np.bincount(step_walk[~step_ok], minlength=n_walks) > 0
        padded = np.append(tokens, -1)  # sentinel: an empty walk's first/last token reads it
        lone_ok = padded[np.where(n_tokens == 1, starts, -1)].view(np.uint64) < n  # a one-concept walk
        valid = (n_tokens % 2 == 1) & ~bad_step & ((n_steps > 0) | lone_ok)
        length = np.bincount(step_walk, minlength=n_walks)
        surprise_sum = np.bincount(step_walk, weights=self.surprise_of_label[lab], minlength=n_walks)
        surprise = np.divide(surprise_sum, length, out=np.zeros(n_walks), where=length > 0)

        # Constraints of x, encoded once per distinct prompt.
        table, which = self._encode_prompts(prompts)
        p_start, p_end, n_inc, n_exc, inc_ptr, inc_ids, exc_ptr, exc_ids = table
        has = n_tokens > 0
        first = padded[np.where(has, starts, -1)]
        last = padded[np.where(has, starts + n_tokens - 1, -1)]
        endpoints_ok = has & (first == p_start[which]) & (last == p_end[which]) & (p_start[which] >= 0)
        w_inc, w_exc = n_inc[which], n_exc[which]
        if k <= _LABEL_BITMASK_MAX:
            inc_ok, exc_ok = self._constraints_by_bitmask(
                step_walk, lab, lab_ok, n_steps, which, (n_inc, inc_ptr, inc_ids, exc_ptr, exc_ids)
            )
        else:
            used = self._label_presence(step_walk[lab_ok], lab[lab_ok], n_walks, k)
            inc_ok = self._hits(used, which, w_inc, inc_ptr, inc_ids, n_walks, k) == w_inc
            exc_ok = self._hits(used, which, w_exc, exc_ptr, exc_ids, n_walks, k) == 0
        satisfies = valid & endpoints_ok & inc_ok & exc_ok
        scale = (1 + w.alpha_include * w_inc) * (1 + w.alpha_exclude * w_exc)
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
            }
        )

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

    @staticmethod
    def _constraints_by_bitmask(
        step_walk: np.ndarray,
        lab: np.ndarray,
        lab_ok: np.ndarray,
        n_steps: np.ndarray,
        which: np.ndarray,
        prompt_sets: tuple[np.ndarray, ...],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per walk, whether it uses every label of its prompt's I and none of its X: the
        labels a walk uses as one bit mask (OR over its steps, which are contiguous)."""
        n_inc, inc_ptr, inc_ids, exc_ptr, exc_ids = prompt_sets
        n_walks = len(n_steps)
        bits = np.where(lab_ok, np.left_shift(np.int64(1), lab), 0)
        used = np.zeros(n_walks, dtype=np.int64)
        stepped = np.flatnonzero(n_steps > 0)
        if stepped.size:
            step_starts = (np.cumsum(n_steps) - n_steps)[stepped]
            used[stepped] = np.bitwise_or.reduceat(bits, step_starts)

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


def plot_creativity_vs_depth(table: pd.DataFrame):
    """Creativity (with its CI over prompts) against depth, one line per budget."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for budget, rows in table.groupby("budget", sort=True):
        rows = rows.groupby("depth", sort=True)[["creativity", "creativity_ci_low", "creativity_ci_high"]].mean()
        err = np.vstack(
            [rows["creativity"] - rows["creativity_ci_low"], rows["creativity_ci_high"] - rows["creativity"]]
        )
        ax.errorbar(
            rows.index, rows["creativity"], yerr=np.nan_to_num(err), marker="o", capsize=3, label=f"{budget:.2g} FLOPs"
        )
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("creativity E[U·N]")
    ax.set_xscale("log", base=2)
    ax.legend(title="budget", fontsize=8)
    ax.set_title("Creativity against depth at fixed compute")
    fig.tight_layout()
    return fig


def plot_novelty_vs_utility(table: pd.DataFrame):
    """Novelty against mean utility, one point per model and temperature.

    Novelty is the mean over valid walks (``novelty_valid``) when the table has it: E[N]
    over all walks counts invalid walks as 0 and so rises with validity, like utility."""
    import matplotlib.pyplot as plt

    column = "novelty_valid" if "novelty_valid" in table.columns and table["novelty_valid"].notna().any() else "novelty"
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    markers = ["o", "s", "^", "D", "v", "P"]
    for i, (temp, rows) in enumerate(table.groupby("temperature", sort=True)):
        ax.scatter(rows["utility"], rows[column], marker=markers[i % len(markers)], label=f"T={temp:g}", alpha=0.8)
    ax.set_xlabel("utility E[U]")
    ax.set_ylabel("novelty of valid walks E[N | valid]" if column == "novelty_valid" else "novelty E[N]")
    ax.legend(title="temperature", fontsize=8)
    ax.set_title("Novelty against utility (each point: one model)")
    fig.tight_layout()
    return fig


def best_architectures(table: pd.DataFrame) -> pd.DataFrame:
    """Per budget, the depth and width with the highest creativity (at the temperature of the
    table's first row when it has several)."""
    rows = table
    if "temperature" in rows.columns and rows["temperature"].nunique() > 1:
        rows = rows[rows["temperature"] == rows["temperature"].iloc[0]]
    best = rows.loc[rows.groupby("budget")["creativity"].idxmax()]
    return best[
        ["budget", "depth", "width", "params", "creativity", "creativity_ci_low", "creativity_ci_high"]
    ].reset_index(drop=True)


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
