"""Conceptual spaces: simple undirected labelled graphs G = (V, E, Sigma).

Three sources: a seeded synthetic generator (:func:`synthetic_graph`), a researcher's own
``head,label,tail`` triples (:func:`load_triples`), and WordNet 3.0 read from the Debian
``wordnet-base`` database files (:func:`wordnet_graph`). Every source ends in the same
:class:`ConceptGraph`: concept and label names plus an ``(m, 3)`` integer edge array.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from pathlib import Path

import numpy as np

from analysis.combinatorial import read_triples

WORDNET_DIR = Path("/usr/share/wordnet")

# WordNet pointer symbols kept as labels. The graph is undirected, so of each pair of
# inverse pointers (hypernym/hyponym, meronym/holonym) only one direction is read; the
# other would be the same edge.
WORDNET_RELATIONS: dict[str, str] = {
    "@": "hypernym",
    "@i": "instance_hypernym",
    "%m": "member_meronym",
    "%s": "substance_meronym",
    "%p": "part_meronym",
    "!": "antonym",
    "=": "attribute",
    "&": "similar_to",
    "*": "entailment",
    ">": "cause",
    "$": "verb_group",
    "+": "derivation",
    ";c": "domain_topic",
    "^": "also_see",
}
DEFAULT_WORDNET_RELATIONS = (
    "hypernym",
    "instance_hypernym",
    "member_meronym",
    "part_meronym",
    "substance_meronym",
    "antonym",
)
_WORDNET_POS_FILES = {"noun": "data.noun", "verb": "data.verb", "adj": "data.adj", "adv": "data.adv"}


class GraphError(ValueError):
    """A conceptual graph that cannot be built from what was given (one line, names the source)."""


@dataclass(frozen=True)
class ConceptGraph:
    """A simple undirected labelled graph.

    ``edges[i] = (a, label, b)`` with concept ids ``a < b`` (one edge per unordered pair, no
    loops); ``concepts[a]`` and ``labels[label]`` are the names.
    """

    concepts: tuple[str, ...]
    labels: tuple[str, ...]
    edges: np.ndarray = field(repr=False)

    @property
    def n_concepts(self) -> int:
        return len(self.concepts)

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    @cached_property
    def concept_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.concepts)}

    @cached_property
    def label_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    @cached_property
    def adjacency(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR adjacency in both directions: ``(indptr, neighbours, labels)``."""
        a, lab, b = self.edges[:, 0], self.edges[:, 1], self.edges[:, 2]
        src = np.concatenate([a, b])
        dst = np.concatenate([b, a])
        labs = np.concatenate([lab, lab])
        order = np.lexsort((dst, src))
        indptr = np.zeros(self.n_concepts + 1, dtype=np.int64)
        np.add.at(indptr, src + 1, 1)
        return np.cumsum(indptr), dst[order], labs[order]

    def neighbours(self, concept: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour ids and edge label ids of one concept."""
        indptr, dst, labs = self.adjacency
        lo, hi = indptr[concept], indptr[concept + 1]
        return dst[lo:hi], labs[lo:hi]

    def distances_from(self, concept: int) -> np.ndarray:
        """Hop distance from ``concept`` to every concept (-1 where unreachable), by BFS."""
        indptr, dst, _ = self.adjacency
        dist = np.full(self.n_concepts, -1, dtype=np.int64)
        dist[concept] = 0
        frontier = np.array([concept])
        d = 0
        while frontier.size:
            d += 1
            nxt = np.concatenate([dst[indptr[v] : indptr[v + 1]] for v in frontier]) if frontier.size else frontier
            nxt = np.unique(nxt)
            nxt = nxt[dist[nxt] < 0]
            dist[nxt] = d
            frontier = nxt
        return dist

    def triples(self) -> list[tuple[str, str, str]]:
        """The edges as ``(head, label, tail)`` names, head the lower id."""
        return [(self.concepts[a], self.labels[lab], self.concepts[b]) for a, lab, b in self.edges.tolist()]

    def subgraph_triples(self, concepts: Iterable[int]) -> list[tuple[str, str, str]]:
        """The edges among ``concepts`` (ids), as name triples."""
        keep = np.zeros(self.n_concepts, dtype=bool)
        keep[list(concepts)] = True
        rows = self.edges[keep[self.edges[:, 0]] & keep[self.edges[:, 2]]]
        return [(self.concepts[a], self.labels[lab], self.concepts[b]) for a, lab, b in rows.tolist()]

    def write_triples(self, path: str | Path) -> None:
        """Write ``head,label,tail`` CSV (the format of :func:`load_triples` and ``cc-score --graph``)."""
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["head", "label", "tail"])
            writer.writerows(self.triples())


def graph_from_triples(triples: Iterable[Sequence[str]], *, source: str = "<triples>") -> ConceptGraph:
    """Build a :class:`ConceptGraph` from ``(head, label, tail)`` name triples.

    Self-loops are dropped (the graph is simple). A pair given twice with the same label
    counts once; a pair given with two different labels is an error naming both, since a
    simple graph has one edge, hence one label, per pair.
    """
    concepts: dict[str, int] = {}
    labels: dict[str, int] = {}
    pairs: dict[tuple[int, int], int] = {}
    for head, label, tail in triples:
        if head == tail:
            continue
        a = concepts.setdefault(head, len(concepts))
        b = concepts.setdefault(tail, len(concepts))
        lab = labels.setdefault(label, len(labels))
        key = (min(a, b), max(a, b))
        old = pairs.setdefault(key, lab)
        if old != lab:
            names = list(labels)
            raise GraphError(
                f"{source}: {head!r} and {tail!r} are joined by two labels ({names[old]!r}, {label!r}); "
                "a simple graph has one label per pair"
            )
    if not pairs:
        raise GraphError(f"{source}: no edges")
    edges = np.array([(a, lab, b) for (a, b), lab in pairs.items()], dtype=np.int64)
    return ConceptGraph(tuple(concepts), tuple(labels), edges)


def load_triples(path: str | Path) -> ConceptGraph:
    """Load a researcher's graph: CSV (TSV for ``.tsv``) with a header ``head,label,tail``.

    Raises ``ValueError`` (one line naming the file and line) for a missing header column
    or a short row, and ``FileNotFoundError`` for a missing file.
    """
    return graph_from_triples(read_triples(path), source=str(path))


def synthetic_graph(
    *,
    n_concepts: int = 500,
    n_labels: int = 8,
    mean_degree: float = 4.0,
    n_communities: int = 5,
    p_within: float = 0.8,
    label_skew: float = 1.0,
    seed: int = 0,
) -> ConceptGraph:
    """A seeded synthetic conceptual space with community structure.

    Concepts are split round-robin into ``n_communities``; about ``n_concepts * mean_degree
    / 2`` edges are drawn, each inside one community with probability ``p_within`` and
    between two otherwise. A spanning path through all concepts in random order is laid
    first so the graph is connected (every pair of concepts has some walk). Labels follow
    a Zipf law with exponent ``label_skew`` (0: uniform), so some relations are rare, which
    is what the label-surprise term of novelty measures. Concept names are ``c0000``...,
    label names ``r0``... .
    """
    if n_concepts < 2 or n_labels < 1 or mean_degree < 1 or n_communities < 1 or not 0 <= p_within <= 1:
        raise GraphError("synthetic graph needs n_concepts >= 2, n_labels >= 1, mean_degree >= 1, n_communities >= 1")
    rng = np.random.default_rng(seed)
    community = np.arange(n_concepts) % n_communities
    members = [np.flatnonzero(community == c) for c in range(n_communities)]
    target = round(n_concepts * mean_degree / 2)
    order = rng.permutation(n_concepts)
    pairs = {(int(min(a, b)), int(max(a, b))) for a, b in pairwise(order)}
    max_pairs = n_concepts * (n_concepts - 1) // 2
    target = min(target, max_pairs)
    while len(pairs) < target:
        n_draw = 2 * (target - len(pairs)) + 16
        a = rng.integers(0, n_concepts, n_draw)
        within = rng.random(n_draw) < p_within
        other = rng.integers(0, n_concepts, n_draw)
        same = np.array([rng.choice(members[community[x]]) for x in a[within]], dtype=np.int64)
        b = other.copy()
        b[within] = same
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if x != y:
                pairs.add((min(x, y), max(x, y)))
                if len(pairs) >= target:
                    break
    weights = 1.0 / np.arange(1, n_labels + 1) ** label_skew
    edge_pairs = np.array(sorted(pairs), dtype=np.int64)
    labs = rng.choice(n_labels, size=len(edge_pairs), p=weights / weights.sum())
    edges = np.column_stack([edge_pairs[:, 0], labs, edge_pairs[:, 1]])
    width = len(str(n_concepts - 1))
    return ConceptGraph(
        tuple(f"c{i:0{width}d}" for i in range(n_concepts)), tuple(f"r{i}" for i in range(n_labels)), edges
    )


def wordnet_graph(
    *,
    root: str | Path = WORDNET_DIR,
    parts_of_speech: Sequence[str] = ("noun",),
    relations: Sequence[str] = DEFAULT_WORDNET_RELATIONS,
    max_concepts: int | None = None,
    seed_concept: str | None = None,
) -> ConceptGraph:
    """WordNet 3.0 as a conceptual graph, read from the database files of ``wordnet-base``.

    A concept is a synset, named by its first lemma plus ``.n.NN`` (``.v.``, ``.a.``,
    ``.r.``), numbered in the order the synsets appear in the file (NLTK's names look the
    same but number senses by frequency, so a number can differ: ``canine.n.01`` here is
    the animal). A label is
    a pointer type (``hypernym``, ``part_meronym``, ``antonym``, ...: see
    :data:`WORDNET_RELATIONS`). Lexical pointers (antonyms) are lifted to their synsets. Where
    two synsets are joined by several pointers, the first in ``relations`` order is kept.

    ``max_concepts`` keeps the connected neighbourhood (breadth-first) of ``seed_concept``
    (default: the first synset) up to that many concepts: the full noun graph has 82k
    concepts, too many for a CPU model.
    """
    root = Path(root)
    unknown = [r for r in relations if r not in WORDNET_RELATIONS.values()]
    if unknown:
        raise GraphError(
            f"unknown WordNet relation(s) {', '.join(unknown)}; known: {', '.join(WORDNET_RELATIONS.values())}"
        )
    priority = {name: i for i, name in enumerate(relations)}
    names: dict[tuple[str, int], str] = {}
    lemma_counts: dict[tuple[str, str], int] = {}
    raw_edges: list[tuple[tuple[str, int], str, tuple[str, int]]] = []
    for pos in parts_of_speech:
        if pos not in _WORDNET_POS_FILES:
            raise GraphError(f"unknown part of speech {pos!r}; known: {', '.join(_WORDNET_POS_FILES)}")
        path = root / _WORDNET_POS_FILES[pos]
        if not path.exists():
            raise FileNotFoundError(f"WordNet file {path} not found: install the Debian package wordnet-base")
        _read_wordnet_file(path, priority, names, lemma_counts, raw_edges)
    raw_edges.sort(key=lambda e: priority[e[1]])
    triples = [(names[a], rel, names[b]) for a, rel, b in raw_edges if a in names and b in names]
    graph = graph_from_triples(_first_edge_per_pair(triples), source=str(root))
    if max_concepts is None or max_concepts >= graph.n_concepts:
        return graph
    start = graph.concept_index.get(seed_concept, 0) if seed_concept else 0
    if seed_concept and seed_concept not in graph.concept_index:
        raise GraphError(f"WordNet has no concept {seed_concept!r} (names look like dog.n.01)")
    keep = _bfs_prefix(graph, start, max_concepts)
    return graph_from_triples(graph.subgraph_triples(keep), source=str(root))


def _read_wordnet_file(
    path: Path,
    priority: Mapping[str, int],
    names: dict[tuple[str, int], str],
    lemma_counts: dict[tuple[str, str], int],
    raw_edges: list[tuple[tuple[str, int], str, tuple[str, int]]],
) -> None:
    """One ``data.*`` file: each synset's name into ``names`` (senses numbered per lemma in
    file order, counted in ``lemma_counts``) and its pointers of a kept relation into
    ``raw_edges`` as ((tag, offset), relation, (tag, offset))."""
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            if line.startswith(" "):  # the licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            offset, ss_type = int(fields[0]), fields[2]
            tag = "a" if ss_type == "s" else ss_type
            n_words = int(fields[3], 16)
            lemma = fields[4].lower()
            sense = lemma_counts.get((lemma, tag), 0) + 1
            lemma_counts[(lemma, tag)] = sense
            key = (tag, offset)
            names[key] = f"{lemma}.{tag}.{sense:02d}"
            i = 4 + 2 * n_words
            for p in range(int(fields[i])):
                symbol, target, target_pos = fields[i + 1 + 4 * p : i + 4 + 4 * p]
                relation = WORDNET_RELATIONS.get(symbol)
                if relation is not None and relation in priority:
                    target_tag = "a" if target_pos == "s" else target_pos
                    raw_edges.append((key, relation, (target_tag, int(target))))


def _first_edge_per_pair(triples: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The first triple of each unordered pair of concepts, loops dropped: a simple graph."""
    seen: set[frozenset[str]] = set()
    unique = []
    for head, rel, tail in triples:
        pair = frozenset((head, tail))
        if head != tail and pair not in seen:
            seen.add(pair)
            unique.append((head, rel, tail))
    return unique


def _bfs_prefix(graph: ConceptGraph, start: int, limit: int) -> list[int]:
    seen = {start}
    order = [start]
    queue = deque([start])
    while queue and len(order) < limit:
        v = queue.popleft()
        for w in graph.neighbours(v)[0].tolist():
            if w not in seen:
                seen.add(w)
                order.append(w)
                queue.append(w)
                if len(order) >= limit:
                    break
    return order
