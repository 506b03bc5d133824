"""The sparse weight edit against the full steered checkpoint, on the embedded model.

Measures, in one run on one device (CreativityNeuro rho 0.1, alpha 1.0, prompt set ``dat``):

* size: the sparse artifact's files against the full checkpoint's weight file;
* apply time: applying the edit to the loaded base model against loading the model
  (the full checkpoint, as a job would load it). transformers maps safetensors files
  lazily: ``from_pretrained`` returns before the weights are read, and the first touch of
  each page reads it. Both figures therefore count the model as loaded once every weight
  has been read (what a job pays before its first token anyway), and the edit is applied
  to such a model; applying copies each edited matrix out of the file mapping, which the
  full checkpoint never does. The naive figures (apply on a freshly mapped model) are
  reported too;
* identical text: the same requests sampled through both paths;
* end-to-end job time: ``iter_samples`` over the same requests (model loading, applying
  the edit, sampling) with the sparse artifact against the full checkpoint, interleaved over
  ``--rounds`` (A B, B A, ...); the report gives the per-round ratios, their median and spread
  (min, quartiles, max), and the machine's load average at the end.

Usage::

    .venv/bin/python benchmarks/bench_sparse_artifact.py [--device cpu] [--rounds 6] [--out FILE.json]

Targets (issue 12): artifact <= 3% of the checkpoint, applying <= 10% of the load time,
identical text, job time sparse <= 1.05x full checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

PARAMS = {"rho": 0.1, "alpha": 1.0, "prompt_set": "dat"}


def _files_size(path: Path) -> int:
    return sum(child.stat().st_size for child in path.iterdir() if child.is_file())


def _spread(values: list[float]) -> dict[str, float]:
    """Median, extremes and quartiles of per-round figures (the machine is shared: one round proves little)."""
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    return {
        "median": round(statistics.median(ordered), 3),
        "min": round(ordered[0], 3),
        "q1": round(quartiles[0], 3),
        "q3": round(quartiles[2], 3),
        "max": round(ordered[-1], 3),
    }


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds of each measurement (default 6)")
    parser.add_argument("--samples", type=int, default=8, help="requests per job (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def _build_artifacts(spec, root: Path, device: str) -> dict[str, Any]:
    """Both artifacts of one spec, timed; their sizes."""
    from generation.pipeline import prepare_artifact
    from generation.sparse_edit import EDIT_FILE

    started = time.perf_counter()
    sparse = prepare_artifact(spec, root / "sparse", device=device)
    sparse_build_s = time.perf_counter() - started
    started = time.perf_counter()
    full = prepare_artifact(spec, root / "full", device=device, full_checkpoint=True)
    full_build_s = time.perf_counter() - started
    if sparse is None or full is None:
        raise SystemExit("prepare_artifact returned no artifact for a weight condition")
    return {
        "sparse": sparse,
        "full": full,
        "build_s": {"sparse": round(sparse_build_s, 2), "full_checkpoint": round(full_build_s, 2)},
        "size_bytes": {
            "sparse_artifact": _files_size(Path(sparse.path)),
            "edit_file": (Path(sparse.path) / EDIT_FILE).stat().st_size,
            "checkpoint_weights": (Path(full.path) / "model.safetensors").stat().st_size,
        },
    }


def _read_all(loaded) -> None:
    import torch

    with torch.no_grad():
        for parameter in loaded.model.parameters():
            # Reads every page of the mapped weights. A write (add_(0) until 2026-12-02) would
            # also copy every page out of the file mapping and count that copy as loading.
            parameter.data.sum()


def _measure_apply(sparse, full, rounds: int, device: str) -> dict[str, Any]:
    """Applying the edit against loading the full checkpoint, per round: weights read first, and naive."""
    from generation.loading import load_model
    from generation.sparse_edit import apply_sparse_edit

    load_s, apply_s, naive_load_s, naive_apply_s = [], [], [], []
    for _ in range(rounds):
        started = time.perf_counter()
        steered = load_model(full.path, device=device)
        naive_load_s.append(time.perf_counter() - started)
        _read_all(steered)
        load_s.append(time.perf_counter() - started)
        del steered
        base = load_model("embedded", device=device)
        _read_all(base)
        started = time.perf_counter()
        apply_sparse_edit(base, sparse.path)
        apply_s.append(time.perf_counter() - started)
        fresh = load_model("embedded", device=device)
        started = time.perf_counter()
        apply_sparse_edit(fresh, sparse.path)
        naive_apply_s.append(time.perf_counter() - started)
        del base, fresh
    return {
        "load_s_median": statistics.median(load_s),
        "apply_s_median": statistics.median(apply_s),
        "apply_to_load_ratio": statistics.median(a / b for a, b in zip(apply_s, load_s, strict=True)),
        "naive": {
            "load_s_median": statistics.median(naive_load_s),
            "apply_s_median": statistics.median(naive_apply_s),
            "apply_to_load_ratio": statistics.median(a / b for a, b in zip(naive_apply_s, naive_load_s, strict=True)),
        },
    }


def _measure_jobs(spec, artifacts: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``iter_samples`` with each artifact, interleaved A B, B A, A B, ...; per-round ratios sparse / full."""
    from generation.pipeline import DecodingSettings, SampleRequest, iter_samples
    from generation.task_families import get_task_family

    family = get_task_family("aut")
    requests = [
        SampleRequest(item.key, item.text, index, 0) for index in range(2) for item in family.items[: args.samples // 2]
    ]
    decoding = DecodingSettings(max_new_tokens=args.max_new_tokens)
    seconds: dict[str, list[float]] = {"sparse": [], "full": []}
    texts: dict[str, list[str]] = {}
    for round_index in range(args.rounds):
        # Alternate the order, so neither path always runs on a warmer machine.
        order = ("sparse", "full") if round_index % 2 == 0 else ("full", "sparse")
        for name in order:
            started = time.perf_counter()
            batches = iter_samples(spec, artifacts[name], family, requests, decoding, device=args.device)
            texts[name] = [sample.text for batch in batches for sample in batch]
            seconds[name].append(time.perf_counter() - started)
    ratios = [a / b for a, b in zip(seconds["sparse"], seconds["full"], strict=True)]
    return {
        "texts_identical": texts["sparse"] == texts["full"],
        "n_texts": len(texts["sparse"]),
        "job_s": {"sparse": _spread(seconds["sparse"]), "full_checkpoint": _spread(seconds["full"])},
        "job_ratio_rounds": [round(ratio, 3) for ratio in ratios],
        "job_ratio": _spread(ratios),
        "job_ratio_median": statistics.median(ratios),
    }


def main() -> int:
    args = _parse_args()
    import torch

    from generation.pipeline import ConditionSpec

    spec = ConditionSpec("weight", "embedded", PARAMS)
    with tempfile.TemporaryDirectory() as scratch:
        built = _build_artifacts(spec, Path(scratch), args.device)
        sparse, full = built["sparse"], built["full"]
        apply = _measure_apply(sparse, full, args.rounds, args.device)
        jobs = _measure_jobs(spec, {"sparse": sparse, "full": full}, args)
    result = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
        },
        "device": args.device,
        "params": PARAMS,
        "share_edited": sparse.manifest["share_edited"],
        "build_s": built["build_s"],
        "size_bytes": built["size_bytes"],
        "size_ratio": built["size_bytes"]["sparse_artifact"] / built["size_bytes"]["checkpoint_weights"],
        **apply,
        **jobs,
        "targets": {"size_ratio": 0.03, "apply_to_load_ratio": 0.10, "job_ratio": 1.05},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
