"""The vLLM backend on a CUDA GPU: base model and a sparse weight edit (materialised as a checkpoint once).

Runs only where CUDA and the vllm package are present (a GPU worker); elsewhere the test is
skipped and says why. docs/generation.md records whether it has run on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _skip_reason() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine: the vllm backend runs only on CUDA"
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "the vllm package is not installed (pip install vllm on the GPU worker)"
    return None


@pytest.fixture(scope="module")
def vllm_ready() -> None:
    reason = _skip_reason()
    if reason:
        print(f"SKIPPED test_vllm_backend: {reason}")
        pytest.skip(reason)


def test_vllm_generates_from_base_and_sparse_edit(vllm_ready, tmp_path: Path) -> None:
    from generation.pipeline import ConditionSpec, DecodingSettings, SampleRequest, iter_samples, prepare_artifact
    from generation.task_families import get_task_family

    family = get_task_family("aut")
    requests = [SampleRequest("brick", "brick", index, 3) for index in range(4)]
    decoding = DecodingSettings(max_new_tokens=32)

    def texts(spec, artifact) -> list:
        return [s for batch in iter_samples(spec, artifact, family, requests, decoding, backend="vllm") for s in batch]

    base = texts(ConditionSpec("base", "embedded"), None)
    assert all(s.text.strip() for s in base)
    assert texts(ConditionSpec("base", "embedded"), None) == base  # per-request seeds: reproducible

    spec = ConditionSpec("weight", "embedded", {"rho": 0.1, "alpha": 1.0, "prompt_set": "dat"})
    artifact = prepare_artifact(spec, tmp_path / "edit")
    steered = texts(spec, artifact)
    assert all(s.text.strip() for s in steered)
    assert (Path(artifact.path) / "full-checkpoint" / "model.safetensors").is_file()
    assert [s.text for s in steered] != [s.text for s in base]
