"""What generating a study will cost, read before any job runs (``load_study`` prints it).

Per model: generation jobs, samples, new tokens (an upper bound: every sample may run to
``max_new_tokens``), the disk space of its steering artifacts, and the GPU hours those
tokens take at the throughput measured by finished jobs of the same model source (on
any study), or at a throughput the researcher gives. Read-only; imports no torch.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.db.models import Avg

from studyapp.studies import paths
from studyapp.studies.models import Condition, Deployment, GenerationJob, Study
from studyapp.studies.spec import StudySpec

_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1}
_STEERING_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ModelPlan:
    model: str
    source: str
    backend: str
    device: str
    dtype: str
    jobs: int
    samples: int
    max_new_tokens: int
    n_parameters: int | None
    artifact_bytes: int | None  # None: the model folder is not on this machine
    full_checkpoint_bytes: int | None  # what full steered checkpoints would take instead
    tokens_per_second: float | None
    throughput_source: str

    @property
    def tokens(self) -> int:
        return self.samples * self.max_new_tokens

    @property
    def gpu_hours(self) -> float | None:
        if not self.tokens_per_second:
            return None
        return self.tokens / self.tokens_per_second / 3600


def model_folder(source: str) -> Path | None:
    """The model's folder (or .gguf file) on this machine, None when it is elsewhere (or
    outside MODEL_ROOTS, where nothing is opened)."""
    if source == "embedded":
        from generation.embedded import EMBEDDED_MODEL_NAME, default_cache_dir

        path = default_cache_dir() / EMBEDDED_MODEL_NAME
    elif paths.model_source_problem(source):
        return None
    else:
        path = Path(source).expanduser()
    return path if path.exists() else None


def count_parameters(path: Path) -> int | None:
    """Parameters in a model folder's safetensors files, read from their headers (no weights loaded)."""
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not files:
        return None
    total = 0
    for file in files:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                total += math.prod(entry["shape"])
    return total


# Share of weights the edit touches per unit of rho: the divergent and convergent top sets overlap
# heavily, so the set difference is far smaller than rho (SmolLM2-135M, all layers: rho 0.1 edits
# 0.29%, see docs/generation.md). An estimate until the artifact exists; then its real count is used.
EDITED_SHARE_PER_RHO = 0.06


def _weight_edit_bytes(n_parameters: int, condition: Condition) -> int:
    # The sparse edit stores one int32 index per edited weight.
    edited = (condition.artifact_manifest or {}).get("n_weights_edited")
    if edited is None:
        edited = n_parameters * float(condition.params.get("rho", 0.1)) * EDITED_SHARE_PER_RHO
    return int(edited) * 4


