"""The platform entry point: artifacts built once, atomically, reused; samples per condition."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from generation.pipeline import (
    ConditionSpec,
    DecodingSettings,
    SampleRequest,
    iter_samples,
    load_artifact,
    prepare_artifact,
)
from generation.task_families import TaskFamily, TaskItem, get_task_family
from tests.conftest import REPO_ROOT

DECODING = DecodingSettings(max_new_tokens=10)
REQUESTS = [SampleRequest("brick", "brick", 0, 7), SampleRequest("shoe", "shoe", 1, 7)]


def _texts(spec: ConditionSpec, artifact, requests=REQUESTS) -> list[str]:
    family = get_task_family("aut")
    return [s.text for batch in iter_samples(spec, artifact, family, requests, DECODING) for s in batch]


def test_pipeline_and_task_modules_do_not_import_torch() -> None:
    probe = (
        "import sys, generation, generation.pipeline, generation.task_families, generation.types; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("method", ["base", "prompt", "temperature"])
def test_methods_without_artifact(tiny_model_dir: Path, tmp_path: Path, method: str) -> None:
    assert prepare_artifact(ConditionSpec(method, str(tiny_model_dir)), tmp_path / "a") is None
    assert not (tmp_path / "a").exists()


def test_weight_artifact_is_built_once_and_reused(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = ConditionSpec("weight", str(tiny_model_dir), {"rho": 0.1, "alpha": 1.0, "layers": "2-3"})
    out = tmp_path / "weight"
    artifact = prepare_artifact(spec, out)
    assert artifact is not None and artifact.path == str(out)
    assert artifact.manifest["parameters"]["rho"] == 0.1 and artifact.manifest["sha256"] == artifact.sha256
    stamp = (out / "edit.safetensors").stat().st_mtime_ns  # the sparse edit is the default
    assert prepare_artifact(spec, out) == artifact
    assert (out / "edit.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt

    other = prepare_artifact(ConditionSpec("weight", str(tiny_model_dir), {"rho": 0.3, "alpha": 1.0}), out)
    assert other is not None and other.sha256 != artifact.sha256  # a different spec replaces it
    assert load_artifact(out) == other
    assert [p.name for p in tmp_path.iterdir()] == ["weight"]


@pytest.mark.parametrize("full_checkpoint", [False, True])
def test_killed_build_leaves_no_half_artifact(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch, full_checkpoint: bool
) -> None:
    import generation.sparse_edit as sparse_edit
    import generation.weight_steering as weight_steering

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt  # as when the worker is killed mid-write

    monkeypatch.setattr(weight_steering, "weights_sha256", crash)
    monkeypatch.setattr(sparse_edit, "weights_sha256", crash)
    spec = ConditionSpec("weight", str(tiny_model_dir), {"rho": 0.1, "alpha": 1.0, "layers": 3})
    with pytest.raises(KeyboardInterrupt):
        prepare_artifact(spec, tmp_path / "weight", full_checkpoint=full_checkpoint)
    assert list(tmp_path.iterdir()) == []


def test_weight_condition_samples_from_the_steered_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    from generation.sparse_edit import steered_model_sha256

    base = _texts(ConditionSpec("base", str(tiny_model_dir)), None)
    untouched = ConditionSpec("weight", str(tiny_model_dir), {"rho": 0.1, "alpha": 0.0})
    # alpha = 0 gives the base weights, hence (same seeds) the base texts.
    assert _texts(untouched, prepare_artifact(untouched, tmp_path / "a0")) == base
    steered = ConditionSpec("weight", str(tiny_model_dir), {"rho": 0.3, "alpha": 2.0})
    artifact = prepare_artifact(steered, tmp_path / "a2")
    family = get_task_family("aut")
    samples = [s for batch in iter_samples(steered, artifact, family, REQUESTS, DECODING) for s in batch]
    assert [s.text for s in samples] != base
    base_sha256 = artifact.manifest["base_model"]["sha256"]
    assert {s.model_sha256 for s in samples} == {steered_model_sha256(base_sha256, artifact.sha256)}
    assert samples[0].condition["artifact_sha256"] == artifact.sha256


def test_activation_condition_uses_the_vector_and_coeff(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = ConditionSpec("activation", str(tiny_model_dir), {"prompt_set": "ideation", "layers": [1], "coeff": 6.0})
    artifact = prepare_artifact(spec, tmp_path / "vec")
    assert artifact is not None and artifact.path.endswith("steering_vector.safetensors")
    assert artifact.manifest["parameters"]["layers"] == [1]
    assert prepare_artifact(spec, tmp_path / "vec") == artifact
    # The coefficient is applied at sampling time: another coefficient reuses the same vector.
    zero = ConditionSpec("activation", str(tiny_model_dir), {"prompt_set": "ideation", "layers": [1], "coeff": 0.0})
    assert prepare_artifact(zero, tmp_path / "vec") == artifact
    base = _texts(ConditionSpec("base", str(tiny_model_dir)), None)
    assert _texts(zero, artifact) == base
    assert _texts(spec, artifact) != base
    reused = ConditionSpec("activation", str(tiny_model_dir), {"coeff": 6.0}, artifact_path=artifact.path)
    assert _texts(reused, None) == _texts(spec, artifact)


def test_model_loads_once_per_call(tiny_model_dir: Path, monkeypatch) -> None:
    import generation.backends as backends

    calls = []
    real = backends.load_model
    monkeypatch.setattr(backends, "load_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    requests = [SampleRequest("brick", "brick", i, 0) for i in range(5)]
    batches = list(
        iter_samples(
            ConditionSpec("base", str(tiny_model_dir)), None, get_task_family("aut"), requests, DECODING, batch_size=2
        )
    )
    assert [len(b) for b in batches] == [2, 2, 1]
    assert len(calls) == 1


def test_studyapp_style_family_and_errors(tiny_model_dir: Path) -> None:
    family = TaskFamily(name="study", template="Describe {item} in one line.", items=(TaskItem("sea", "the sea"),))
    spec = ConditionSpec("base", str(tiny_model_dir))
    batch = next(iter_samples(spec, None, family, [SampleRequest("sea", "the sea", 0, 1)], DECODING))
    assert "Describe the sea in one line." in batch[0].prompt
    with pytest.raises(ValueError, match="prepare_artifact"):
        next(iter_samples(ConditionSpec("weight", str(tiny_model_dir)), None, family, REQUESTS, DECODING))
    with pytest.raises(ValueError, match="instruction"):
        next(iter_samples(ConditionSpec("prompt", str(tiny_model_dir)), None, family, REQUESTS, DECODING))
    with pytest.raises(ValueError, match="unknown condition method"):
        ConditionSpec("magic")


def test_samples_serialise_to_json(tiny_model_dir: Path) -> None:
    batch = next(
        iter_samples(ConditionSpec("base", str(tiny_model_dir)), None, get_task_family("dat"), REQUESTS, DECODING)
    )
    record = json.loads(json.dumps(batch[0].as_dict()))
    assert record["decoding"]["max_new_tokens"] == 10 and record["seed"] == 7
