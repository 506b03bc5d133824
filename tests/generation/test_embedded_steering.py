"""The real embedded model (SmolLM2-135M-Instruct) through the whole pipeline: a few slow tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.fluency import perplexity
from generation.loading import load_model
from generation.pipeline import ConditionSpec, DecodingSettings, SampleRequest, iter_samples, prepare_artifact
from generation.task_families import get_task_family

pytestmark = pytest.mark.slow

DAT_REQUESTS = [SampleRequest("lines", get_task_family("dat").item("lines").text, i, 0) for i in range(2)]
DECODING = DecodingSettings(max_new_tokens=16)


def _samples(spec: ConditionSpec, artifact) -> list:
    family = get_task_family("dat")
    return [s for batch in iter_samples(spec, artifact, family, DAT_REQUESTS, DECODING) for s in batch]


def test_weight_steered_embedded_model_saves_reloads_and_talks(tmp_path: Path) -> None:
    # The last third of the layers: where the effect concentrates, and a third of the edit time.
    spec = ConditionSpec("weight", "embedded", {"rho": 0.1, "alpha": 1.0, "prompt_set": "dat", "layers": "20-29"})
    artifact = prepare_artifact(spec, tmp_path / "steered", full_checkpoint=True)
    assert artifact is not None
    share = artifact.manifest["share_edited"]
    assert 0 < share <= 0.1
    assert sorted(artifact.manifest["per_layer"], key=int) == [str(i) for i in range(20, 30)]

    assert artifact.sha256 != artifact.manifest["base_model"]["sha256"]
    steered = load_model(artifact.path, device="cpu")
    assert steered.sha256 == artifact.sha256
    # The fluency guard the sweep relies on: a mild edit keeps the model fluent (base: about 7.5).
    assert perplexity(steered.model, steered.tokenizer) < 15

    samples = _samples(spec, artifact)
    assert all(sample.text.strip() for sample in samples)
    assert {sample.model_sha256 for sample in samples} == {artifact.sha256}


def test_activation_steered_embedded_model_differs_from_base(tmp_path: Path) -> None:
    spec = ConditionSpec("activation", "embedded", {"prompt_set": "dat", "layers": [10], "coeff": 4.0})
    artifact = prepare_artifact(spec, tmp_path / "vector")
    assert artifact is not None and artifact.manifest["layers"] == [10]
    steered = _samples(spec, artifact)
    base = _samples(ConditionSpec("base", "embedded"), None)
    assert all(sample.text.strip() for sample in steered)
    assert [s.text for s in steered] != [s.text for s in base]
    assert [s.prompt for s in steered] == [s.prompt for s in base]