def study_plan(*, study: Study, tokens_per_second: float | None = None) -> list[ModelPlan]:
    """One :class:`ModelPlan` per model of ``study``, in key order."""
    pairs = list(Deployment.conditions.through.objects.filter(deployment__study=study).select_related("deployment"))
    items = {d.task_id: d.task.items.count() for d in study.deployments.select_related("task")}
    max_new_tokens = int(study.decoding.get("max_new_tokens", 128))
    conditions = {c.pk: c for c in Condition.objects.filter(study=study).select_related("model")}
    plans = []
    for model in study.language_models.order_by("key"):
        mine = [p for p in pairs if conditions[p.condition_id].model_id == model.pk]
        # A condition shared by deployments of one task is generated once (its twins are copied).
        generated = {(p.condition_id, p.deployment.task_id) for p in mine}
        samples = sum(items[task_id] * study.samples_per_item for _, task_id in generated)
        folder = model_folder(model.source)
        n_parameters = count_parameters(folder) if folder else None
        steering_bytes = _STEERING_BYTES.get(model.dtype, 2 if model.backend == "vllm" else 4)
        artifact_bytes: int | None = 0
        full_bytes: int | None = 0
        for condition in {conditions[p.condition_id] for p in mine}:
            if condition.method == "weight":
                if n_parameters is None:
                    artifact_bytes = full_bytes = None
                elif artifact_bytes is not None and full_bytes is not None:
                    artifact_bytes += _weight_edit_bytes(n_parameters, condition)
                    full_bytes += n_parameters * steering_bytes
            elif condition.method == "activation" and artifact_bytes is not None:
                artifact_bytes += 64 * 1024  # a few float32 vectors of the hidden size, plus metadata
        measured = (
            GenerationJob.objects.filter(condition__model__source=model.source, tokens_per_second__isnull=False)
            .aggregate(mean=Avg("tokens_per_second"))
            .get("mean")
        )
        if tokens_per_second:
            rate, origin = tokens_per_second, "given"
        elif measured:
            rate, origin = float(measured), "measured by earlier jobs of this model"
        else:
            rate, origin = None, "no measured throughput yet"
        plans.append(
            ModelPlan(
                model=model.key,
                source=model.source,
                backend=model.backend,
                device=model.device,
                dtype=model.dtype,
                jobs=len(mine),
                samples=samples,
                max_new_tokens=max_new_tokens,
                n_parameters=n_parameters,
                artifact_bytes=artifact_bytes,
                full_checkpoint_bytes=full_bytes,
                tokens_per_second=rate,
                throughput_source=origin,
            )
        )
    return plans


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def format_plan(plans: list[ModelPlan]) -> str:
    """The plan as the text table ``load_study`` prints."""
    lines = [
        f"{'model':<14} {'backend':<7} {'device':<7} {'dtype':<8} {'jobs':>4} {'samples':>7} {'tokens<=':>9} "
        f"{'artifacts':>10} {'(full ckpt)':>11} {'GPU-hours':>9}  throughput"
    ]
    for plan in plans:
        hours = "unknown" if plan.gpu_hours is None else f"{plan.gpu_hours:.2f}"
        rate = "" if plan.tokens_per_second is None else f"{plan.tokens_per_second:.0f} tok/s, "
        lines.append(
            f"{plan.model:<14} {plan.backend:<7} {plan.device:<7} {plan.dtype:<8} {plan.jobs:>4} {plan.samples:>7} "
            f"{plan.tokens:>9} {_size(plan.artifact_bytes):>10} {_size(plan.full_checkpoint_bytes):>11} "
            f"{hours:>9}  {rate}{plan.throughput_source}"
        )
    total_samples = sum(p.samples for p in plans)
    estimates = [p.gpu_hours for p in plans]
    known = sum(h for h in estimates if h is not None)
    suffix = "" if all(h is not None for h in estimates) else " (models without a throughput not counted)"
    lines.append(
        f"total: {sum(p.jobs for p in plans)} jobs, {total_samples} samples, "
        f"<= {sum(p.tokens for p in plans)} new tokens, {known:.2f} GPU-hours{suffix}"
    )
    return "\n".join(lines)


# --- The design a spec defines (``load_study --dry-run``) ---------------------------------


def format_design(spec: StudySpec) -> str:
    """The conditions and deployments a checked spec defines (its factorial block expanded), as
    text tables: what ``load_study --dry-run`` prints before anything is written."""
    conditions = [
        (
            c["key"],
            c["model"],
            c["method"] if c["label"] == c["method"] else f"{c['method']} as {c['label']}",
            " ".join(f"{name}={value}" for name, value in c["params"].items())
            + (f" artifact={c['artifact_path']}" if c["artifact_path"] else ""),
        )
        for c in spec.conditions
    ]
    labels = {c["key"]: c["label"] for c in spec.conditions}
    items = {t["key"]: len(t["items"]) for t in spec.tasks}
    deployments = [_design_row(spec.study, d, labels, items) for d in spec.deployments]
    rated = [d for d in spec.deployments if not d["automatic_only"]]
    raters = sum(d["raters"]["raters_per_deployment"] or spec.study["raters_per_deployment"] for d in rated)
    return "\n".join(
        [
            f"conditions ({len(conditions)}):",
            *_table(("key", "model", "method", "params"), conditions),
            f"deployments ({len(deployments)}: {len(rated)} rated by {raters} raters, "
            f"{len(deployments) - len(rated)} automatic only):",
            *_table(("slug", "model", "task", "conditions", "items x samples", "raters"), deployments),
        ]
    )


def _design_row(study: dict, deployment: dict, labels: dict[str, str], items: dict[str, int]) -> tuple[str, ...]:
    own = deployment["raters"]
    samples = deployment["samples_per_item"] or study["samples_per_item"]
    rated = (
        own["rated_samples_per_item"] if own["rated_samples_per_item"] is not None else study["rated_samples_per_item"]
    )
    if deployment["automatic_only"]:
        raters = "automatic only"
    else:
        per_rater = own["stimuli_per_rater"] or study["stimuli_per_rater"]
        raters = f"{own['raters_per_deployment'] or study['raters_per_deployment']} x {per_rater} stimuli"
    shown_rated = f" ({rated} rated)" if rated is not None and not deployment["automatic_only"] else ""
    return (
        deployment["slug"],
        deployment["model"],
        deployment["task"],
        ", ".join(labels[key] for key in deployment["conditions"]),
        f"{items.get(deployment['task'], 0)} x {samples}{shown_rated}",
        raters,
    )


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  " + "  ".join(f"{cell!s:<{width}}" for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
