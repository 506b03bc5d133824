"""The platform's entry point: build a condition's artifact, then sample responses in batches.

A Celery generation job calls :func:`prepare_artifact` once and :func:`iter_samples` once,
storing each yielded batch as it comes. This module imports no torch at import time (the
web process imports it for the types); the heavy modules load inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.task_families import TaskFamily, build_prompt
from generation.types import Artifact, ConditionSpec, DecodingSettings, Sample, SampleRequest

if TYPE_CHECKING:
    from generation.backends import GenerationBackend
    from generation.loading import LoadedModel
    from generation.sampling import GeneratedText

__all__ = [
    "Artifact",
    "ConditionSpec",
    "DecodingSettings",
    "Sample",
    "SampleRequest",
    "condition_decoding",
    "generate_samples",
    "iter_samples",
    "load_artifact",
    "prepare_artifact",
]

WEIGHT_MANIFEST = "manifest.json"
VECTOR_FILE = "steering_vector.safetensors"
NO_ARTIFACT_METHODS = ("base", "prompt", "temperature")
_ACTIVATION_PARAMS = {"prompt_set", "layers", "coeff", "prompt_file"}


def _activation_params(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(params) - _ACTIVATION_PARAMS
    if unknown:
        raise ValueError(f"unknown activation-steering parameters: {', '.join(sorted(unknown))}")
    return {
        "prompt_set": str(params.get("prompt_set", "dat")),
        "layers": params.get("layers"),
        "prompt_file": params.get("prompt_file"),
    }


def _prompt_set_hash(params: Mapping[str, Any]) -> str:
    from generation.prompt_sets import get_prompt_set

    return get_prompt_set(str(params.get("prompt_set", "dat")), params.get("prompt_file")).sha256


def _fingerprint(spec: ConditionSpec, base_sha256: str) -> str:
    """What makes two artifacts interchangeable: method, base weights, and parameters that shape the artifact.

    The activation coefficient is applied at sampling time, so it is left out: one vector
    serves every coefficient.
    """
    if spec.method == "weight":
        from generation.weight_steering import WeightSteeringConfig

        params = WeightSteeringConfig.from_params(dict(spec.params)).as_dict()
    else:
        params = _activation_params(spec.params)
    params["prompt_sha256"] = _prompt_set_hash(params)
    payload = json.dumps({"method": spec.method, "base": base_sha256, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_artifact(path: str | Path) -> Artifact:
    """Open an existing artifact: a steered checkpoint directory, or a steering-vector file (or its directory).

    The hash is recomputed from the files, so a corrupted artifact cannot pass as the
    recorded one.

    Raises
    ------
    FileNotFoundError
        Nothing usable at ``path``.
    """
    from generation.loading import weights_sha256

    path = Path(path)
    if path.is_dir() and (path / VECTOR_FILE).is_file():
        path = path / VECTOR_FILE
    if path.is_dir():
        manifest_file = path / WEIGHT_MANIFEST
        if not manifest_file.is_file():
            raise FileNotFoundError(f"{path} is not a complete steered checkpoint (no {WEIGHT_MANIFEST})")
        return Artifact(path=str(path), sha256=weights_sha256(path), manifest=json.loads(manifest_file.read_text()))
    if path.is_file() and path.suffix == ".safetensors":
        sidecar = path.with_suffix(".json")
        manifest = json.loads(sidecar.read_text()) if sidecar.is_file() else {"method": "activation"}
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return Artifact(path=str(path), sha256=digest, manifest=manifest)
    raise FileNotFoundError(
        f"no steering artifact at {path}: expected a steered checkpoint directory or a .safetensors vector file"
    )


def _reusable(out_dir: Path, fingerprint: str) -> Artifact | None:
    try:
        artifact = load_artifact(out_dir)
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
    manifest = artifact.manifest
    if manifest.get("spec_fingerprint") != fingerprint or manifest.get("sha256") != artifact.sha256:
        return None
    return artifact


def prepare_artifact(
    spec: ConditionSpec,
    out_dir: Path,
    *,
    device: str | None = None,
    dtype: str | None = None,
    full_checkpoint: bool = False,
    progress: bool = False,
) -> Artifact | None:
    """Build (or reuse) the weight edit or the steering vector of a condition.

    Returns ``None`` for methods with no artifact (``base``, ``prompt``, ``temperature``).
    ``spec.artifact_path`` reuses that artifact as is. Otherwise ``out_dir`` receives the
    artifact: for ``weight`` the sparse edit (the indices of the edited weights per matrix
    and the factor, see :mod:`generation.sparse_edit`), or with ``full_checkpoint`` a whole
    steered checkpoint directory (safetensors, config, tokenizer, ``manifest.json``); for
    ``activation`` it holds ``steering_vector.safetensors`` and its ``.json`` metadata. When
    ``out_dir`` already holds a complete artifact for the same spec, format and base
    weights, it is reused. Writes are atomic (staging directory + rename), so a killed job
    never leaves a half artifact.
    """
    if spec.method in NO_ARTIFACT_METHODS:
        return None
    if spec.artifact_path:
        return load_artifact(spec.artifact_path)

    from generation.loading import load_model, resolve_model_path, weights_sha256

    out_dir = Path(out_dir)
    base_sha256 = weights_sha256(resolve_model_path(spec.model))
    fingerprint = _fingerprint(spec, base_sha256)
    if spec.method == "weight" and not full_checkpoint:
        # The sparse edit and the full checkpoint of one spec are different artifacts.
        fingerprint = hashlib.sha256(f"{fingerprint}:sparse".encode()).hexdigest()
    existing = _reusable(out_dir, fingerprint)
    if existing is not None:
        return existing

    loaded = load_model(spec.model, device=device, dtype=dtype)
    if spec.method == "weight":
        _write_weight_edit(spec, loaded, fingerprint, out_dir, full_checkpoint=full_checkpoint, progress=progress)
    else:
        _write_steering_vectors(spec, loaded, fingerprint, out_dir, progress=progress)
    return load_artifact(out_dir)


def _write_weight_edit(
    spec: ConditionSpec, loaded: LoadedModel, fingerprint: str, out_dir: Path, *, full_checkpoint: bool, progress: bool
) -> None:
    from generation.sparse_edit import save_sparse_edit
    from generation.weight_steering import WeightSteeringConfig, compute_weight_edit, save_steered_checkpoint

    config = WeightSteeringConfig.from_params(dict(spec.params))
    edit, manifest = compute_weight_edit(loaded, config, record_indices=not full_checkpoint, progress=progress)
    manifest["spec_fingerprint"] = fingerprint
    if full_checkpoint:
        save_steered_checkpoint(loaded, manifest, out_dir)
    else:
        edit_dtype = str(next(loaded.model.parameters()).dtype).removeprefix("torch.")
        save_sparse_edit(edit, manifest, out_dir, edit_dtype=edit_dtype)


def _write_steering_vectors(
    spec: ConditionSpec, loaded: LoadedModel, fingerprint: str, out_dir: Path, *, progress: bool
) -> None:
    from generation.activation_steering import compute_steering_vectors
    from generation.atomic import atomic_directory

    params = _activation_params(spec.params)
    vectors = compute_steering_vectors(loaded, progress=progress, **params)
    vectors.metadata["spec_fingerprint"] = fingerprint
    with atomic_directory(out_dir) as staging:
        # save() records the file's hash in the sidecar; the reuse check compares the two.
        vectors.save(staging / VECTOR_FILE)


def condition_decoding(spec: ConditionSpec, decoding: DecodingSettings) -> DecodingSettings:
    """The decoding settings a condition actually uses (the ``temperature`` condition overrides them)."""
    if spec.method == "temperature":
        if "temperature" not in spec.params:
            raise ValueError("the temperature condition needs params['temperature']")
        return replace(decoding, temperature=float(spec.params["temperature"]), do_sample=True)
    return decoding


def _batches(requests: Sequence[SampleRequest], size: int) -> Iterator[Sequence[SampleRequest]]:
    for start in range(0, len(requests), size):
        yield requests[start : start + size]


def iter_samples(
    spec: ConditionSpec,
    artifact: Artifact | None,
    family: TaskFamily,
    requests: Sequence[SampleRequest],
    decoding: DecodingSettings,
    *,
    batch_size: int = 16,
    progress: bool = False,
    backend: str = "hf",
    device: str | None = None,
    dtype: str | None = None,
) -> Iterator[list[Sample]]:
    """Generate one response per request under a condition, yielding one list of Samples per batch.

    Long because each parameter is documented; the body is validation, then one loop over batches.

    The model loads once, at the first ``next()``. Each request's text depends only on
    (model, condition, item, sample index, seed), not on the batch it lands in, so a
    retried job regenerates exactly what it lost.

    Parameters
    ----------
    spec
        The condition. ``weight`` samples from the base model with ``artifact`` (the sparse
        edit) applied, or from ``artifact`` itself when it is a full steered checkpoint;
        ``activation`` adds the artifact's vectors times ``params['coeff']``; ``prompt``
        appends ``params['instruction']`` to the task text; ``temperature`` overrides the
        sampling temperature.
    artifact
        From :func:`prepare_artifact`; ``None`` loads ``spec.artifact_path`` when set.
    family
        The task family whose template and chat template make the prompts.
    requests
        What to generate; results come back in the same order.
    decoding
        Sampling settings before condition overrides; each Sample records those used.
    batch_size
        Rows per forward pass (16 suits a CPU; larger on a GPU).
    progress
        Show a tqdm bar over requests.
    backend
        ``"hf"`` (default) or ``"vllm"`` (not for activation steering; a sparse weight edit is
        turned into a full checkpoint once, since vLLM loads weights from disk).
    device, dtype
        Where and in which precision the model runs (default: CUDA with bfloat16 when present).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    artifact = _condition_artifact(spec, artifact)
    instruction = _instruction(spec)
    used = condition_decoding(spec, decoding)
    if not requests:
        return

    from tqdm.auto import tqdm

    from generation.sampling import derive_row_seed

    engine, coeff = _condition_backend(spec, artifact, backend, device=device, dtype=dtype)
    condition = {
        "method": spec.method,
        "params": {**dict(spec.params), **({"coeff": coeff} if spec.method == "activation" else {})},
        "artifact_sha256": artifact.sha256 if artifact else None,
        "backend": backend,
    }
    decoding_record = used.as_dict()
    with tqdm(total=len(requests), desc=f"{spec.method}:{family.name}", disable=not progress, unit="sample") as bar:
        for batch in _batches(requests, batch_size):
            prompts = [build_prompt(engine.tokenizer, family, request.item_text, instruction) for request in batch]
            seeds = [derive_row_seed(r.seed, r.item_key, r.sample_index) for r in batch]
            results = engine.generate(prompts, seeds, used)
            bar.update(len(batch))
            yield [
                _sample(request, prompt, result, decoding=decoding_record, condition=condition, engine=engine)
                for request, prompt, result in zip(batch, prompts, results, strict=True)
            ]


