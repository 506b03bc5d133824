"""Benchmark the combinatorial-creativity task: walk scoring and decoder training.

1. Scoring: ``analysis.combinatorial.WalkScorer`` against a straightforward networkx
   implementation written here (one walk at a time: ``G.has_edge``, the edge's label, the
   set of labels, the same formulas, the same reason for each failing walk). Both score
   the same walks on a synthetic graph; the scores and reasons are checked equal, then
   walks/s are compared: from names (what ``cc-score``
   reads; one C-level dict look-up per token bounds it) and from token codes (the
   vectorised core, what a sampler that emits ids can feed it). Wall and CPU time are
   both recorded; on a shared machine the CPU time is the steadier of the two.
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


def networkx_scores(graph, walks, prompts, label_counts) -> list[tuple[bool, float, float, str | None]]:
    """The straightforward way: a networkx graph, one walk at a time; the same outputs as
    ``WalkScorer.score`` (validity, utility, novelty, and why the walk fails)."""
    total = sum(label_counts.values())
    out: list[tuple[bool, float, float, str | None]] = []
    for walk, prompt in zip(walks, prompts, strict=True):
        unknown = len(walk) % 2 == 0 or not all(graph.has_node(c) for c in walk[0::2])
        no_edge = wrong_label = False
        labels_used = []
        for t in range(1, len(walk) - 1, 2):
            a, lab, b = walk[t - 1], walk[t], walk[t + 1]
            if not graph.has_edge(a, b) or a == b:
                no_edge = True
            elif graph.edges[a, b]["label"] != lab:
                wrong_label = True
            labels_used.append(lab)
        error = "unknown_concept" if unknown else "not_an_edge" if no_edge else "wrong_label" if wrong_label else None
        if error is not None:
            out.append((False, 0.0, 0.0, error))
            continue
        h = len(labels_used)
        surprise = sum(-math.log(label_counts[lab] / total) for lab in labels_used) / h if h else 0.0
        novelty = h + surprise
        used = set(labels_used)
        checks = (
            ("wrong_start", walk[0] == prompt.start),
            ("wrong_end", walk[-1] == prompt.end),
            ("missing_inclusion", set(prompt.include) <= used),
            ("used_exclusion", not set(prompt.exclude) & used),
        )
        error = next((name for name, ok in checks if not ok), None)
        utility = (1 + len(prompt.include)) * (1 + len(prompt.exclude)) if error is None else 0.0
        out.append((True, float(utility), float(novelty), error))
    return out


def scoring_workload(n_walks: int):
    """The benchmark's walks: a 2,000-concept graph with 12 labels, 50 prompts, satisfying
    walks of each, a third with a broken step (invalid walks cost the same to check).

    Returns the triples, the walks, each walk's prompt (as ``cc-score`` reads them: one
    Prompt object per prompt, shared by its walks) and the graph's label counts."""
    from generation.combinatorial.graphs import synthetic_graph
    from generation.combinatorial.prompts import sample_prompts, sample_satisfying_walks

    graph = synthetic_graph(n_concepts=2000, n_labels=12, mean_degree=4, seed=0)
    prompts = sample_prompts(graph, n=50, distance=(3, 5), n_include=2, n_exclude=1, max_hops=10, seed=0)
    rng = np.random.default_rng(0)
    walks, walk_prompts = [], []
    shared = {p.prompt_id: Prompt(p.prompt_id, p.start, p.end, p.include, p.exclude) for p in prompts}
    pool = [(p, w) for p in prompts for w in sample_satisfying_walks(graph, p, n=20, max_hops=10, rng=rng)]
    for i in range(n_walks):
        p, w = pool[i % len(pool)]
        w = list(w)
        if i % 3 == 1:
            w[1] = graph.labels[(graph.label_index[w[1]] + 1) % len(graph.labels)]
        walks.append(w)
        walk_prompts.append(shared[p.prompt_id])
    triples = graph.triples()
    counts = {lab: 0 for lab in graph.labels}
    for _, lab, _ in triples:
        counts[lab] += 1
    return triples, walks, walk_prompts, counts


