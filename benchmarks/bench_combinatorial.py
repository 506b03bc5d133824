"""Benchmark the combinatorial-creativity task: walk scoring and decoder training.

1. Scoring: ``analysis.combinatorial.WalkScorer`` against a straightforward networkx
   implementation written here (one walk at a time: ``G.has_edge``, the edge's label, the
   set of labels, the same formulas). Both score the same walks on a synthetic graph; the
   scores are checked equal, then walks/s are compared: from names (what ``cc-score``
   reads; one C-level dict look-up per token bounds it) and from token ids (the
   vectorised core, what a sampler that emits ids can feed it).
2. Training: tokens/s of ``generation.combinatorial.train.train`` against transformers'
   ``Trainer`` on the same model, data, batch size and optimiser (AdamW, warm-up + cosine),
   interleaved in rounds so load on the machine hits both alike.

Run::

    .venv/bin/python benchmarks/bench_combinatorial.py --out benchmarks/results/combinatorial.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.combinatorial import Prompt, WalkScorer


def networkx_scores(graph, walks, prompts, label_counts) -> list[tuple[bool, float, float]]:
    """The straightforward way: a networkx graph, one walk at a time."""
    total = sum(label_counts.values())
    out = []
    for walk, prompt in zip(walks, prompts, strict=True):
        valid = len(walk) % 2 == 1
        labels_used = []
        for t in range(1, len(walk) - 1, 2):
            a, lab, b = walk[t - 1], walk[t], walk[t + 1]
            if not graph.has_edge(a, b) or graph.edges[a, b]["label"] != lab:
                valid = False
            labels_used.append(lab)
        if not valid:
            out.append((False, 0.0, 0.0))
            continue
        h = len(labels_used)
        surprise = sum(-math.log(label_counts[lab] / total) for lab in labels_used) / h if h else 0.0
        novelty = h + surprise
        used = set(labels_used)
        ok = walk[0] == prompt.start and walk[-1] == prompt.end
        ok = ok and set(prompt.include) <= used and not set(prompt.exclude) & used
        utility = (1 + len(prompt.include)) * (1 + len(prompt.exclude)) if ok else 0.0
        out.append((True, float(utility), float(novelty)))
    return out


def bench_scoring(n_walks: int, rounds: int) -> dict:
    import networkx as nx

    from generation.combinatorial.graphs import synthetic_graph
    from generation.combinatorial.prompts import sample_prompts, sample_satisfying_walks

    graph = synthetic_graph(n_concepts=2000, n_labels=12, mean_degree=4, seed=0)
    prompts = sample_prompts(graph, n=50, distance=(3, 5), n_include=2, n_exclude=1, max_hops=10, seed=0)
    rng = np.random.default_rng(0)
    walks, walk_prompts = [], []
    # As cc-score reads them: one Prompt object per prompt, shared by its walks.
    shared = {p.prompt_id: Prompt(p.prompt_id, p.start, p.end, p.include, p.exclude) for p in prompts}
    pool = [(p, w) for p in prompts for w in sample_satisfying_walks(graph, p, n=20, max_hops=10, rng=rng)]
    for i in range(n_walks):
        p, w = pool[i % len(pool)]
        w = list(w)
        if i % 3 == 1:  # a third break a step: invalid walks cost the same to check
            w[1] = graph.labels[(graph.label_index[w[1]] + 1) % len(graph.labels)]
        walks.append(w)
        walk_prompts.append(shared[p.prompt_id])
    triples = graph.triples()
    counts = {lab: 0 for lab in graph.labels}
    for _, lab, _ in triples:
        counts[lab] += 1
    G = nx.Graph()
    G.add_edges_from((h, t, {"label": lab}) for h, lab, t in triples)
    scorer = WalkScorer(triples)
    n_nx = min(n_walks, 100_000)
    fast_times, id_times, nx_times, name_pass_times = [], [], [], []
    n_tokens, ids = scorer.encode(walks)
    for _ in range(rounds):
        start = time.perf_counter()
        scores = scorer.score(walks, walk_prompts)
        fast_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        from_ids = scorer.score_encoded(n_tokens, ids, walk_prompts)
        id_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        scorer._codes(walks)  # the name-to-code pass alone: a ceiling for scoring from names
        name_pass_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = networkx_scores(G, walks[:n_nx], walk_prompts[:n_nx], counts)
        nx_times.append(time.perf_counter() - start)
    ref = np.array([(v, u, n) for v, u, n in reference], dtype=float)
    head = scores.iloc[:n_nx]
    # The speed ratio means nothing unless both sides computed the same scores.
    agree = (
        np.array_equal(head["valid"].to_numpy(float), ref[:, 0])
        and np.allclose(head["utility"].to_numpy(), ref[:, 1])
        and np.allclose(head["novelty"].to_numpy(), ref[:, 2])
        and from_ids.equals(scores)
    )
    if not agree:
        raise SystemExit("the vectorised scorer and the networkx reference disagree: no timing reported")
    fast = n_walks / statistics.median(fast_times)
    fast_ids = n_walks / statistics.median(id_times)
    slow = n_nx / statistics.median(nx_times)
    return {
        "walks": n_walks,
        "networkx_walks": n_nx,
        "mean_steps": float(np.mean([(len(w) - 1) // 2 for w in walks])),
        "walks_per_s": fast,
        "walks_per_min": fast * 60,
        "networkx_walks_per_s": slow,
        "ratio": fast / slow,
        "from_ids_walks_per_s": fast_ids,
        "from_ids_ratio": fast_ids / slow,
        "name_pass_alone_walks_per_s": n_walks / statistics.median(name_pass_times),
        "name_pass_alone_ratio": n_walks / statistics.median(name_pass_times) / slow,
        "scores_equal": True,
    }


def bench_training(rounds: int, steps: int, threads: int) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from generation.combinatorial.graphs import synthetic_graph
    from generation.combinatorial.lm import PAD, WalkTokenizer, build_corpus, build_model, gpt2_config, pad_batch
    from generation.combinatorial.prompts import sample_prompts
    from generation.combinatorial.train import TrainConfig, train

    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    graph = synthetic_graph(n_concepts=100, n_labels=6, mean_degree=3, seed=0)
    prompts = sample_prompts(graph, n=300, distance=(2, 4), max_hops=6, seed=0)
    tokenizer = WalkTokenizer.for_graph(graph)
    seqs, _ = build_corpus(graph, tokenizer, prompts, walks_per_prompt=4, max_hops=6)
    config = gpt2_config(vocab_size=tokenizer.size, depth=4, width=144)
    batch = 64
    mean_len = float(np.mean([len(s) for s in seqs]))
    tokens = int(steps * batch * mean_len)

    class Walks(torch.utils.data.Dataset):
        def __init__(self):
            self.data = pad_batch(seqs)

        def __len__(self):
            return len(self.data)

        def __getitem__(self, i):
            row = self.data[i]
            labels = row.clone()
            labels[labels == PAD] = -100
            return {"input_ids": row, "labels": labels}

    def collate(rows):
        ids = torch.stack([r["input_ids"] for r in rows])
        labels = torch.stack([r["labels"] for r in rows])
        width = int((ids != PAD).sum(1).max())  # the same trimming the loop does
        return {"input_ids": ids[:, :width], "labels": labels[:, :width]}

    ours, theirs = [], []
    for r in range(rounds):
        model = build_model(config, seed=r)
        result = train(model, seqs, TrainConfig(max_tokens=tokens, batch_size=batch, seed=r), progress=False)
        ours.append(result.steps * batch * mean_len / result.seconds)
        model = build_model(config, seed=r)
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(
                output_dir=tmp,
                per_device_train_batch_size=batch,
                max_steps=result.steps,
                learning_rate=3e-3,
                weight_decay=0.1,
                warmup_steps=max(1, int(0.05 * result.steps)),
                lr_scheduler_type="cosine",
                adam_beta2=0.98,
                max_grad_norm=1.0,
                logging_strategy="no",
                save_strategy="no",
                report_to=[],
                disable_tqdm=True,
                use_cpu=True,
                dataloader_num_workers=0,
                seed=r,
            )
            trainer = Trainer(model=model, args=args, train_dataset=Walks(), data_collator=collate)
            start = time.perf_counter()
            trainer.train()
            theirs.append(result.steps * batch * mean_len / (time.perf_counter() - start))
    return {
        "model": f"GPT-2 depth 4 width 144 ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params)",
        "batch": batch,
        "steps": steps,
        "threads": threads,
        "loop_tokens_per_s": statistics.median(ours),
        "trainer_tokens_per_s": statistics.median(theirs),
        "ratio": statistics.median(ours) / statistics.median(theirs),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--walks", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = {"scoring": bench_scoring(args.walks, args.rounds)}
    print(json.dumps(results["scoring"], indent=2), flush=True)
    results["training"] = bench_training(args.rounds, args.train_steps, args.threads)
    print(json.dumps(results["training"], indent=2), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
