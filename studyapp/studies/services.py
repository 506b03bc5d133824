"""Writes of the studies app: loading specs, generation jobs, stimuli, metrics, reports.

Model libraries (``generation.pipeline``, ``analysis``) are imported inside the functions
that need them, never at module level: the web process imports this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from studyapp.studies.models import (
    Condition,
    Deployment,
    DiversityMetric,
    GenerationJob,
    Item,
    LanguageModel,
    RatingDimension,
    Stimulus,
    Study,
    StudyReport,
    TaskFamily,
)
from studyapp.studies.spec import SpecError, StudySpec, spec_parse

logger = logging.getLogger(__name__)


class StudyLoadError(ValueError):
    """The spec is fine but cannot replace what the database holds."""


# --- Loading a spec -------------------------------------------------------------------


def study_load_file(*, path: str | Path, researchers: Sequence[str] = ()) -> tuple[Study, bool]:
    """Load a spec file; see :func:`study_load`. Raises :class:`SpecError` for a missing file too."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise SpecError([f"cannot read the file ({error.strerror or error})"], str(path)) from None
    return study_load(content=content, source=str(path), researchers=researchers)


def study_load(*, content: str | bytes, source: str = "spec", researchers: Sequence[str] = ()) -> tuple[Study, bool]:
    """Check a spec and write it, all or nothing. Returns ``(study, changed)``.

    Loading the same spec again (same sha256) changes nothing, so the demo and deploy
    scripts can load unconditionally. A different spec for an existing slug replaces the
    study's definition only while nothing has been generated or rated for it: rows that
    stimuli or ratings point to are never rewritten underneath them.
    """
    spec = spec_parse(content, source=source)
    users = _researchers_lookup(researchers, source)
    with transaction.atomic():
        study = Study.objects.select_for_update().filter(slug=spec.study["slug"]).first()
        if study is not None and study.spec_sha256 == spec.sha256:
            study.researchers.add(*users)
            return study, False
        if study is not None:
            if Stimulus.objects.filter(deployment__study=study).exists() or study.participants.exists():
                raise StudyLoadError(
                    f"{source}: study {study.slug!r} already has stimuli or participants; "
                    "load the changed spec under a new slug (or edit it in the admin)"
                )
            # Children only: the Study row (and its researchers) stays.
            study.deployments.all().delete()
            study.conditions.all().delete()
            study.language_models.all().delete()
            study.task_families.all().delete()
            study.dimensions.all().delete()
        study = _study_write(study=study, spec=spec)
        study.researchers.add(*users)
    return study, True


def _researchers_lookup(usernames: Sequence[str], source: str) -> list:
    if not usernames:
        return []
    users = list(get_user_model().objects.filter(username__in=usernames))
    missing = sorted(set(usernames) - {u.username for u in users})
    if missing:
        raise SpecError([f"researchers: no user named {name!r}" for name in missing], source)
    return users


def _study_write(*, study: Study | None, spec: StudySpec) -> Study:
    fields = dict(spec.study)
    fields.update(spec=_json_safe(spec.raw), spec_version=spec.version, spec_sha256=spec.sha256)
    if study is None:
        study = Study.objects.create(**fields)
    else:
        for name, value in fields.items():
            setattr(study, name, value)
        study.save()

    models = {
        m["key"]: LanguageModel.objects.create(study=study, key=m["key"], source=m["source"]) for m in spec.models
    }
    conditions = {
        c["key"]: Condition.objects.create(
            study=study,
            model=models[c["model"]],
            key=c["key"],
            label=c["label"],
            method=c["method"],
            params=c["params"],
            artifact_path=c["artifact_path"],
        )
        for c in spec.conditions
    }
    tasks = {}
    for t in spec.tasks:
        task = TaskFamily.objects.create(
            study=study,
            key=t["key"],
            template=t["template"],
            system_prompt=t["system_prompt"],
            parser=t["parser"],
            description=t["description"],
        )
        Item.objects.bulk_create([Item(task=task, key=i["key"], text=i["text"]) for i in t["items"]])
        tasks[t["key"]] = task
    RatingDimension.objects.bulk_create(
        [RatingDimension(study=study, position=position, **d) for position, d in enumerate(spec.dimensions)]
    )
    for d in spec.deployments:
        deployment = Deployment.objects.create(
            study=study, slug=d["slug"], model=models[d["model"]], task=tasks[d["task"]]
        )
        deployment.conditions.set([conditions[key] for key in d["conditions"]])
    return study