def _condition_artifact(spec: ConditionSpec, artifact: Artifact | None) -> Artifact | None:
    """The condition's artifact: the one given, else the one at ``spec.artifact_path``; required when steered."""
    if artifact is None and spec.artifact_path:
        artifact = load_artifact(spec.artifact_path)
    if spec.method in ("weight", "activation") and artifact is None:
        raise ValueError(f"the {spec.method} condition needs an artifact: call prepare_artifact first")
    return artifact


def _sample(
    request: SampleRequest,
    prompt: str,
    result: GeneratedText,
    *,
    decoding: dict[str, Any],
    condition: dict[str, Any],
    engine: GenerationBackend,
) -> Sample:
    """One generated response with its provenance (each Sample gets its own copies of the records)."""
    return Sample(
        item_key=request.item_key,
        sample_index=request.sample_index,
        seed=request.seed,
        prompt=prompt,
        text=result.text,
        n_new_tokens=result.n_new_tokens,
        decoding=dict(decoding),
        model_sha256=engine.model_sha256,
        condition=dict(condition),
        finished=result.finished,
    )


def _instruction(spec: ConditionSpec) -> str | None:
    """The text the ``prompt`` condition appends to each task; ``None`` for the other methods."""
    if spec.method != "prompt":
        return None
    instruction = str(spec.params.get("instruction") or "").strip()
    if not instruction:
        raise ValueError("the prompt condition needs params['instruction']")
    return instruction


