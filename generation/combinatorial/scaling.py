"""The scaling experiment: a depth x width grid at fixed compute budgets, with training seeds.

For each budget B (FLOPs), target size and depth L, the width is chosen so the model has
about the target's parameters N, and it is trained on B / (6 N) tokens, once per training
seed. Prompts come at several constraint levels (|I|, |X|), each with its own held-out
prompts. Each trained model samples walks for every held-out prompt at each temperature;
the walks are scored with ``analysis.combinatorial``. ``scaling.csv`` has one row per
model, seed, level and temperature (means with a CI over prompts); ``prompt_scores.csv``
one row per prompt of each (what ``cc-report`` bootstraps over seeds and prompts). Both
are rewritten as each model finishes, so a killed run started again skips what is done
(and a model killed mid-training resumes from its checkpoint). ``run.json`` records the
task (graph, prompts, training and sampling settings): a folder of another task is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import GPT2LMHeadModel

from analysis.combinatorial import (
    WALK_ERRORS,
    Prompt,
    WalkScorer,
    label_counts_from_walks,
    mean_ci_over_prompts,
    per_prompt,
)
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

ERROR_COLUMNS = [f"error_{kind}" for kind in WALK_ERRORS]
MODEL_COLUMNS = [
    "budget",
    "target_params",
    "depth",
    "width",
    "params",
    "seed",
    "tokens",
    "steps",
    "loss",
    "train_seconds",
]
TABLE_COLUMNS = [
    *MODEL_COLUMNS, "include", "exclude", "temperature",
    "valid", "valid_ci_low", "valid_ci_high", "utility", "utility_ci_low", "utility_ci_high",
    "novelty", "novelty_ci_low", "novelty_ci_high", "creativity", "creativity_ci_low", "creativity_ci_high",
    "novelty_valid", "n_prompts", "n_walks", *ERROR_COLUMNS,
]  # fmt: skip
PROMPT_COLUMNS = [
    "budget", "target_params", "depth", "width", "seed", "include", "exclude", "temperature", "prompt_id",
    "n", "valid", "satisfies", "utility", "novelty", "creativity", "n_valid", "novelty_valid_sum",
    *(f"n_{kind}" for kind in WALK_ERRORS),
]  # fmt: skip
# What a model is: a row of the table per (this, level, temperature).
MODEL_KEY = ["budget", "depth", "width", "seed"]
# Settings of the grid itself: a run folder may be extended with more of these. Every other
# setting defines the task, and a folder holds one task (run.json).
GRID_FIELDS = ("depths", "target_params", "budgets", "seeds")


class RunFolderError(ValueError):
    """A run folder that holds another run's files (one line: the folder and what differs)."""


@dataclass(frozen=True)
class ScalingSpec:
    """The grid and the task.

    ``n_prompts`` are drawn per constraint level; the levels are every (|I|, |X|) of
    ``include_levels`` x ``exclude_levels``. ``seed`` fixes the task (prompts, split,
    training walks); the training seeds (initialisation, batch order, sampling) are
    ``seed``, ``seed + 1``, ... (``seeds`` of them).
    """

    depths: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    target_params: tuple[int, ...] = (1_000_000,)
    budgets: tuple[float, ...] = (3e12, 1e13)
    temperatures: tuple[float, ...] = (1.0, 0.7)
    n_prompts: int = 600
    heldout_fraction: float = 0.2
    distance: tuple[int, int] = (3, 5)
    include_levels: tuple[int, ...] = (1,)
    exclude_levels: tuple[int, ...] = (1,)
    max_hops: int = 8
    walks_per_prompt: int = 4
    n_samples: int = 4
    top_p: float = 1.0
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    seeds: int = 1

    @property
    def levels(self) -> list[tuple[int, int]]:
        return list(product(self.include_levels, self.exclude_levels))

    @property
    def training_seeds(self) -> range:
        return range(self.seed, self.seed + self.seeds)


def budget_tag(budget: float) -> str:
    """The budget exactly, as a folder name wants it: the shortest digits that read back as
    the same number (1e10 -> ``1e10``, 1.2e10 -> ``1.2e10``, 12345678901 -> ``1.2345678901e10``)."""
    return np.format_float_scientific(budget, trim="-", exp_digits=1).replace("+", "")


def model_name(budget: float, depth: int, width: int, seed: int) -> str:
    """A model's folder and file stem: the exact budget, depth, width and training seed."""
    return f"b{budget_tag(budget)}_L{depth}_W{width}_s{seed}"


