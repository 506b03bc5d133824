"""The scaling experiment: a depth x width grid at fixed compute budgets.

For each budget B (FLOPs) and depth L, the width is chosen so the model has about
``target_params`` parameters N, and it is trained on B / (6 N) tokens. Each trained model
samples walks for the held-out prompts at each temperature; the walks are scored with
``analysis.combinatorial`` and summarised with a CI over prompts. Rows are appended to
``scaling.csv`` as each model finishes, so a killed run started again skips what is done
(and a model killed mid-training resumes from its checkpoint).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import GPT2LMHeadModel

from analysis.combinatorial import Prompt, WalkScorer, label_counts_from_walks, mean_ci_over_prompts
from generation.combinatorial.graphs import ConceptGraph
from generation.combinatorial.lm import (
    PAD,
    WalkTokenizer,
    build_corpus,
    build_model,
    gpt2_config,
    n_params,
    pad_batch,
    sample_walks,
    width_for_params,
)
from generation.combinatorial.prompts import (
    sample_prompts,
    sample_satisfying_walks,
    split_prompts,
    write_prompts,
)
from generation.combinatorial.train import TrainConfig, train

TABLE_COLUMNS = [
    "budget", "depth", "width", "params", "tokens", "steps", "temperature", "loss", "train_seconds",
    "valid", "valid_ci_low", "valid_ci_high", "utility", "utility_ci_low", "utility_ci_high",
    "novelty", "novelty_ci_low", "novelty_ci_high", "creativity", "creativity_ci_low", "creativity_ci_high",
    "novelty_valid", "n_prompts", "n_walks",
]  # fmt: skip


@dataclass(frozen=True)
class ScalingSpec:
    depths: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    target_params: int = 1_000_000
    budgets: tuple[float, ...] = (3e12, 1e13)
    temperatures: tuple[float, ...] = (1.0, 0.7)
    n_prompts: int = 600
    heldout_fraction: float = 0.2
    distance: tuple[int, int] = (3, 5)
    n_include: int = 1
    n_exclude: int = 1
    max_hops: int = 8
    walks_per_prompt: int = 4
    n_samples: int = 4
    top_p: float = 1.0
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0


def prepare_task(graph: ConceptGraph, spec: ScalingSpec, out: Path) -> tuple[WalkTokenizer, list, list, tuple]:
    """Prompts, split, training corpus; writes the graph, prompts and training walks to ``out``.

    Returns the tokenizer, the training sequences, the training walks and the held-out prompts.
    """
    prompts = sample_prompts(
        graph,
        n=spec.n_prompts,
        distance=spec.distance,
        n_include=spec.n_include,
        n_exclude=spec.n_exclude,
        max_hops=spec.max_hops,
        seed=spec.seed,
    )
    split = split_prompts(prompts, heldout_fraction=spec.heldout_fraction, seed=spec.seed)
    tokenizer = WalkTokenizer.for_graph(graph)
    seqs, seen = build_corpus(
        graph, tokenizer, split.train, walks_per_prompt=spec.walks_per_prompt, max_hops=spec.max_hops, seed=spec.seed
    )
    out.mkdir(parents=True, exist_ok=True)
    graph.write_triples(out / "graph.csv")
    write_prompts(split.train, out / "prompts_train.jsonl")
    write_prompts(split.heldout, out / "prompts_heldout.jsonl")
    with open(out / "train_walks.jsonl", "w", encoding="utf-8") as handle:
        for walk in seen:
            handle.write(json.dumps({"walk": walk}) + "\n")
    return tokenizer, seqs, seen, split.heldout


def heldout_loss(
    model, tokenizer: WalkTokenizer, graph: ConceptGraph, prompts: Sequence[Prompt], spec: ScalingSpec, device
) -> float:
    """Mean next-token loss on the walk part of satisfying walks of held-out prompts."""
    rng = np.random.default_rng(spec.seed + 1)
    index = tokenizer.index()
    seqs, starts = [], []
    for prompt in prompts:
        head = [index[t] for t in tokenizer.prompt_tokens(prompt)]
        for walk in sample_satisfying_walks(graph, prompt, n=2, max_hops=spec.max_hops, rng=rng):
            seqs.append(head + [index[t] for t in walk] + [index["<eos>"]])
            starts.append(len(head))
    if not seqs:
        return float("nan")
    batch = pad_batch(seqs).to(device)
    targets = batch[:, 1:].clone()
    targets[targets == PAD] = -100
    for i, s in enumerate(starts):
        targets[i, : s - 1] = -100  # score the answer, not the prompt
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch[:, :-1]).logits  # right-padded: causal mask suffices
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return float(loss)


def run_scaling(
    graph: ConceptGraph,
    spec: ScalingSpec,
    out: str | Path,
    *,
    device: str = "cpu",
    progress: bool = True,
    on_row: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Train and evaluate the grid; returns (and writes ``out/scaling.csv``) the tidy table."""
    out = Path(out)
    tokenizer, seqs, seen, heldout = prepare_task(graph, spec, out)
    scorer = WalkScorer(graph.triples(), train_label_counts=label_counts_from_walks(seen))
    table_path = out / "scaling.csv"
    done = pd.read_csv(table_path) if table_path.exists() else pd.DataFrame(columns=TABLE_COLUMNS)
    for budget in spec.budgets:
        for depth in spec.depths:
            width = width_for_params(target=spec.target_params, depth=depth, vocab_size=tokenizer.size)
            if ((done["budget"] == budget) & (done["depth"] == depth) & (done["width"] == width)).any():
                continue
            config = gpt2_config(vocab_size=tokenizer.size, depth=depth, width=width)
            model = build_model(config, seed=spec.seed)
            params = n_params(model)
            tokens = int(budget / (6 * params))
            name = f"b{budget:.0e}_L{depth}_W{width}"
            started = time.perf_counter()
            result = train(
                model,
                seqs,
                TrainConfig(max_tokens=tokens, batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed),
                checkpoint_dir=out / "checkpoints" / name,
                device=device,
                progress=progress,
            )
            seconds = time.perf_counter() - started
            loss = heldout_loss(model, tokenizer, graph, heldout, spec, device)
            rows = []
            for temperature in spec.temperatures:
                walks_path = out / f"walks_{name}_T{temperature:g}.jsonl"
                row = {
                    "budget": budget,
                    "depth": depth,
                    "width": width,
                    "params": params,
                    "tokens": result.tokens,
                    "steps": result.steps,
                    "temperature": temperature,
                    "loss": loss,
                    "train_seconds": round(seconds, 1),
                    **_sampled_scores(model, tokenizer, heldout, scorer, spec, temperature, walks_path),
                }
                rows.append(row)
                if on_row:
                    on_row(row)
            done = pd.concat([done, pd.DataFrame(rows)], ignore_index=True) if len(done) else pd.DataFrame(rows)
            done.reindex(columns=TABLE_COLUMNS).to_csv(table_path, index=False)
    return done.reindex(columns=TABLE_COLUMNS).reset_index(drop=True)


