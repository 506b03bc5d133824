"""Creative prompts x = (u, v, I, X) and walks that satisfy them.

A walk satisfies x when it starts at u, ends at v, uses every label of I and no label of X.
Satisfiability is decided by breadth-first search over states (concept, which labels of I
are used so far) in the graph without X-labelled edges; the same state space gives each
state's distance to acceptance, which lets :func:`sample_satisfying_walks` draw random
satisfying walks of a chosen length exactly (no rejection).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.combinatorial import Prompt
from generation.combinatorial.graphs import ConceptGraph


class _StateSpace:
    """States (concept, mask of I used) reachable without X; distance of each state to acceptance."""

    def __init__(self, graph: ConceptGraph, prompt: Prompt):
        self.graph = graph
        idx = graph.label_index
        self.include_ids = [idx[name] for name in prompt.include]
        self.bit = np.zeros(len(graph.labels), dtype=np.int64)
        for i, lab in enumerate(self.include_ids):
            self.bit[lab] = 1 << i
        self.allowed = np.ones(len(graph.labels), dtype=bool)
        self.allowed[[idx[name] for name in prompt.exclude]] = False
        self.full = (1 << len(self.include_ids)) - 1
        self.start = graph.concept_index[prompt.start]
        self.end = graph.concept_index[prompt.end]
        self._to_accept: np.ndarray | None = None

    def distance_to_accept(self) -> np.ndarray:
        """``d[concept, mask]``: fewest steps to (end, full mask); -1 where impossible.

        Backward BFS: a step (w, m) -> (w', m | bit(l)) is an allowed edge labelled l.
        """
        if self._to_accept is not None:
            return self._to_accept
        n, n_masks = self.graph.n_concepts, self.full + 1
        dist = np.full((n, n_masks), -1, dtype=np.int64)
        dist[self.end, self.full] = 0
        queue = deque([(self.end, self.full)])
        while queue:
            w, m = queue.popleft()
            nbrs, labs = self.graph.neighbours(w)
            for prev, lab in zip(nbrs.tolist(), labs.tolist(), strict=True):
                if not self.allowed[lab]:
                    continue
                b = int(self.bit[lab])
                # predecessors (prev, pm) with pm | b == m: pm in {m, m without b} when b is in m
                for pm in {m, m & ~b} if b and m & b else ({m} if not b else set()):
                    if dist[prev, pm] < 0:
                        dist[prev, pm] = dist[w, m] + 1
                        queue.append((prev, pm))
        self._to_accept = dist
        return dist

    def shortest(self) -> int:
        """Length of the shortest satisfying walk, -1 when there is none."""
        return int(self.distance_to_accept()[self.start, 0])


def shortest_satisfying_length(graph: ConceptGraph, prompt: Prompt) -> int:
    """Fewest edges of a walk satisfying ``prompt`` in ``graph``; -1 when unsatisfiable."""
    return _StateSpace(graph, prompt).shortest()


def sample_satisfying_walks(
    graph: ConceptGraph, prompt: Prompt, *, n: int, max_hops: int, rng: np.random.Generator
) -> list[list[str]]:
    """``n`` random walks satisfying ``prompt``, as ``[v0, l1, v1, ..., vh]`` names.

    The length h is drawn uniformly among shortest, shortest + 2, ... <= ``max_hops``; each
    step is drawn uniformly among the moves from which acceptance is still reachable in the
    steps left, so every walk returned satisfies the prompt. Empty when unsatisfiable.
    """
    space = _StateSpace(graph, prompt)
    dist = space.distance_to_accept()
    shortest = int(dist[space.start, 0])
    if shortest < 0 or shortest > max_hops:
        return []
    walks = []
    for _ in range(n):
        # Lengths shortest + 2k are always reachable (step back and forth on an allowed edge).
        h = shortest + 2 * int(rng.integers(0, (max_hops - shortest) // 2 + 1))
        walk = _walk_of_length(space, dist, h, rng)
        assert walk is not None  # noqa: S101 (a length shortest + 2k is always reachable, see above)
        walks.append(walk)
    return walks


def _walk_of_length(space: _StateSpace, dist: np.ndarray, h: int, rng: np.random.Generator) -> list[str] | None:
    g = space.graph
    v, m = space.start, 0
    out = [g.concepts[v]]
    for step in range(h):
        left = h - step - 1
        nbrs, labs = g.neighbours(v)
        ok = space.allowed[labs]
        masks = m | space.bit[labs]
        d = dist[nbrs, masks]
        # Keep moves after which acceptance is reachable in exactly `left` steps: d <= left
        # with even slack (odd slack may need an odd cycle, so it is not offered).
        ok &= (d >= 0) & (d <= left) & ((left - d) % 2 == 0)
        choices = np.flatnonzero(ok)
        if choices.size == 0:
            return None
        pick = int(rng.choice(choices))
        v, m = int(nbrs[pick]), int(masks[pick])
        out += [g.labels[int(labs[pick])], g.concepts[v]]
    return out


def sample_prompts(
    graph: ConceptGraph,
    *,
    n: int,
    distance: tuple[int, int] = (3, 5),
    n_include: int = 1,
    n_exclude: int = 1,
    max_hops: int = 8,
    seed: int = 0,
    id_prefix: str = "p",
    max_tries: int | None = None,
) -> list[Prompt]:
    """``n`` distinct satisfiable prompts of controlled difficulty.

    Difficulty: the graph distance between u and v lies in ``distance`` (inclusive), I has
    ``n_include`` labels and X ``n_exclude`` labels, and a satisfying walk of at most
    ``max_hops`` edges exists (checked by search). Raises ``ValueError`` when ``max_tries``
    draws (default 50 n) do not give ``n`` prompts.
    """
    lo, hi = distance
    if lo < 1 or hi < lo:
        raise ValueError(f"distance range must be 1 <= lo <= hi, got {distance}")
    if n_include + n_exclude > len(graph.labels):
        raise ValueError(f"{n_include} included + {n_exclude} excluded labels but the graph has {len(graph.labels)}")
    rng = np.random.default_rng(seed)
    prompts: list[Prompt] = []
    seen: set[tuple] = set()
    tries = 0
    max_tries = max_tries or 50 * n + 100
    while len(prompts) < n:
        tries += 1
        if tries > max_tries:
            raise ValueError(
                f"found only {len(prompts)} of {n} satisfiable prompts in {max_tries} draws "
                f"(distance {distance}, |I|={n_include}, |X|={n_exclude}, max_hops={max_hops})"
            )
        u = int(rng.integers(graph.n_concepts))
        dist = graph.distances_from(u)
        candidates = np.flatnonzero((dist >= lo) & (dist <= hi))
        if candidates.size == 0:
            continue
        v = int(rng.choice(candidates))
        labels = rng.permutation(len(graph.labels))
        include = tuple(sorted(graph.labels[i] for i in labels[:n_include]))
        exclude = tuple(sorted(graph.labels[i] for i in labels[n_include : n_include + n_exclude]))
        key = (u, v, include, exclude)
        if key in seen:
            continue
        prompt = Prompt(f"{id_prefix}{len(prompts):05d}", graph.concepts[u], graph.concepts[v], include, exclude)
        length = shortest_satisfying_length(graph, prompt)
        if 0 <= length <= max_hops:
            seen.add(key)
            prompts.append(prompt)
    return prompts


@dataclass(frozen=True)
class PromptSplit:
    """Training prompts (their walks are trained on) and held-out prompts (never)."""

    train: tuple[Prompt, ...]
    heldout: tuple[Prompt, ...]


def split_prompts(prompts: Sequence[Prompt], *, heldout_fraction: float = 0.2, seed: int = 0) -> PromptSplit:
    """Seeded split by endpoint pair: all prompts sharing {u, v} go to the same side.

    Every training walk runs between a training prompt's endpoints, so no walk from a
    held-out u to its v (a held-out answer) is ever a training sequence.
    """
    pairs = sorted({frozenset((p.start, p.end)) for p in prompts}, key=sorted)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    n_held = max(1, round(heldout_fraction * len(pairs))) if len(pairs) > 1 else 0
    held_pairs = {pairs[i] for i in order[:n_held]}
    train = tuple(p for p in prompts if frozenset((p.start, p.end)) not in held_pairs)
    held = tuple(p for p in prompts if frozenset((p.start, p.end)) in held_pairs)
    return PromptSplit(train, held)


def write_prompts(prompts: Iterable[Prompt], path: str | Path) -> None:
    """JSONL, one ``{"prompt_id", "start", "end", "include", "exclude"}`` per line."""
    with open(path, "w", encoding="utf-8") as handle:
        for prompt in prompts:
            handle.write(json.dumps(prompt.as_dict()) + "\n")