def _condition_backend(
    spec: ConditionSpec, artifact: Artifact | None, backend: str, *, device: str | None, dtype: str | None
) -> tuple[Any, float]:
    """The backend that samples under the condition (its model steered as the artifact says), and the coefficient."""
    from generation.backends import make_backend
    from generation.sparse_edit import is_sparse_edit

    vectors = None
    coeff = 0.0
    model_ref: str = spec.model
    weight_edit = None
    if spec.method == "weight":
        assert artifact is not None  # noqa: S101 (narrows the type: prepare_artifact returns one for "weight")
        if is_sparse_edit(artifact.path):
            weight_edit = artifact.path  # applied to the base model as it loads
        else:
            model_ref = artifact.path
    elif spec.method == "activation":
        assert artifact is not None  # noqa: S101 (narrows the type: prepare_artifact returns one for "activation")
        from generation.activation_steering import DEFAULT_COEFF, SteeringVectors

        vectors = SteeringVectors.load(artifact.path).vectors
        coeff = float(spec.params.get("coeff", DEFAULT_COEFF))
    engine = make_backend(
        backend, model_ref, steering_vectors=vectors, coeff=coeff, weight_edit=weight_edit, device=device, dtype=dtype
    )
    if spec.method == "activation" and artifact is not None:
        made_for = artifact.manifest.get("base_model", {}).get("sha256")
        if made_for and made_for != engine.model_sha256:
            warnings.warn(
                f"steering vector {artifact.path} was computed on weights {made_for[:12]}, "
                f"sampling from {engine.model_sha256[:12]}",
                stacklevel=3,  # the caller of iter_samples
            )
    return engine, coeff


def generate_samples(
    spec: ConditionSpec,
    family: TaskFamily,
    requests: Sequence[SampleRequest],
    decoding: DecodingSettings | None = None,
    *,
    artifact_dir: Path | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> list[Sample]:
    """Notebook convenience: prepare the artifact (in ``artifact_dir``) and collect every sample in a list."""
    artifact = None
    if spec.method not in NO_ARTIFACT_METHODS:
        if artifact_dir is None and not spec.artifact_path:
            raise ValueError(f"the {spec.method} condition needs artifact_dir (or spec.artifact_path)")
        artifact = prepare_artifact(spec, Path(artifact_dir or "."), progress=progress)
    samples: list[Sample] = []
    for batch in iter_samples(
        spec, artifact, family, requests, decoding or DecodingSettings(), batch_size=batch_size, progress=progress
    ):
        samples.extend(batch)
    return samples