def _json_safe(value: Any) -> Any:
    # YAML may hold dates; the JSONField must not choke on them.
    return json.loads(json.dumps(value, default=str))


# --- Generation jobs ------------------------------------------------------------------


def sample_seed(*, study_seed: int, task_key: str, item_key: str, sample_index: int) -> int:
    """The seed of one sample, derived from the study's seed only.

    The condition is deliberately not part of it: a steered sample and its base
    counterpart share a seed (common random numbers), so their difference is the
    steering, not the dice. 31 bits: every RNG (torch, numpy, random) accepts it.
    """
    digest = hashlib.sha256(f"{study_seed}:{task_key}:{item_key}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFFFFFF


def generation_start(*, study: Study, deployments: Iterable[Deployment] | None = None) -> list[GenerationJob]:
    """Create (or reuse) one job per (deployment, condition) and queue the unfinished ones.

    Queued on commit: a worker must never pick up a job id whose row it cannot see yet.
    A finished job is not queued again; a job that is queued or running already is left
    alone, so pressing the button twice never runs a job twice at once.
    """
    from studyapp.studies.tasks import generation_run_job

    chosen = list(deployments) if deployments is not None else list(study.deployments.all())
    n_items = {
        task_id: count for task_id, count in _item_counts([d.task_id for d in chosen]).items()
    }  # one query for all tasks
    queued: list[GenerationJob] = []
    with transaction.atomic():
        pairs = Deployment.conditions.through.objects.filter(deployment__in=chosen).select_related("deployment")
        for pair in pairs:
            job, _ = GenerationJob.objects.select_for_update().get_or_create(
                deployment_id=pair.deployment_id, condition_id=pair.condition_id
            )
            total = n_items.get(pair.deployment.task_id, 0) * study.samples_per_item
            if job.status in (GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING):
                continue
            if job.status == GenerationJob.Status.SUCCEEDED and job.done >= total:
                continue
            job.status = GenerationJob.Status.QUEUED
            job.total = total
            job.error_message = ""
            job.save(update_fields=["status", "total", "error_message", "updated_at"])
            queued.append(job)
        for job in queued:
            transaction.on_commit(partial(generation_run_job.delay, job.pk))
    return queued


def _item_counts(task_ids: list[int]) -> dict[int, int]:
    from django.db.models import Count

    rows = TaskFamily.objects.filter(pk__in=task_ids).annotate(n=Count("items")).values_list("pk", "n")
    return dict(rows)


def generation_job_retry(*, job: GenerationJob) -> bool:
    """Queue a failed (or stuck) job again; the stimuli it stored are kept and skipped."""
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().get(pk=job.pk)
        if job.status == GenerationJob.Status.SUCCEEDED and job.done >= job.total:
            return False
        job.status = GenerationJob.Status.QUEUED
        job.error_message = ""
        job.save(update_fields=["status", "error_message", "updated_at"])
        from studyapp.studies.tasks import generation_run_job

        transaction.on_commit(lambda: generation_run_job.delay(job.pk))
    return True


def condition_spec(*, condition: Condition):
    """The library's view of a condition (generation.pipeline.ConditionSpec)."""
    from generation.pipeline import ConditionSpec

    return ConditionSpec(
        method=condition.method,
        model=condition.model.source,
        params=dict(condition.params),
        artifact_path=condition.artifact_path or None,
    )


def artifact_dir(*, condition: Condition) -> Path:
    """Where a condition's artifact is built: keyed by what determines it, so jobs of every
    deployment that use the condition share one artifact, and an edited condition gets a new one."""
    fingerprint = hashlib.sha256(
        json.dumps([condition.model.source, condition.method, condition.params], sort_keys=True).encode()
    ).hexdigest()[:12]
    return Path(settings.ARTIFACT_DIR) / condition.study.slug / f"{condition.key}-{fingerprint}"


def generation_job_run(*, job_id: int) -> GenerationJob:
    """Run one job to completion: the body of the ``generation_run_job`` task.

    Idempotent: pairs (item, sample) already stored are skipped, and every batch is stored
    with ``ignore_conflicts`` against the unique (job, item, sample_index) constraint, so a
    job redelivered after its worker died continues where the last batch was stored.
    """
    job = GenerationJob.objects.select_related(
        "deployment__study", "deployment__task", "condition__model", "condition__study"
    ).get(pk=job_id)
    study = job.deployment.study
    items = list(job.deployment.task.items.all())
    total = len(items) * study.samples_per_item
    if job.status == GenerationJob.Status.SUCCEEDED and Stimulus.objects.filter(job=job).count() >= total:
        # A redelivered message of a finished job (its worker died before the acknowledgement).
        return job
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.RUNNING,
        total=total,
        attempts=F("attempts") + 1,
        started_at=timezone.now(),
        finished_at=None,
        error_message="",
    )
    try:
        _generation_job_sample(job=job, items=items, total=total)
    except Exception as error:  # any failure is shown in the panel, with its message
        logger.exception("generation job %s failed", job.pk)
        GenerationJob.objects.filter(pk=job.pk).update(
            status=GenerationJob.Status.FAILED,
            error_message=f"{type(error).__name__}: {error}"[:4000],
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
    else:
        GenerationJob.objects.filter(pk=job.pk).update(
            status=GenerationJob.Status.SUCCEEDED, finished_at=timezone.now(), updated_at=timezone.now()
        )
        from studyapp.studies.tasks import metrics_compute_job

        transaction.on_commit(lambda: metrics_compute_job.delay(job.pk))
    job.refresh_from_db()
    return job


def _generation_job_sample(*, job: GenerationJob, items: list[Item], total: int) -> None:
    from generation.pipeline import DecodingSettings, SampleRequest, iter_samples, prepare_artifact

    study = job.deployment.study
    condition = job.condition
    stored = set(Stimulus.objects.filter(job=job).values_list("item_id", "sample_index"))
    requests = [
        SampleRequest(
            item_key=item.key,
            item_text=item.text,
            sample_index=index,
            seed=sample_seed(
                study_seed=study.seed, task_key=job.deployment.task.key, item_key=item.key, sample_index=index
            ),
        )
        for item in items
        for index in range(study.samples_per_item)
        if (item.pk, index) not in stored
    ]
    requests = _stimuli_copy_from_twins(job=job, requests=requests, items=items)
    GenerationJob.objects.filter(pk=job.pk).update(done=Stimulus.objects.filter(job=job).count())
    if not requests:
        return
    spec = condition_spec(condition=condition)
    artifact = prepare_artifact(spec, artifact_dir(condition=condition))
    if artifact is not None:
        Condition.objects.filter(pk=condition.pk).update(
            artifact_path=str(artifact.path),
            artifact_sha256=artifact.sha256,
            artifact_manifest=_json_safe(artifact.manifest),
        )
    family = task_family_for(task=job.deployment.task, items=items)
    decoding = DecodingSettings(**study.decoding)
    items_by_key = {item.key: item for item in items}
    started = time.monotonic()
    n_tokens = 0
    for batch in iter_samples(
        spec, artifact, family, requests, decoding, batch_size=study.generation_batch_size, progress=False
    ):
        stimuli_store_batch(
            job=job, samples=batch, items_by_key=items_by_key, artifact_sha256=artifact.sha256 if artifact else ""
        )
        n_tokens += sum(sample.n_new_tokens for sample in batch)
        elapsed = time.monotonic() - started
        GenerationJob.objects.filter(pk=job.pk).update(
            done=Stimulus.objects.filter(job=job).count(),
            tokens_per_second=round(n_tokens / elapsed, 2) if elapsed > 0 else None,
            updated_at=timezone.now(),
        )


def _stimuli_copy_from_twins(*, job: GenerationJob, requests: list, items: list[Item]) -> list:
    """Copy samples another deployment already generated under the same condition and item.

    A model's base condition serves several deployments (its AUT-weight and AUT-activation
    deployments, say). A sample's text depends only on the condition, item, sample index
    and seed, so the twin's text is exactly what this job would generate: copying it (as a
    new stimulus with its own token) halves the base generation of the paper's design.
    Returns the requests still to generate.
    """
    from generation.types import DecodingSettings

    wanted = {(request.item_key, request.sample_index): request for request in requests}
    if not wanted:
        return requests
    # Decoding may have been edited in the admin since the twin ran: copy only what matches.
    # (The temperature condition overrides the temperature; the twin shares the condition.)
    expected = DecodingSettings(**job.deployment.study.decoding).as_dict()
    compared = [key for key in expected if not (key == "temperature" and job.condition.method == "temperature")]
    items_by_key = {item.key: item for item in items}
    twins = (
        Stimulus.objects.filter(
            condition_id=job.condition_id, item__in=items, job__status=GenerationJob.Status.SUCCEEDED
        )
        .exclude(job=job)
        .select_related("item")
        .order_by("item_id", "sample_index", "pk")
    )
    copies: dict[tuple[str, int], Stimulus] = {}
    for twin in twins:
        request = wanted.get((twin.item.key, twin.sample_index))
        if request is None or twin.seed != request.seed or (twin.item.key, twin.sample_index) in copies:
            continue
        if any(twin.decoding.get(key) != expected[key] for key in compared):
            continue
        copies[(twin.item.key, twin.sample_index)] = Stimulus(
            job=job,
            deployment_id=job.deployment_id,
            condition_id=job.condition_id,
            item=items_by_key[twin.item.key],
            sample_index=twin.sample_index,
            prompt=twin.prompt,
            text=twin.text,
            seed=twin.seed,
            decoding=twin.decoding,
            model_source=twin.model_source,
            model_sha256=twin.model_sha256,
            artifact_sha256=twin.artifact_sha256,
            n_new_tokens=twin.n_new_tokens,
        )
    if copies:
        Stimulus.objects.bulk_create(list(copies.values()), ignore_conflicts=True)
    return [request for key, request in wanted.items() if key not in copies]


def task_family_for(*, task: TaskFamily, items: list[Item]):
    """The library's task family for a stored one (its items are the study's, not the shipped set)."""
    from generation.task_families import TaskFamily as LibraryTaskFamily
    from generation.task_families import TaskItem

    return LibraryTaskFamily(
        name=task.key,
        template=task.template,
        items=tuple(TaskItem(key=item.key, text=item.text) for item in items),
        system_prompt=task.system_prompt,
        parser=task.parser or None,
    )


def stimuli_store_batch(
    *, job: GenerationJob, samples: Sequence[Any], items_by_key: dict[str, Item], artifact_sha256: str
) -> int:
    """Store one batch of samples; a sample already stored is ignored (unique constraint)."""
    source = job.condition.model.source
    rows = [
        Stimulus(
            job=job,
            deployment_id=job.deployment_id,
            condition_id=job.condition_id,
            item=items_by_key[sample.item_key],
            sample_index=sample.sample_index,
            prompt=sample.prompt,
            text=sample.text,
            seed=sample.seed,
            decoding=_json_safe(sample.decoding),
            model_source=source,
            model_sha256=sample.model_sha256,
            artifact_sha256=artifact_sha256,
            n_new_tokens=sample.n_new_tokens,
        )
        for sample in samples
    ]
    return len(Stimulus.objects.bulk_create(rows, ignore_conflicts=True))


# --- Metrics --------------------------------------------------------------------------


def metrics_compute_job(*, job_id: int) -> int:
    """Per-stimulus metrics and per-(condition, item) diversity for one job, via analysis/.

    Recomputing overwrites: safe to run again after a retry added stimuli. A failure (say, a
    missing embedding model) is stored on the job and shown in the panel; the stimuli stay.
    """
    try:
        n = _metrics_compute(job_id=job_id)
    except Exception as error:  # shown on the dashboard; generation itself succeeded
        logger.exception("metrics of job %s failed", job_id)
        GenerationJob.objects.filter(pk=job_id).update(metrics_error=f"{type(error).__name__}: {error}"[:4000])
        return 0
    GenerationJob.objects.filter(pk=job_id).update(metrics_computed_at=timezone.now(), metrics_error="")
    return n


def _metrics_compute(*, job_id: int) -> int:
    import pandas as pd

    from analysis.metrics import diversity_by_group, stimulus_metrics

    job = GenerationJob.objects.select_related("deployment__task").get(pk=job_id)
    stimuli = list(Stimulus.objects.filter(job=job).select_related("item").order_by("item__key", "sample_index"))
    if not stimuli:
        return 0
    frame = pd.DataFrame(
        {
            "text": [s.text for s in stimuli],
            "task": job.deployment.task.key,
            "item": [s.item.key for s in stimuli],
            "item_text": [s.item.text for s in stimuli],
            "condition": job.condition_id,
        },
        index=[s.pk for s in stimuli],
    )
    per_stimulus = stimulus_metrics(frame, text_col="text", task_col="task", item_col="item")
    for stimulus in stimuli:
        stimulus.metrics = (
            _clean_metrics(per_stimulus.loc[stimulus.pk].to_dict()) if stimulus.pk in per_stimulus.index else {}
        )
    Stimulus.objects.bulk_update(stimuli, ["metrics"], batch_size=500)

    diversity = diversity_by_group(frame, group_cols=("condition", "item"), text_col="text")
    diversity = diversity.reset_index() if not {"condition", "item"} <= set(diversity.columns) else diversity
    items = {s.item.key: s.item for s in stimuli}
    counts = frame.groupby("item").size().to_dict()
    for row in diversity.to_dict("records"):
        item = items.get(str(row.pop("item")))
        row.pop("condition", None)
        if item is None:
            continue
        DiversityMetric.objects.update_or_create(
            deployment_id=job.deployment_id,
            condition_id=job.condition_id,
            item=item,
            defaults={"n_samples": int(counts.get(item.key, 0)), "metrics": _clean_metrics(row)},
        )
    return len(stimuli)


def _clean_metrics(values: dict) -> dict:
    """JSON-safe metrics: NaN becomes None (JSON has no NaN), numpy scalars become Python ones."""
    clean = {}
    for key, value in values.items():
        if hasattr(value, "item") and not isinstance(value, list | dict | str):
            value = value.item()
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            value = None
        clean[str(key)] = value
    return _json_safe(clean)


def metrics_start(*, study: Study) -> int:
    """Queue metrics for every succeeded job of a study (after an analysis/ upgrade, say)."""
    from studyapp.studies.tasks import metrics_compute_job

    job_ids = list(
        GenerationJob.objects.filter(deployment__study=study, status=GenerationJob.Status.SUCCEEDED).values_list(
            "pk", flat=True
        )
    )
    for job_id in job_ids:
        transaction.on_commit(partial(metrics_compute_job.delay, job_id))
    return len(job_ids)


# --- Exports and reports --------------------------------------------------------------


def export_write(*, study: Study, out_dir: str | Path) -> dict[str, Path]:
    """Write ratings and stimuli as CSV and Parquet into ``out_dir`` (documented in README.md, "The export")."""
    from studyapp.studies.selectors import export_ratings_frame, export_stimuli_frame

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in (("ratings", export_ratings_frame(study=study)), ("stimuli", export_stimuli_frame(study=study))):
        for fmt in ("csv", "parquet"):
            path = out_dir / f"{study.slug}-{name}.{fmt}"
            staging = path.with_name(f".{path.name}.tmp")
            if fmt == "csv":
                frame.to_csv(staging, index=False)
            else:
                frame.to_parquet(staging, index=False)
            staging.replace(path)  # atomic: a reader never sees half a file
            paths[f"{name}_{fmt}"] = path
    return paths


def report_request(*, study: Study, user=None) -> StudyReport:
    from studyapp.studies.tasks import report_build

    report = StudyReport.objects.create(study=study, requested_by=user)
    transaction.on_commit(lambda: report_build.delay(report.pk))
    return report


def report_build_run(*, report_id: int) -> StudyReport:
    """Export the study and run analysis.write_report on it; the body of the ``report_build`` task."""
    report = StudyReport.objects.select_related("study").get(pk=report_id)
    if report.status == StudyReport.Status.READY:
        return report
    out_dir = Path(settings.VAR_DIR) / "reports" / report.study.slug / str(report.pk)
    StudyReport.objects.filter(pk=report.pk).update(status=StudyReport.Status.RUNNING, out_dir=str(out_dir))
    try:
        from analysis.report import write_report
        from studyapp.studies.selectors import export_ratings_frame, export_stimuli_frame

        ratings = export_ratings_frame(study=report.study)
        stimuli = export_stimuli_frame(study=report.study)
        out_dir.mkdir(parents=True, exist_ok=True)
        html = Path(write_report(ratings, stimuli, out_dir))
        StudyReport.objects.filter(pk=report.pk).update(
            status=StudyReport.Status.READY,
            html_name=str(html.relative_to(out_dir)) if html.is_relative_to(out_dir) else html.name,
            n_ratings=len(ratings),
            finished_at=timezone.now(),
        )
    except Exception as error:  # shown on the report page instead of a traceback
        logger.exception("report %s failed", report.pk)
        StudyReport.objects.filter(pk=report.pk).update(
            status=StudyReport.Status.FAILED,
            error_message=f"{type(error).__name__}: {error}"[:4000],
            finished_at=timezone.now(),
        )
    report.refresh_from_db()
    return report


def slots_build(*, study: Study) -> dict[str, int] | str:
    """Build the rater slots of every deployment (the rating app's planner) once stimuli exist.

    Returns slots per deployment, or the planner's message when it refuses (e.g. slots
    already in use by raters and the stimuli changed).
    """
    from studyapp.rating.services import SlotPlanError, study_build_slots

    try:
        return study_build_slots(study=study)
    except SlotPlanError as error:
        return str(error)
