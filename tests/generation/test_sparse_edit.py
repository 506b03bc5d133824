"""The sparse weight edit: small on disk, applied at load time, the same weights and texts as a full checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from generation.loading import _HASH_CACHE, load_model, weights_sha256
from generation.pipeline import ConditionSpec, DecodingSettings, SampleRequest, iter_samples, prepare_artifact
from generation.sparse_edit import (
    EDIT_FILE,
    apply_sparse_edit,
    is_sparse_edit,
    load_edited_model,
    materialise_checkpoint,
)
from generation.task_families import get_task_family

PARAMS = {"rho": 0.3, "alpha": 1.5, "prompt_set": "dat", "layers": "1-3"}
REQUESTS = [SampleRequest("brick", "brick", i, 11) for i in range(3)]


def _texts(spec: ConditionSpec, artifact) -> list[str]:
    family = get_task_family("aut")
    decoding = DecodingSettings(max_new_tokens=12)
    return [s.text for batch in iter_samples(spec, artifact, family, REQUESTS, decoding) for s in batch]


@pytest.fixture
def both(tiny_model_dir: Path, tmp_path: Path):
    spec = ConditionSpec("weight", str(tiny_model_dir), PARAMS)
    sparse = prepare_artifact(spec, tmp_path / "sparse")
    full = prepare_artifact(spec, tmp_path / "full", full_checkpoint=True)
    assert sparse is not None and full is not None
    return spec, sparse, full


def test_sparse_edit_holds_indices_and_factor_only(both) -> None:
    _spec, sparse, full = both
    assert is_sparse_edit(sparse.path) and not is_sparse_edit(full.path)
    manifest = sparse.manifest
    assert manifest["factor"] == 2.5 and manifest["edit_dtype"] == "float32"
    assert manifest["sha256"] == sparse.sha256 != full.sha256
    assert manifest["base_model"]["sha256"] == full.manifest["base_model"]["sha256"]
    assert sorted(Path(sparse.path).iterdir()) == [Path(sparse.path) / EDIT_FILE, Path(sparse.path) / "manifest.json"]
    from safetensors.torch import load_file

    stored = load_file(str(Path(sparse.path) / EDIT_FILE))
    assert sum(t.numel() for t in stored.values()) == manifest["n_weights_edited"] > 0
    assert all(t.dtype == torch.int32 for t in stored.values())
    assert all(".1." in name or ".2." in name or ".3." in name for name in stored)  # layers 1-3 only
    size = (Path(sparse.path) / EDIT_FILE).stat().st_size
    assert size < 0.5 * (Path(full.path) / "model.safetensors").stat().st_size


def test_applied_edit_equals_the_full_checkpoint_bit_for_bit(both, tiny_model_dir: Path) -> None:
    _spec, sparse, full = both
    edited = load_edited_model(tiny_model_dir, sparse.path, device="cpu")
    reference = load_model(full.path, device="cpu")
    ours, theirs = edited.model.state_dict(), reference.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    base = load_model(tiny_model_dir, device="cpu").model.state_dict()
    assert not all(torch.equal(ours[key], base[key]) for key in ours)  # the edit did something


def test_applying_copies_each_edited_matrix_instead_of_writing_into_the_loaded_weights(both, tiny_model_dir) -> None:
    _spec, sparse, _full = both
    loaded = load_model(tiny_model_dir, device="cpu")
    matrices = {name: module.weight for name, module in loaded.model.named_modules() if hasattr(module, "weight")}
    before = {name: weight.data for name, weight in matrices.items()}
    untouched = {name: tensor.clone() for name, tensor in before.items()}
    apply_sparse_edit(loaded, sparse.path)
    changed = [name for name, weight in matrices.items() if not torch.equal(weight.data, untouched[name])]
    assert changed  # the edit did something, through the same Parameter objects (ties kept)
    # The tensors the model held before (on the CPU a mapping of the model file) are left as they were.
    assert all(torch.equal(before[name], untouched[name]) for name in matrices)


def test_sparse_and_full_checkpoint_paths_generate_identical_text(both, tiny_model_dir: Path) -> None:
    spec, sparse, full = both
    from_sparse = _texts(spec, sparse)
    from_full = _texts(spec, full)
    assert from_sparse == from_full
    assert from_sparse != _texts(ConditionSpec("base", str(tiny_model_dir)), None)


def test_edit_refuses_other_base_weights(both, tiny_model_dir: Path) -> None:
    _spec, sparse, full = both
    other = load_model(full.path, device="cpu")  # the steered weights are not the base
    with pytest.raises(ValueError, match="made for base weights"):
        apply_sparse_edit(other, sparse.path)


def test_materialised_checkpoint_is_built_once_and_equals_the_edit(both, tiny_model_dir: Path) -> None:
    _spec, sparse, full = both
    target = materialise_checkpoint(tiny_model_dir, sparse.path)
    assert target == Path(sparse.path) / "full-checkpoint"
    assert weights_sha256(target) == full.sha256  # the same weights as the directly written checkpoint
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    assert materialise_checkpoint(tiny_model_dir, sparse.path) == target
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp
    # The checkpoint inside does not change the artifact's own hash.
    assert weights_sha256(sparse.path) == sparse.sha256


def test_model_hash_is_cached_on_disk_by_path_size_and_mtime(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "hashes.json"
    monkeypatch.setenv("MODEL_HASH_CACHE", str(cache))
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights v1")
    _HASH_CACHE.clear()
    first = weights_sha256(weights)
    stored = json.loads(cache.read_text())
    assert list(stored.values()) == [first]
    # Another process (an empty in-memory cache) reads the digest from the file, not the weights:
    # a planted digest proves it.
    key = next(iter(stored))
    cache.write_text(json.dumps({key: "planted"}))
    _HASH_CACHE.clear()
    assert weights_sha256(weights) == "planted"
    # A changed file (new size and mtime) is hashed again.
    weights.write_bytes(b"weights v2, longer")
    _HASH_CACHE.clear()
    assert weights_sha256(weights) not in ("planted", first)
    _HASH_CACHE.clear()