def level_prompts(graph: ConceptGraph, spec: ScalingSpec) -> list[Prompt]:
    """``n_prompts`` prompts per constraint level; ids ``i<|I|>x<|X|>-<n>``."""
    prompts: list[Prompt] = []
    for k, (n_include, n_exclude) in enumerate(spec.levels):
        prompts += sample_prompts(
            graph,
            n=spec.n_prompts,
            distance=spec.distance,
            n_include=n_include,
            n_exclude=n_exclude,
            max_hops=spec.max_hops,
            seed=spec.seed + 7919 * k,
            id_prefix=f"i{n_include}x{n_exclude}-",
        )
    return prompts


def prepare_task(graph: ConceptGraph, spec: ScalingSpec, out: Path) -> tuple[WalkTokenizer, list, list, tuple]:
    """Prompts of every level, split, training corpus; writes the graph, prompts and
    training walks to ``out``.

    The split is by endpoint pair over all levels together, so no held-out pair {u, v} has
    a training walk at any level. Returns the tokenizer, the training sequences, the
    training walks and the held-out prompts.
    """
    split = split_prompts(level_prompts(graph, spec), heldout_fraction=spec.heldout_fraction, seed=spec.seed)
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


def task_record(graph: ConceptGraph, spec: ScalingSpec) -> dict:
    """What ``run.json`` holds: every setting of the task (not the grid) and the graph's digest."""
    task = {key: value for key, value in asdict(spec).items() if key not in GRID_FIELDS}
    digest = hashlib.sha256(json.dumps(graph.triples()).encode()).hexdigest()
    task["graph"] = {
        "concepts": graph.n_concepts,
        "edges": graph.n_edges,
        "labels": len(graph.labels),
        "sha256": digest,
    }
    return json.loads(json.dumps(task))  # as it reads back (tuples become lists)


