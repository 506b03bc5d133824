"""CPU training throughput of the combinatorial-creativity decoders against the machine's matmul rate.

For each model of the scaling grid's shapes (target size x depth), in one process:

1. the matmul FLOP rate of this machine at the model's own shapes: every linear layer's
   forward product and its two backward products (input and weight gradients) at the
   training batch's shape (``batch x`` the mean trimmed sequence length rows), ``torch.mm``
   on contiguous float32 tensors: what a training step could reach if it were all matmul;
2. training tokens/s of ``generation.combinatorial.train.train`` (the target tokens the
   compute budget counts), and the FLOP rate it implies, ``6 N`` per token: the budget's own
   accounting (attention scores and padded positions are not counted, so this is what the
   grid gets for its budget);
3. the ratio of the two, for the current model (``after``) and the model as it was before
   the activation was changed (``before``: GPT-2's tanh-approximated GELU, which
   transformers computes as eight element-wise operations), optionally with
   ``torch.compile`` (``--compile``), at each thread count of ``--threads``.

Variants are interleaved in rounds so load on the shared machine hits them alike; wall and
CPU time of the process are both recorded (under load CPU time is the steadier clock).

Run::

    .venv/bin/python benchmarks/bench_cc_throughput.py --out benchmarks/results/cc_throughput.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def workload(seed: int = 0):
    """The training sequences of a grid like the documented CPU run (60 concepts, 5 labels,
    |I| in 0..2, |X| in 0..1) and the tokenizer."""
    from generation.combinatorial.graphs import synthetic_graph
    from generation.combinatorial.lm import WalkTokenizer, build_corpus
    from generation.combinatorial.scaling import ScalingSpec, level_prompts

    graph = synthetic_graph(n_concepts=60, n_labels=5, mean_degree=3, seed=seed)
    spec = ScalingSpec(n_prompts=100, distance=(2, 4), max_hops=6, include_levels=(0, 1, 2), exclude_levels=(0, 1))
    tokenizer = WalkTokenizer.for_graph(graph)
    seqs, _ = build_corpus(graph, tokenizer, level_prompts(graph, spec), walks_per_prompt=4, max_hops=6)
    return tokenizer, seqs


def batch_shape(seqs, batch: int, steps: int) -> tuple[int, float]:
    """Rows of the training batches' matmuls (batch x mean trimmed input length) and the
    share of their positions that are padding, over the first ``steps`` batches."""
    from generation.combinatorial.lm import PAD, pad_batch
    from generation.combinatorial.train import TrainConfig, _batch

    data = pad_batch(seqs)
    lengths = (data != PAD).sum(1)
    config = TrainConfig(max_tokens=1, batch_size=batch)
    per_epoch = max(1, data.shape[0] // batch)
    positions, targets = [], []
    for step in range(steps):
        rows = _batch(data, lengths, step, per_epoch, config)
        positions.append(rows.shape[0] * (rows.shape[1] - 1))
        targets.append(int((rows[:, 1:] != PAD).sum()))
    return round(float(np.mean(positions)) / batch) * batch, 1 - sum(targets) / sum(positions)


def matmul_seconds(model, rows: int, repeats: int) -> tuple[float, float, float]:
    """FLOPs and (wall, CPU) seconds of every linear layer's three training matmuls at
    ``rows`` rows, ``repeats`` times."""
    import torch

    shapes = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if weight is not None and weight.ndim == 2 and type(module).__name__ in ("Conv1D", "Linear"):
            # Conv1D stores (in, out); Linear (the tied LM head) stores (out, in).
            n_in, n_out = weight.shape if type(module).__name__ == "Conv1D" else weight.shape[::-1]
            shapes.append((n_in, n_out))
    operands = []
    for n_in, n_out in shapes:
        x, w, g = torch.randn(rows, n_in), torch.randn(n_in, n_out), torch.randn(rows, n_out)
        operands += [(x, w), (g, w.t().contiguous()), (x.t().contiguous(), g)]
    flops = float(sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in operands))
    for a, b in operands:  # warm-up
        torch.mm(a, b)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        for a, b in operands:
            torch.mm(a, b)
    return flops * repeats, time.perf_counter() - wall, time.process_time() - cpu


def training_rate(variant: str, config, seqs, *, steps: int, batch: int, seed: int) -> tuple[float, float]:
    """Target tokens per wall second and per CPU second of ``steps`` training steps."""
    import torch

    from generation.combinatorial.lm import build_model
    from generation.combinatorial.train import TrainConfig, train

    model: torch.nn.Module = build_model(config, seed=seed)
    mean_len = float(np.mean([len(s) - 1 for s in seqs]))
    settings = TrainConfig(max_tokens=int(steps * batch * mean_len), batch_size=batch, seed=seed)
    if variant.endswith("compiled"):
        model = torch.compile(model)  # type: ignore[assignment]  # a module's proxy
        train(model, seqs, TrainConfig(max_tokens=int(8 * batch * mean_len), batch_size=batch), progress=False)
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(model, seqs, settings, progress=False)
    return result.tokens / (time.perf_counter() - wall), result.tokens / (time.process_time() - cpu)


def bench_model(target: float, depth: int, seqs, tokenizer, args) -> list[dict]:
    """Every variant and thread count of one model shape, interleaved in rounds."""
    import torch

    from generation.combinatorial.lm import build_model, gpt2_config, n_params, width_for_params

    width = width_for_params(target=int(target), depth=depth, vocab_size=tokenizer.size)
    after = gpt2_config(vocab_size=tokenizer.size, depth=depth, width=width)
    before = gpt2_config(vocab_size=tokenizer.size, depth=depth, width=width)
    before.activation_function = "gelu_new"
    params = n_params(build_model(after))
    configs = {"before": before, "after": after} | ({"after_compiled": after} if args.compile else {})
    rows_, pad_share = batch_shape(seqs, args.batch, args.steps)
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for round_ in range(args.rounds):
        for threads in args.threads:
            torch.set_num_threads(threads)
            flops, wall, cpu = matmul_seconds(build_model(after), rows_, args.matmul_repeats)
            samples.setdefault(("matmul", threads), []).append((flops / wall, flops / cpu))
            for name, config in configs.items():
                tps_wall, tps_cpu = training_rate(name, config, seqs, steps=args.steps, batch=args.batch, seed=round_)
                samples.setdefault((name, threads), []).append((6 * params * tps_wall, 6 * params * tps_cpu))
    out = []
    for threads in args.threads:
        matmul = [statistics.median(s[i] for s in samples[("matmul", threads)]) for i in (0, 1)]
        for name in configs:
            rate = [statistics.median(s[i] for s in samples[(name, threads)]) for i in (0, 1)]
            out.append(
                {
                    "target_params": target, "depth": depth, "width": width, "params": params,
                    "threads": threads, "variant": name, "matmul_rows": rows_, "pad_share": round(pad_share, 3),
                    "train_gflops": rate[0] / 1e9, "cpu_train_gflops": rate[1] / 1e9,
                    "tokens_per_s": rate[0] / (6 * params), "cpu_tokens_per_s": rate[1] / (6 * params),
                    "matmul_gflops": matmul[0] / 1e9, "cpu_matmul_gflops": matmul[1] / 1e9,
                    "ratio": rate[0] / matmul[0], "cpu_ratio": rate[1] / matmul[1],
                }
            )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e6,4e6", help="target parameters, comma-separated")
    parser.add_argument("--depths", default="1,4,8", help="depths, comma-separated")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    parser.add_argument("--steps", type=int, default=40, help="training steps per measurement")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--matmul-repeats", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compiles once per round)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer, seqs = workload()
    rows = []
    for target in (float(s) for s in args.sizes.split(",")):
        for depth in (int(d) for d in args.depths.split(",")):
            rows += bench_model(target, depth, seqs, tokenizer, args)
            for row in rows[-len(args.threads) * (3 if args.compile else 2) :]:
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    by_key = {(r["target_params"], r["depth"], r["threads"], r["variant"]): r for r in rows}
    for row in rows:
        base = by_key[(row["target_params"], row["depth"], row["threads"], "before")]
        row["speedup"] = row["tokens_per_s"] / base["tokens_per_s"]
        row["cpu_speedup"] = row["cpu_tokens_per_s"] / base["cpu_tokens_per_s"]
    results = {"rows": rows, "steps": args.steps, "batch": args.batch, "rounds": args.rounds, "target_ratio": 1 / 3}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
