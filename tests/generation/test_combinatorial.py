"""Conceptual graphs, prompt sampling, and the small decoders of the combinatorial-creativity task."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from analysis.cli import main as analysis_main
from analysis.combinatorial import Prompt, WalkScorer, label_counts_from_walks
from generation.cli import main as generation_main
from generation.combinatorial.graphs import (
    GraphError,
    graph_from_triples,
    load_triples,
    synthetic_graph,
    wordnet_graph,
)
from generation.combinatorial.lm import (
    WalkTokenizer,
    build_corpus,
    build_model,
    count_params,
    gpt2_config,
    n_params,
    sample_walks,
)
from generation.combinatorial.prompts import (
    sample_prompts,
    sample_satisfying_walks,
    shortest_satisfying_length,
    split_prompts,
)
from generation.combinatorial.scaling import budget_tag, model_name
from generation.combinatorial.train import TrainConfig, lr_at, train

# --- graphs --------------------------------------------------------------------------


def test_synthetic_graph_is_seeded_simple_and_connected():
    a = synthetic_graph(n_concepts=80, n_labels=5, mean_degree=3, seed=3)
    b = synthetic_graph(n_concepts=80, n_labels=5, mean_degree=3, seed=3)
    c = synthetic_graph(n_concepts=80, n_labels=5, mean_degree=3, seed=4)
    assert np.array_equal(a.edges, b.edges) and not np.array_equal(a.edges, c.edges)
    assert a.n_edges == 120
    pairs = {(x, y) for x, _, y in a.edges.tolist()}
    assert len(pairs) == a.n_edges and all(x < y for x, y in pairs)
    assert (a.distances_from(0) >= 0).all()


def test_triples_load_from_csv_and_tsv(tmp_path):
    csv_path = tmp_path / "g.csv"
    csv_path.write_text("head,label,tail\ncat,is_a,animal\ndog,is_a,animal\ncat,chases,mouse\ncat,chases,cat\n")
    tsv_path = tmp_path / "g.tsv"
    tsv_path.write_text("tail\thead\tlabel\nanimal\tcat\tis_a\n")
    graph = load_triples(csv_path)
    assert graph.n_concepts == 4 and graph.n_edges == 3  # the self-loop is dropped
    assert set(graph.labels) == {"is_a", "chases"}
    assert load_triples(tsv_path).triples() == [("cat", "is_a", "animal")]


def test_a_pair_with_two_labels_is_an_error():
    with pytest.raises(GraphError, match="'b' and 'a' are joined by two labels"):
        graph_from_triples([("a", "x", "b"), ("b", "y", "a")])


def test_wordnet_graph_reads_the_debian_database():
    graph = wordnet_graph(max_concepts=400, seed_concept="dog.n.01")
    assert graph.n_concepts == 400
    assert "dog.n.01" in graph.concept_index and "canine.n.01" in graph.concept_index
    assert set(graph.labels) <= {
        "hypernym",
        "instance_hypernym",
        "member_meronym",
        "part_meronym",
        "substance_meronym",
        "antonym",
    }
    dog, canine = graph.concept_index["dog.n.01"], graph.concept_index["canine.n.01"]
    neighbours, labels = graph.neighbours(dog)
    assert graph.labels[int(labels[list(neighbours).index(canine)])] == "hypernym"


# --- prompts -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_graph():
    return synthetic_graph(n_concepts=40, n_labels=4, mean_degree=3, seed=1)


def test_sampled_prompts_are_satisfiable_with_the_difficulty_asked(small_graph):
    prompts = sample_prompts(small_graph, n=40, distance=(2, 4), n_include=2, n_exclude=1, max_hops=7, seed=5)
    assert len({(p.start, p.end, p.include, p.exclude) for p in prompts}) == 40
    scorer = WalkScorer(small_graph.triples())
    rng = np.random.default_rng(0)
    for prompt in prompts:
        d = small_graph.distances_from(small_graph.concept_index[prompt.start])[small_graph.concept_index[prompt.end]]
        assert 2 <= d <= 4
        assert len(prompt.include) == 2 and len(prompt.exclude) == 1 and not set(prompt.include) & set(prompt.exclude)
        assert d <= shortest_satisfying_length(small_graph, prompt) <= 7
        walks = sample_satisfying_walks(small_graph, prompt, n=5, max_hops=7, rng=rng)
        scores = scorer.score(walks, [prompt] * len(walks))
        assert scores["satisfies"].all()  # checked by the independent scorer
        assert scores["length"].max() <= 7


def test_an_unsatisfiable_prompt_is_recognised():
    # a - b - c in a line, all labelled x: excluding x leaves no walk.
    graph = graph_from_triples([("a", "x", "b"), ("b", "x", "c"), ("c", "y", "d")])
    assert shortest_satisfying_length(graph, Prompt("p", "a", "c", (), ("x",))) == -1
    assert shortest_satisfying_length(graph, Prompt("p", "a", "c", ("y",), ())) == 4  # a b c d c
    assert shortest_satisfying_length(graph, Prompt("p", "a", "c", (), ())) == 2


def test_splits_are_seeded_and_keep_held_out_answers_out_of_training(small_graph):
    prompts = sample_prompts(small_graph, n=60, distance=(2, 4), max_hops=6, seed=2)
    split = split_prompts(prompts, heldout_fraction=0.25, seed=9)
    assert split == split_prompts(prompts, heldout_fraction=0.25, seed=9)
    assert split.heldout and split.train and len(split.train) + len(split.heldout) == 60
    held_pairs = {frozenset((p.start, p.end)) for p in split.heldout}
    assert not held_pairs & {frozenset((p.start, p.end)) for p in split.train}
    tokenizer = WalkTokenizer.for_graph(small_graph)
    _, seen = build_corpus(small_graph, tokenizer, split.train, walks_per_prompt=3, max_hops=6)
    assert not any(frozenset((w[0], w[-1])) in held_pairs for w in seen if len(w) > 3)


# --- model, training, sampling -------------------------------------------------------


def test_parameter_count_formula_matches_the_model():
    config = gpt2_config(vocab_size=57, depth=3, width=64)
    assert n_params(build_model(config)) == count_params(vocab_size=57, depth=3, width=64)


def test_learning_rate_warms_up_then_decays_by_cosine():
    config = TrainConfig(max_tokens=1, warmup_fraction=0.1, min_lr_fraction=0.1)
    assert lr_at(0, 100, config) == pytest.approx(0.1)
    assert lr_at(9, 100, config) == pytest.approx(1.0)
    assert lr_at(55, 100, config) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, 100, config) == pytest.approx(0.1)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, small_graph):
    tokenizer = WalkTokenizer.for_graph(small_graph)
    prompts = sample_prompts(small_graph, n=10, distance=(2, 3), max_hops=5, seed=0)
    seqs, _ = build_corpus(small_graph, tokenizer, prompts, walks_per_prompt=2, max_hops=5)
    config = gpt2_config(vocab_size=tokenizer.size, depth=1, width=32)
    settings = TrainConfig(max_tokens=4000, batch_size=16, checkpoint_every=5)
    straight = build_model(config, seed=1)
    full = train(straight, seqs, settings, progress=False)
    killed = build_model(config, seed=1)
    first = train(killed, seqs, settings, checkpoint_dir=tmp_path, progress=False, stop_after=12)
    assert first.steps == 12 < full.steps
    resumed_model = build_model(config, seed=1)  # a fresh process: weights from the checkpoint
    resumed = train(resumed_model, seqs, settings, checkpoint_dir=tmp_path, progress=False)
    assert resumed.resumed_from == 10  # the last checkpoint before the kill
    for a, b in zip(straight.parameters(), resumed_model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"holds another run's checkpoint \(max_tokens 4000 there, 9000 here"):
        train(build_model(config), seqs, TrainConfig(max_tokens=9000, batch_size=16), checkpoint_dir=tmp_path)


def test_sampling_is_seeded_and_greedy_is_deterministic(small_graph):
    tokenizer = WalkTokenizer.for_graph(small_graph)
    prompts = sample_prompts(small_graph, n=3, distance=(2, 3), max_hops=5, seed=0)
    model = build_model(gpt2_config(vocab_size=tokenizer.size, depth=1, width=32), seed=0)
    a = sample_walks(model, tokenizer, prompts, n_samples=2, temperature=1.0, top_p=0.9, seed=4, max_hops=3)
    b = sample_walks(model, tokenizer, prompts, n_samples=2, temperature=1.0, top_p=0.9, seed=4, max_hops=3)
    assert a == b and [pid for pid, _ in a] == [p.prompt_id for p in prompts for _ in range(2)]
    assert all(len(walk) <= 2 * 3 + 2 for _, walk in a)
    g1 = sample_walks(model, tokenizer, prompts, temperature=0, seed=1, max_hops=3)
    g2 = sample_walks(model, tokenizer, prompts, temperature=0, seed=2, max_hops=3)
    assert g1 == g2


@pytest.mark.slow
def test_a_tiny_model_learns_valid_walks_within_a_minute():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU time below is one core's; two threads on a shared box only contend
    graph = synthetic_graph(n_concepts=30, n_labels=4, mean_degree=2.5, seed=0)
    prompts = sample_prompts(graph, n=150, distance=(2, 3), n_include=1, n_exclude=0, max_hops=5, seed=0)
    split = split_prompts(prompts, heldout_fraction=0.2, seed=0)
    tokenizer = WalkTokenizer.for_graph(graph)
    seqs, seen = build_corpus(graph, tokenizer, split.train, walks_per_prompt=4, max_hops=5)
    model = build_model(gpt2_config(vocab_size=tokenizer.size, depth=2, width=64), seed=0)
    started = time.process_time()
    try:
        train(model, seqs, TrainConfig(max_tokens=250_000, batch_size=32, lr=5e-3), progress=False)
    finally:
        torch.set_num_threads(threads)
    cpu_seconds = time.process_time() - started
    assert cpu_seconds < 60, "training took more than a minute of CPU time"
    samples = sample_walks(model, tokenizer, list(split.heldout), n_samples=4, temperature=1.0, seed=0, max_hops=8)
    by_id = {p.prompt_id: p for p in split.heldout}
    scorer = WalkScorer(graph.triples(), train_label_counts=label_counts_from_walks(seen))
    model_scores = scorer.score([w for _, w in samples], [by_id[i] for i, _ in samples])
    # Baseline: random walks of the model's lengths over the same symbols (what an untrained
    # decoder emits): concept, label, concept, ... drawn uniformly.
    rng = np.random.default_rng(0)
    baseline = []
    for pid, walk in samples:
        h = max(1, (len(walk) - 1) // 2)
        tokens = [by_id[pid].start]
        for _ in range(h):
            tokens += [graph.labels[rng.integers(len(graph.labels))], graph.concepts[rng.integers(graph.n_concepts)]]
        baseline.append(tokens)
    base_scores = scorer.score(baseline, [by_id[i] for i, _ in samples])
    valid, base_valid = model_scores["valid"].mean(), base_scores["valid"].mean()
    satisfying = model_scores["satisfies"].mean()
    print(f"{cpu_seconds:.0f} s CPU; valid: model {valid:.2f}, random {base_valid:.3f}; satisfying {satisfying:.2f}")
    assert valid >= 0.3
    assert valid >= 10 * max(base_valid, 0.01)


def test_run_folders_carry_the_exact_budget():
    names = {model_name(b, 4, 144, 0) for b in (1e10, 1.2e10, 1e12, 1.2e12, 12345678901.0)}
    assert len(names) == 5 and "b1.2e10_L4_W144_s0" in names and "b1e12_L4_W144_s0" in names
    for budget in (1e10, 1.2e10, 4e11, 12345678901.0, 3.3e15):
        assert float(budget_tag(budget)) == budget


TINY_GRID = [
    "cc-scaling", "--concepts", "30", "--labels", "4", "--depths", "1,2", "--params", "3e4",
    "--budgets", "2e9", "--temperatures", "1.0", "--prompts", "24", "--distance", "2,3",
    "--max-hops", "5", "--samples", "2", "--seeds", "2", "--include", "0,1", "--exclude", "1", "--quiet",
]  # fmt: skip


def test_cc_scaling_trains_each_model_once_per_seed_and_scores_every_level(tmp_path):
    import pandas as pd

    out = tmp_path / "run"
    assert generation_main([*TINY_GRID, "--out", str(out)]) == 0
    table = pd.read_csv(out / "scaling.csv")
    # 2 depths x 2 seeds, each scored at 2 levels (|I| 0 or 1, |X| 1) and 1 temperature
    assert len(table) == 8 and set(table["seed"]) == {0, 1} and set(table["depth"]) == {1, 2}
    assert set(zip(table["include"], table["exclude"], strict=True)) == {(0, 1), (1, 1)}
    for col in ("params", "loss", "valid", "utility", "novelty", "creativity", "creativity_ci_low", "n_prompts"):
        assert table[col].notna().all(), col
    error_shares = table[[c for c in table.columns if c.startswith("error_")]].sum(axis=1)
    assert ((error_shares > 0) & (error_shares <= 1 + 1e-9)).all()  # tiny models fail most walks
    losses = table.drop_duplicates(["depth", "seed"]).set_index(["depth", "seed"])["loss"]
    assert losses[(1, 0)] != losses[(1, 1)]  # another seed is another model
    prompts = pd.read_csv(out / "prompt_scores.csv")
    heldout = [json.loads(line) for line in (out / "prompts_heldout.jsonl").read_text().splitlines()]
    assert len(prompts) == 4 * len(heldout)  # every held-out prompt of every level, per model
    assert {(len(p["include"]), len(p["exclude"])) for p in heldout} == {(0, 1), (1, 1)}
    trained = map(json.loads, (out / "prompts_train.jsonl").read_text().splitlines())
    train_pairs = {frozenset((p["start"], p["end"])) for p in trained}
    assert not train_pairs & {frozenset((p["start"], p["end"])) for p in heldout}
    failures = prompts[[c for c in prompts.columns if c.startswith("n_") and c != "n_valid"]].sum(axis=1)
    assert np.allclose(failures, prompts["n"] * (1 - prompts["satisfies"]))  # each failing walk has one error
    assert {p.name for p in (out / "checkpoints").iterdir()} == {
        f"b2e9_L{d}_W{w}_s{s}" for d, w in ((1, 48), (2, 32)) for s in (0, 1)
    }
    # a second run finds everything done and trains nothing
    assert generation_main([*TINY_GRID, "--out", str(out)]) == 0
    assert len(pd.read_csv(out / "scaling.csv")) == 8
    # and cc-report reads the run: both depths over both seeds
    report = ["cc-report", "--table", str(out / "scaling.csv"), "--out", str(out / "report"), "--n-boot", "50"]
    assert analysis_main(report) == 0
    summary = pd.read_csv(out / "report" / "summary.csv")
    assert summary["n_seeds"].tolist() == [2, 2] and summary["depth"].tolist() == [1, 2]
    assert len(pd.read_csv(out / "report" / "tradeoff.csv")) == 4  # 2 depths x 2 levels


def test_a_run_folder_of_another_task_is_refused_with_what_differs(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*TINY_GRID[:-7], "--depths", "1", "--seeds", "1", "--quiet", "--out", str(out)]
    assert generation_main(argv) == 0
    capsys.readouterr()
    other = [*argv[:-2], "--distance", "2,4", "--out", str(out)]
    assert generation_main(other) == 2
    err = capsys.readouterr().err
    assert f"{out} holds another run (its run.json differs in: distance)" in err and err.count("\n") == 1
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "scaling.csv").write_text("budget,depth\n")
    assert generation_main([*argv[:-2], "--out", str(legacy)]) == 2
    assert "holds a run without run.json" in capsys.readouterr().err
    assert generation_main(["cc-scaling", "--distance", "3,1", "--out", str(out)]) == 2
    assert "--distance must be LO,HI" in capsys.readouterr().err