def claim_run_folder(out: Path, graph: ConceptGraph, spec: ScalingSpec) -> None:
    """Write ``out/run.json``, or check that the folder's run is this task.

    Raises :class:`RunFolderError` when the folder holds another task's run (naming the
    settings that differ) or files of a run without ``run.json``.
    """
    record = task_record(graph, spec)
    path = out / "run.json"
    if path.exists():
        held = json.loads(path.read_text())
        differ = sorted(key for key in record.keys() | held.keys() if record.get(key) != held.get(key))
        if differ:
            raise RunFolderError(
                f"{out} holds another run (its run.json differs in: {', '.join(differ)}); "
                "give a new --out folder, or remove this one to start afresh"
            )
        return
    if (out / "scaling.csv").exists() or (out / "checkpoints").exists():
        raise RunFolderError(
            f"{out} holds a run without run.json (an older version of cc-scaling); give a new --out folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


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
    """Train and evaluate the grid; returns (and writes ``out/scaling.csv``) the tidy table.

    Seeds are the outer loop, so a run stopped early has whole grids of its first seeds.
    """
    out = Path(out)
    claim_run_folder(out, graph, spec)
    tokenizer, seqs, seen, heldout = prepare_task(graph, spec, out)
    scorer = WalkScorer(graph.triples(), train_label_counts=label_counts_from_walks(seen))
    done, prompt_rows = _read_done(out)
    finished = {(float(b), int(d), int(w), int(s)) for b, d, w, s in done[MODEL_KEY].itertuples(index=False)}
    for seed, budget, target, depth in product(spec.training_seeds, spec.budgets, spec.target_params, spec.depths):
        width = width_for_params(target=target, depth=depth, vocab_size=tokenizer.size)
        if (float(budget), depth, width, seed) in finished:
            continue
        model = build_model(gpt2_config(vocab_size=tokenizer.size, depth=depth, width=width), seed=seed)
        params = n_params(model)
        started = time.perf_counter()
        result = train(
            model,
            seqs,
            TrainConfig(max_tokens=int(budget / (6 * params)), batch_size=spec.batch_size, lr=spec.lr, seed=seed),
            checkpoint_dir=out / "checkpoints" / model_name(budget, depth, width, seed),
            device=device,
            progress=progress,
        )
        trained = {
            "budget": budget, "target_params": target, "depth": depth, "width": width, "params": params,
            "seed": seed, "tokens": result.tokens, "steps": result.steps,
            "loss": heldout_loss(model, tokenizer, graph, heldout, spec, device),
            "train_seconds": round(time.perf_counter() - started, 1),
        }  # fmt: skip
        rows, prompts = _evaluate(model, tokenizer, heldout, scorer, spec, trained, out)
        for row in rows:
            if on_row:
                on_row(row)
        done = pd.concat([done, pd.DataFrame(rows)], ignore_index=True) if len(done) else pd.DataFrame(rows)
        prompt_rows = pd.concat([prompt_rows, prompts], ignore_index=True) if len(prompt_rows) else prompts
        # The prompt table first: a kill between the two leaves prompt rows of a model the
        # table lacks, which _read_done drops (that model is trained again).
        _write_csv(prompt_rows.reindex(columns=PROMPT_COLUMNS), out / "prompt_scores.csv")
        _write_csv(done.reindex(columns=TABLE_COLUMNS), out / "scaling.csv")
    return done.reindex(columns=TABLE_COLUMNS).reset_index(drop=True)


def _read_done(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables of a run started before: models finished, and their prompt rows."""
    table_path, prompts_path = out / "scaling.csv", out / "prompt_scores.csv"
    if not table_path.exists():
        return pd.DataFrame(columns=TABLE_COLUMNS), pd.DataFrame(columns=PROMPT_COLUMNS)
    done = pd.read_csv(table_path)
    prompts = pd.read_csv(prompts_path) if prompts_path.exists() else pd.DataFrame(columns=PROMPT_COLUMNS)
    finished = done[MODEL_KEY].drop_duplicates()
    return done, prompts.merge(finished, on=MODEL_KEY, how="inner").reindex(columns=PROMPT_COLUMNS)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Written whole and moved into place: a kill mid-write leaves the previous file."""
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _evaluate(
    model: GPT2LMHeadModel,
    tokenizer: WalkTokenizer,
    heldout: Sequence[Prompt],
    scorer: WalkScorer,
    spec: ScalingSpec,
    trained: dict,
    out: Path,
) -> tuple[list[dict], pd.DataFrame]:
    """Walks sampled for every held-out prompt at each temperature (written to
    ``walks_<model>_T<t>.jsonl``), scored: the table's rows (one per level and temperature)
    and the prompt rows."""
    by_id = {p.prompt_id: p for p in heldout}
    rows, prompt_tables = [], []
    name = model_name(trained["budget"], trained["depth"], trained["width"], trained["seed"])
    for temperature in spec.temperatures:
        samples = sample_walks(
            model,
            tokenizer,
            list(heldout),
            n_samples=spec.n_samples,
            temperature=temperature,
            top_p=spec.top_p,
            max_hops=2 * spec.max_hops,
            seed=trained["seed"],
        )
        with open(out / f"walks_{name}_T{temperature:g}.jsonl", "w", encoding="utf-8") as handle:
            for pid, walk in samples:
                handle.write(json.dumps({"prompt_id": pid, "walk": walk}) + "\n")
        scores = scorer.score([w for _, w in samples], [by_id[i] for i, _ in samples])
        scores.insert(0, "prompt_id", [i for i, _ in samples])
        scores.insert(1, "include", [len(by_id[i].include) for i, _ in samples])
        scores.insert(2, "exclude", [len(by_id[i].exclude) for i, _ in samples])
        keys = {"budget": trained["budget"], "target_params": trained["target_params"], "depth": trained["depth"]}
        keys |= {"width": trained["width"], "seed": trained["seed"], "temperature": temperature}
        prompt_tables.append(prompt_scores(scores).assign(**keys))
        for (n_include, n_exclude), level in scores.groupby(["include", "exclude"], sort=True):
            rows.append(
                {**trained, "include": n_include, "exclude": n_exclude, "temperature": temperature, **_summary(level)}
            )
    return rows, pd.concat(prompt_tables, ignore_index=True)


def prompt_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Per prompt of scored walks (with ``prompt_id``, ``include``, ``exclude``): the means of
    :func:`analysis.combinatorial.per_prompt`, the valid walks' count and novelty sum, and
    how many walks fail for each reason of ``WALK_ERRORS``."""
    table = per_prompt(scores.drop(columns=["include", "exclude"]))
    grouped = scores.groupby("prompt_id", sort=True)
    levels = grouped[["include", "exclude"]].first()
    valid_novelty = scores["novelty"].where(scores["valid"], 0.0)
    extra = pd.DataFrame(
        {
            "n_valid": grouped["valid"].sum(),
            "novelty_valid_sum": valid_novelty.groupby(scores["prompt_id"], sort=True).sum(),
        }
    )
    errors = pd.crosstab(scores["prompt_id"], scores["error"]).reindex(columns=list(WALK_ERRORS), fill_value=0)
    errors = errors.reindex(table["prompt_id"], fill_value=0).add_prefix("n_")
    table = table.set_index("prompt_id")
    return levels.join(table).join(extra).join(errors).reset_index()


def _summary(scores: pd.DataFrame) -> dict:
    """Means over prompts with their CIs, the novelty of valid walks, counts, error shares."""
    summary = mean_ci_over_prompts(scores)
    shares = scores["error"].value_counts(normalize=False).reindex(list(WALK_ERRORS), fill_value=0) / len(scores)
    return {
        **{k: v for k, v in summary.items() if k != "n_prompts"},
        # E[N] counts invalid walks as 0; among valid walks it shows the trade-off.
        "novelty_valid": float(scores.loc[scores["valid"], "novelty"].mean()),
        "n_prompts": int(summary["n_prompts"]),
        "n_walks": len(scores),
        **{f"error_{kind}": float(share) for kind, share in shares.items()},
    }
