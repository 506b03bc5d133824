"""The weight edit as a sparse artifact: which weights were scaled, and by how much.

The CreativityNeuro edit multiplies a small set of weights (well under 1% on the embedded
model) by one factor ``1 + alpha``. Storing the whole steered checkpoint repeats every
unchanged weight: about 15 GB per condition for a 7B model in bf16. This artifact stores
only the flat indices of the edited entries of each matrix, the factor, the dtype the
edit was computed in, and the base model's weight hash; applying it to the loaded base
model takes a fraction of the load time.

Directory layout::

    edit.safetensors   one int32/int64 tensor of sorted flat indices per edited matrix
    manifest.json      "format": "sparse-weight-edit-v1", factor, edit_dtype, base_model,
                       parameters, counts, "sha256" (the artifact's content hash)

Applying reproduces the full checkpoint's weights exactly: each selected entry is
converted to the edit's dtype, multiplied by the factor, and converted back, which is
what the full-checkpoint path does when it edits in that dtype, saves, and is loaded in
the serving dtype.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from generation.atomic import atomic_directory
from generation.loading import LoadedModel, load_model, quiet_transformers, weights_sha256
from generation.weight_steering import MANIFEST_NAME, WeightEdit, save_steered_checkpoint

SPARSE_FORMAT = "sparse-weight-edit-v1"
EDIT_FILE = "edit.safetensors"
FULL_CHECKPOINT_DIR = "full-checkpoint"


def is_sparse_edit(path: str | Path) -> bool:
    """True for a directory holding a sparse weight edit (not a full checkpoint)."""
    return (Path(path) / EDIT_FILE).is_file()


def save_sparse_edit(edit: WeightEdit, manifest: dict[str, Any], out_dir: str | Path, *, edit_dtype: str) -> str:
    """Write the edit's indices and ``manifest.json`` atomically; return the artifact's hash.

    ``manifest`` is what :func:`generation.weight_steering.compute_weight_edit` returned;
    the factor is taken from its parameters (``1 + alpha``).
    """
    tensors = {}
    for name, indices in edit.indices.items():
        if not indices.numel():
            continue
        small = int(indices.max()) < 2**31
        tensors[name] = torch.sort(indices).values.to(torch.int32 if small else torch.int64).contiguous()
    with atomic_directory(Path(out_dir)) as staging:
        save_file(tensors, str(staging / EDIT_FILE), metadata={"format": SPARSE_FORMAT})
        (staging / EDIT_FILE).chmod(0o644)
        digest = weights_sha256(staging)
        complete = {
            **manifest,
            "format": SPARSE_FORMAT,
            "factor": 1.0 + float(manifest["parameters"]["alpha"]),
            "edit_dtype": edit_dtype,
            "sha256": digest,
        }
        # Written last: its presence marks the artifact complete.
        (staging / MANIFEST_NAME).write_text(json.dumps(complete, indent=2, sort_keys=True) + "\n")
    return digest


def read_manifest(path: str | Path) -> dict[str, Any]:
    manifest_file = Path(path) / MANIFEST_NAME
    if not manifest_file.is_file():
        raise FileNotFoundError(f"{path} is not a complete sparse weight edit (no {MANIFEST_NAME})")
    manifest: dict[str, Any] = json.loads(manifest_file.read_text())
    if manifest.get("format") != SPARSE_FORMAT:
        raise ValueError(f"{path} is not a {SPARSE_FORMAT} artifact (format {manifest.get('format')!r})")
    return manifest


def steered_model_sha256(base_sha256: str, edit_sha256: str) -> str:
    """The identity of "base weights with this edit applied", recorded with every sample made from it."""
    return hashlib.sha256(f"base:{base_sha256}\0sparse-edit:{edit_sha256}".encode()).hexdigest()


@torch.no_grad()
def apply_sparse_edit(loaded: LoadedModel, path: str | Path) -> LoadedModel:
    """Apply the edit at ``path`` to ``loaded.model`` in place; set ``loaded.sha256`` to the steered identity.

    Raises
    ------
    ValueError
        The edit was made for other base weights, or names a matrix the model lacks.
    """
    path = Path(path)
    manifest = read_manifest(path)
    made_for = manifest.get("base_model", {}).get("sha256")
    if made_for != loaded.sha256:
        raise ValueError(
            f"the weight edit {path} was made for base weights {str(made_for)[:12]}, "
            f"the model loaded has {loaded.sha256[:12]}"
        )
    factor = float(manifest["factor"])
    edit_dtype = getattr(torch, str(manifest.get("edit_dtype", "float32")))
    modules = dict(loaded.model.named_modules())
    for name, indices in load_file(str(path / EDIT_FILE)).items():
        module = modules.get(name)
        if module is None or not hasattr(module, "weight"):
            raise ValueError(f"the weight edit {path} names {name!r}, which the model does not have")
        weight = module.weight
        if weight.device.type == "cpu":
            # On the CPU the weights are a private mapping of the model file, read lazily:
            # scattered writes into it copy the file page by page, one fault per 4 KB page
            # (nearly every page of an edited matrix), which made the sparse path's job
            # measurably slower than the full checkpoint's. One bulk copy per matrix costs
            # a fraction of that, and spreads over torch's threads.
            weight.data = weight.data.clone()
        flat = weight.data.view(-1)
        where = indices.to(flat.device, torch.long)
        flat[where] = (flat[where].to(edit_dtype) * factor).to(flat.dtype)
    loaded.sha256 = steered_model_sha256(made_for, str(manifest["sha256"]))
    return loaded


def load_edited_model(
    base_model: str | Path, path: str | Path, *, device: str | None = None, dtype: str | None = None
) -> LoadedModel:
    """Load the base model and apply the sparse edit at ``path``."""
    return apply_sparse_edit(load_model(base_model, device=device, dtype=dtype), path)


def materialise_checkpoint(base_model: str | Path, path: str | Path, out_dir: str | Path | None = None) -> Path:
    """A full steered checkpoint for backends that load weights from disk (vLLM); built once, then reused.

    Default location: ``<artifact>/full-checkpoint``. Built in the edit's dtype on the CPU,
    so its weights equal what :func:`apply_sparse_edit` produces.
    """
    path = Path(path)
    manifest = read_manifest(path)
    target = Path(out_dir) if out_dir else path / FULL_CHECKPOINT_DIR
    if (target / MANIFEST_NAME).is_file():
        existing = json.loads((target / MANIFEST_NAME).read_text())
        if existing.get("sparse_edit_sha256") == manifest["sha256"]:
            return target
    loaded = load_edited_model(base_model, path, device="cpu", dtype=str(manifest.get("edit_dtype", "float32")))
    with quiet_transformers():
        full = {key: value for key, value in manifest.items() if key not in ("format", "sha256", "factor")}
        save_steered_checkpoint(loaded, {**full, "sparse_edit_sha256": manifest["sha256"]}, target)
    return target
