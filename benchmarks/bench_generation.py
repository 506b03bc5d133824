"""Generation throughput and weight-edit cost on the embedded model.

Measures, in one run on one device:

* tokens/s of batched generation (batch 16, 128 new tokens per row) for the base model,
  the CreativityNeuro weight-steered checkpoint and activation steering, as ratios to base;
* tokens/s of one-at-a-time generation, and the batched / one-at-a-time ratio;
* wall time and peak memory (RSS) of computing the weight edit, in a fresh process so the
  peak belongs to the edit alone.

Every row generates exactly 128 tokens (end-of-sequence does not stop it), so all
conditions do the same work. Conditions are interleaved over ``--rounds``; the report
gives the best rate per condition and the median over rounds of each round's ratio to
base, which damps noise from other processes on a shared machine.

Usage::

    .venv/bin/python benchmarks/bench_generation.py [--device cpu] [--rounds 2] [--out FILE.json]

Targets (issue 3): weight-steered >= 0.98x base, activation-steered >= 0.90x base,
batched >= 3x one-at-a-time, weight edit < 2 min and < 3 GB on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

# Run in a fresh interpreter: loads the embedded model, computes the edit, reports time and peak RSS.
_EDIT_PROBE = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from generation.loading import load_model
from generation.weight_steering import WeightSteeringConfig, save_steered_checkpoint, steer_weights
loaded = load_model("embedded", device={device!r})
start = time.perf_counter()
manifest = steer_weights(loaded, WeightSteeringConfig(rho=0.1, alpha=1.0, prompt_set="dat"))
edit_s = time.perf_counter() - start
start = time.perf_counter()
save_steered_checkpoint(loaded, manifest, {out!r})
save_s = time.perf_counter() - start
print(json.dumps({{"edit_s": edit_s, "save_s": save_s, "share_edited": manifest["share_edited"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _generate(backend, prompts, seeds, decoding) -> tuple[int, float]:
    from generation.sampling import generate_batch

    loaded = backend.loaded
    start = time.perf_counter()
    with backend.steered():
        results = generate_batch(loaded.model, loaded.tokenizer, prompts, seeds, decoding, stop_at_eos=False)
    elapsed = time.perf_counter() - start
    return sum(r.n_new_tokens for r in results), elapsed


def _weight_edit_in_fresh_process(device: str, checkpoint: Path) -> dict:
    """The weight edit's timings, measured in a fresh process so no warm cache flatters them."""
    print("weight edit (fresh process) ...", flush=True)
    probe = _EDIT_PROBE.format(root=str(REPO_ROOT), device=device, out=str(checkpoint))
    wall = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    edit = json.loads(done.stdout.strip().splitlines()[-1])
    edit["process_s"] = time.perf_counter() - wall
    return edit


def _backends(device: str, checkpoint: Path) -> dict:
    """The three conditions: the base model, the weight-steered checkpoint, activation steering of the base."""
    from generation.activation_steering import compute_steering_vectors
    from generation.backends import HFBackend
    from generation.loading import load_model

    base = load_model("embedded", device=device)
    steered = load_model(checkpoint, device=device)
    vectors = compute_steering_vectors(base, prompt_set="dat")
    return {
        "base": HFBackend(base),
        "weight": HFBackend(steered),
        "activation": HFBackend(base, vectors.vectors, coeff=4.0),
    }


def _interleaved_rates(backends: dict, prompts: list[str], seeds: list[int], decoding, rounds: int) -> dict:
    """Tokens/s of each backend per round, the conditions interleaved within each round."""
    rates: dict[str, list[float]] = {name: [] for name in backends}
    for round_index in range(rounds):
        # Rotate the order so no condition always runs first (or right after another's caches).
        order = list(backends)[round_index % 3 :] + list(backends)[: round_index % 3]
        for name in order:
            tokens, seconds = _generate(backends[name], prompts, seeds, decoding)
            rates[name].append(tokens / seconds)
            rate = tokens / seconds
            print(
                f"round {round_index + 1} {name:<10} {tokens} tokens in {seconds:6.1f} s = {rate:6.1f} tokens/s",
                flush=True,
            )
    return rates


def _one_at_a_time_rate(backend, prompts: list[str], seeds: list[int], decoding) -> float:
    """Tokens/s generating the sequences one by one (the baseline batching is measured against)."""
    single_tokens, single_seconds = 0, 0.0
    for prompt, seed in zip(prompts, seeds, strict=True):
        tokens, seconds = _generate(backend, [prompt], [seed], decoding)
        single_tokens += tokens
        single_seconds += seconds
    single_rate = single_tokens / single_seconds
    print(f"one at a time: {single_tokens} tokens in {single_seconds:.1f} s = {single_rate:.1f} tokens/s", flush=True)
    return single_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per condition")
    parser.add_argument("--single", type=int, default=2, help="sequences generated one at a time")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()

    import torch

    from generation.sampling import derive_row_seed
    from generation.task_families import build_prompt, get_task_family
    from generation.types import DecodingSettings

    checkpoint = Path(tempfile.mkdtemp(prefix="bench-generation-")) / "steered"
    edit = _weight_edit_in_fresh_process(args.device, checkpoint)
    backends = _backends(args.device, checkpoint)
    base = backends["base"].loaded
    aut, task_task = get_task_family("aut"), get_task_family("task_task")
    items = [(aut, item.text) for item in aut.items] + [(task_task, item.text) for item in task_task.items]
    prompts = [build_prompt(base.tokenizer, family, text) for family, text in items[: args.batch_size]]
    seeds = [derive_row_seed(0, str(i), 0) for i in range(len(prompts))]
    decoding = DecodingSettings(max_new_tokens=args.max_new_tokens)

    _generate(backends["base"], prompts[:2], seeds[:2], DecodingSettings(max_new_tokens=8))  # warm-up
    rates = _interleaved_rates(backends, prompts, seeds, decoding, args.rounds)
    best = {name: max(values) for name, values in rates.items()}
    # Paired per round: other processes on a shared machine slow whole rounds, not one condition.
    paired = {
        name: statistics.median(r / b for r, b in zip(values, rates["base"], strict=True))
        for name, values in rates.items()
    }

    single_rate = _one_at_a_time_rate(backends["base"], prompts[: args.single], seeds[: args.single], decoding)
    results = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "platform": platform.platform(),
        "batch_size": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "tokens_per_s_best": best,
        "tokens_per_s_rounds": rates,
        "ratio_to_base_of_best": {name: rate / best["base"] for name, rate in best.items()},
        "ratio_to_base_median_paired": paired,
        "single_tokens_per_s": single_rate,
        "batched_over_single": best["base"] / single_rate,
        "weight_edit": edit,
        "bench_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