def _sampled_scores(
    model: GPT2LMHeadModel,
    tokenizer: WalkTokenizer,
    heldout: Sequence[Prompt],
    scorer: WalkScorer,
    spec: ScalingSpec,
    temperature: float,
    walks_path: Path,
) -> dict:
    """Walks sampled for the held-out prompts at one temperature, written to ``walks_path``
    and scored: the means over prompts with their CIs, the novelty of valid walks, counts."""
    samples = sample_walks(
        model,
        tokenizer,
        list(heldout),
        n_samples=spec.n_samples,
        temperature=temperature,
        top_p=spec.top_p,
        max_hops=2 * spec.max_hops,
        seed=spec.seed,
    )
    by_id = {p.prompt_id: p for p in heldout}
    scores = scorer.score([w for _, w in samples], [by_id[i] for i, _ in samples])
    scores.insert(0, "prompt_id", [i for i, _ in samples])
    with open(walks_path, "w", encoding="utf-8") as handle:
        for pid, walk in samples:
            handle.write(json.dumps({"prompt_id": pid, "walk": walk}) + "\n")
    summary = mean_ci_over_prompts(scores)
    return {
        **{k: v for k, v in summary.items() if k != "n_prompts"},
        # E[N] counts invalid walks as 0; among valid walks it shows the trade-off.
        "novelty_valid": float(scores.loc[scores["valid"], "novelty"].mean()),
        "n_prompts": int(summary["n_prompts"]),
        "n_walks": len(scores),
    }
