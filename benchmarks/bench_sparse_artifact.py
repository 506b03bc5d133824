"""The sparse weight edit against the full steered checkpoint, on the embedded model.

Measures, in one run on one device (CreativityNeuro rho 0.1, alpha 1.0, prompt set ``dat``):

* size: the sparse artifact's files against the full checkpoint's weight file;
* apply time: applying the edit to the loaded base model against loading the model
  (the full checkpoint, as a job would load it). transformers maps safetensors files
  lazily: ``from_pretrained`` returns before the weights are read, and the first touch of
  each page reads it. Both figures therefore count the model as loaded once every weight
  has been read (what a job pays before its first token anyway), and the edit is applied
  to such a model. The naive figures (apply on a freshly mapped model, whose scattered
  writes fault in most pages of the file) are reported too;
* identical text: the same requests sampled through both paths;
* end-to-end job time: ``iter_samples`` over the same requests (model loading, applying
  the edit, sampling) with the sparse artifact against the full checkpoint, interleaved over
  ``--rounds``; the report gives the median of the per-round ratios.

Usage::

    .venv/bin/python benchmarks/bench_sparse_artifact.py [--device cpu] [--rounds 3] [--out FILE.json]

Targets (issue 12): artifact <= 3% of the checkpoint, applying <= 10% of the load time,
identical text, job time sparse <= 1.05x full checkpoint.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

PARAMS = {"rho": 0.1, "alpha": 1.0, "prompt_set": "dat"}


def _files_size(path: Path) -> int:
    return sum(child.stat().st_size for child in path.iterdir() if child.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=8, help="requests per job (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from generation.loading import load_model
    from generation.pipeline import ConditionSpec, DecodingSettings, SampleRequest, iter_samples, prepare_artifact
    from generation.sparse_edit import EDIT_FILE, apply_sparse_edit
    from generation.task_families import get_task_family

    family = get_task_family("aut")
    requests = [
        SampleRequest(item.key, item.text, index, 0) for index in range(2) for item in family.items[: args.samples // 2]
    ]
    decoding = DecodingSettings(max_new_tokens=args.max_new_tokens)
    spec = ConditionSpec("weight", "embedded", PARAMS)

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        sparse = prepare_artifact(spec, root / "sparse", device=args.device)
        sparse_build_s = time.perf_counter() - started
        started = time.perf_counter()
        full = prepare_artifact(spec, root / "full", device=args.device, full_checkpoint=True)
        full_build_s = time.perf_counter() - started
        if sparse is None or full is None:
            raise SystemExit("prepare_artifact returned no artifact for a weight condition")
        sparse_bytes = _files_size(Path(sparse.path))
        edit_bytes = (Path(sparse.path) / EDIT_FILE).stat().st_size
        checkpoint_bytes = (Path(full.path) / "model.safetensors").stat().st_size

        def read_all(loaded) -> None:
            with torch.no_grad():
                for parameter in loaded.model.parameters():
                    parameter.data.add_(0)  # touches every page of the mapped weights

        load_s, apply_s, naive_load_s, naive_apply_s = [], [], [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            steered = load_model(full.path, device=args.device)
            naive_load_s.append(time.perf_counter() - started)
            read_all(steered)
            load_s.append(time.perf_counter() - started)
            del steered
            base = load_model("embedded", device=args.device)
            read_all(base)
            started = time.perf_counter()
            apply_sparse_edit(base, sparse.path)
            apply_s.append(time.perf_counter() - started)
            fresh = load_model("embedded", device=args.device)
            started = time.perf_counter()
            apply_sparse_edit(fresh, sparse.path)
            naive_apply_s.append(time.perf_counter() - started)
            del base, fresh

        def job(artifact) -> tuple[float, list[str]]:
            started = time.perf_counter()
            texts = [
                s.text
                for batch in iter_samples(spec, artifact, family, requests, decoding, device=args.device)
                for s in batch
            ]
            return time.perf_counter() - started, texts

        job_sparse, job_full, ratios = [], [], []
        texts_sparse: list[str] = []
        texts_full: list[str] = []
        for round_index in range(args.rounds):
            # Alternate the order, so neither path always runs on a warmer machine.
            order = ("sparse", "full") if round_index % 2 == 0 else ("full", "sparse")
            timings = {}
            for name in order:
                seconds, texts = job(sparse if name == "sparse" else full)
                timings[name] = seconds
                if name == "sparse":
                    texts_sparse = texts
                else:
                    texts_full = texts
            job_sparse.append(timings["sparse"])
            job_full.append(timings["full"])
            ratios.append(timings["sparse"] / timings["full"])

    result = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "device": args.device,
        "params": PARAMS,
        "share_edited": sparse.manifest["share_edited"],
        "build_s": {"sparse": round(sparse_build_s, 2), "full_checkpoint": round(full_build_s, 2)},
        "size_bytes": {
            "sparse_artifact": sparse_bytes,
            "edit_file": edit_bytes,
            "checkpoint_weights": checkpoint_bytes,
        },
        "size_ratio": sparse_bytes / checkpoint_bytes,
        "load_s_median": statistics.median(load_s),
        "apply_s_median": statistics.median(apply_s),
        "apply_to_load_ratio": statistics.median(a / b for a, b in zip(apply_s, load_s, strict=True)),
        "naive": {
            "load_s_median": statistics.median(naive_load_s),
            "apply_s_median": statistics.median(naive_apply_s),
            "apply_to_load_ratio": statistics.median(a / b for a, b in zip(naive_apply_s, naive_load_s, strict=True)),
        },
        "texts_identical": texts_sparse == texts_full,
        "n_texts": len(texts_sparse),
        "job_s": {"sparse": job_sparse, "full_checkpoint": job_full},
        "job_ratio_median": statistics.median(ratios),
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