def timed(call) -> tuple[object, float, float]:
    """``call()``'s result, wall seconds and CPU seconds of this process (on a shared
    machine the CPU time is the steadier measure: waiting for a core is not counted)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_scoring(n_walks: int, rounds: int) -> dict:
    import networkx as nx

    triples, walks, walk_prompts, counts = scoring_workload(n_walks)
    G = nx.Graph()
    G.add_edges_from((h, t, {"label": lab}) for h, lab, t in triples)
    scorer = WalkScorer(triples)
    n_nx = min(n_walks, 100_000)
    n_tokens, codes = scorer.encode(walks)
    calls = {
        "names": lambda: scorer.score(walks, walk_prompts),
        "codes": lambda: scorer.score_encoded(n_tokens, codes, walk_prompts),
        "name_pass": lambda: scorer.encode(walks),  # names to codes alone: a ceiling from names
        "networkx": lambda: networkx_scores(G, walks[:n_nx], walk_prompts[:n_nx], counts),
    }
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    results = {}
    for _ in range(rounds):  # interleaved, so load on the machine hits every side alike
        for name, call in calls.items():
            results[name], seconds, cpu_seconds = timed(call)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    check_scores_agree(results["names"], results["codes"], results["networkx"])
    out = {"walks": n_walks, "networkx_walks": n_nx, "mean_steps": float(np.mean([(len(w) - 1) // 2 for w in walks]))}
    for clock, times in (("", wall), ("cpu_", cpu)):
        per_s = {name: (n_nx if name == "networkx" else n_walks) / statistics.median(t) for name, t in times.items()}
        out[f"{clock}networkx_walks_per_s"] = per_s["networkx"]
        for name, label in (("names", "from_names"), ("codes", "from_codes"), ("name_pass", "name_pass_alone")):
            out[f"{clock}{label}_walks_per_s"] = per_s[name]
            out[f"{clock}{label}_ratio"] = per_s[name] / per_s["networkx"]
    out["from_names_walks_per_min"] = out["from_names_walks_per_s"] * 60
    out["scores_equal"] = True
    return out


def check_scores_agree(from_names, from_codes, reference) -> None:
    """The speed ratio means nothing unless both sides computed the same scores."""
    ref = np.array([(v, u, n) for v, u, n, _ in reference], dtype=float)
    head = from_names.iloc[: len(ref)]
    errors = head["error"].astype(object).where(head["error"].notna(), None).tolist()
    agree = (
        np.array_equal(head["valid"].to_numpy(float), ref[:, 0])
        and np.allclose(head["utility"].to_numpy(), ref[:, 1])
        and np.allclose(head["novelty"].to_numpy(), ref[:, 2])
        and errors == [error for *_, error in reference]
        and from_codes.equals(from_names)
    )
    if not agree:
        raise SystemExit("the vectorised scorer and the networkx reference disagree: no timing reported")


def bench_training(rounds: int, steps: int, threads: int) -> dict:
    import torch
    from transformers.utils import logging as hf_logging

    from generation.combinatorial.graphs import synthetic_graph
    from generation.combinatorial.lm import WalkTokenizer, build_corpus, build_model, gpt2_config
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
    ours, theirs = [], []
    for r in range(rounds):
        model = build_model(config, seed=r)
        result = train(model, seqs, TrainConfig(max_tokens=tokens, batch_size=batch, seed=r), progress=False)
        ours.append(result.steps * batch * mean_len / result.seconds)
        model = build_model(config, seed=r)
        seconds = trainer_seconds(model, seqs, steps=result.steps, batch=batch, seed=r)
        theirs.append(result.steps * batch * mean_len / seconds)
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


def trainer_seconds(model, seqs, *, steps: int, batch: int, seed: int) -> float:
    """Seconds for transformers' ``Trainer`` to take ``steps`` steps on the same sequences,
    batch, optimiser (AdamW, lr 3e-3, betas 0.9 / 0.98, weight decay 0.1) and schedule."""
    import torch
    from transformers import Trainer, TrainingArguments

    from generation.combinatorial.lm import PAD, pad_batch

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

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=3e-3,
            weight_decay=0.1,
            warmup_steps=max(1, int(0.05 * steps)),
            lr_scheduler_type="cosine",
            adam_beta2=0.98,
            max_grad_norm=1.0,
            logging_strategy="no",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
            seed=seed,
        )
        trainer = Trainer(model=model, args=args, train_dataset=Walks(), data_collator=collate)
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--walks", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-training", action="store_true", help="time the scoring only")
    args = parser.parse_args()
    results = {"scoring": bench_scoring(args.walks, args.rounds)}
    print(json.dumps(results["scoring"], indent=2), flush=True)
    if not args.skip_training:
        results["training"] = bench_training(args.rounds, args.train_steps, args.threads)
        print(json.dumps(results["training"], indent=2), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
