"""Stage 2, generation: one job per (deployment, condition), run by a worker, its stimuli stored.

Starting, queueing, retrying and running jobs; copying twin samples another deployment
already generated; storing stimuli; excluding a stimulus and generating its replacement.
Model libraries (``generation.pipeline``) are imported inside the functions that need
them, never at module level: the web process imports this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F
from django.utils import timezone

from studyapp.studies import paths
from studyapp.studies.models import (
    Condition,
    Deployment,
    GenerationJob,
    Item,
    LanguageModel,
    Stimulus,
    Study,
    TaskFamily,
)
from studyapp.studies.study_loading import StudyLoadError, json_safe

logger = logging.getLogger(__name__)


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
            total = n_items.get(pair.deployment.task_id, 0) * (
                pair.deployment.samples_per_item or study.samples_per_item
            )
            if job.status in GenerationJob.BUSY:
                continue
            if job.status == GenerationJob.Status.SUCCEEDED and job.done >= total:
                continue
            job.total = total
            _job_queue(job=job, also_update=["total"])
            queued.append(job)
    return queued


def _job_queue(*, job: GenerationJob, also_update: Sequence[str] = ()) -> None:
    """Mark a job (locked by the caller's transaction) queued and hand it to the broker on commit."""
    job.status = GenerationJob.Status.QUEUED
    job.error_message = ""
    job.save(update_fields=["status", "error_message", "updated_at", *also_update])
    transaction.on_commit(partial(generation_job_enqueue, job_id=job.pk))


BROKER_DOWN = (
    "the task queue (Redis) could not be reached, so this job was not queued; nothing was lost: "
    "retry it (or start generation again) once the queue is back"
)


def generation_job_enqueue(*, job_id: int) -> bool:
    """Hand a queued job to the broker. If the broker is unreachable the job is marked
    failed with a message that says so, never left "queued" with no message behind it
    (a job in that state would never run and never be queued again)."""
    from kombu.exceptions import OperationalError as BrokerUnreachable

    from studyapp.studies.tasks import generation_job_run_task

    try:
        # ignore_result: the job's row is its state; subscribing to a result first would block
        # for ~20 s of backend retries on a dead Redis before the publish even fails.
        generation_job_run_task.apply_async((job_id,), ignore_result=True)
    except BrokerUnreachable:
        logger.warning("generation job %s not queued: broker unreachable", job_id, exc_info=True)
        GenerationJob.objects.filter(pk=job_id, status=GenerationJob.Status.QUEUED).update(
            status=GenerationJob.Status.FAILED, error_message=BROKER_DOWN
        )
        return False
    return True


def _item_counts(task_ids: list[int]) -> dict[int, int]:
    rows = TaskFamily.objects.filter(pk__in=task_ids).annotate(n=Count("items")).values_list("pk", "n")
    return dict(rows)


def generation_job_retry(*, job: GenerationJob) -> bool:
    """Queue a job again (a failed one, say); the stimuli it stored are kept and skipped.
    False: it is complete, nothing to do.

    Raises
    ------
    StudyLoadError
        The job is queued or running: queueing it again would run it twice at once.
    """
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().select_related("deployment", "condition").get(pk=job.pk)
        if job.status in GenerationJob.BUSY:
            raise StudyLoadError(
                f"job {job} is {job.status} already: it was not queued again (only a failed job is retried)"
            )
        if job.status == GenerationJob.Status.SUCCEEDED and job.done >= job.total:
            return False
        _job_queue(job=job)
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


def model_run_options(*, model: LanguageModel) -> dict[str, Any]:
    """The spec's backend, device and dtype as ``generation.pipeline.iter_samples`` takes them ("auto": its default)."""
    return {
        "backend": model.backend or "hf",
        "device": None if model.device in ("", "auto") else model.device,
        "dtype": None if model.dtype in ("", "auto") else model.dtype,
    }


def artifact_dir(*, condition: Condition) -> Path:
    """Where a condition's artifact is built: keyed by what determines it, so jobs of every
    deployment that use the condition share one artifact, and an edited condition gets a new one."""
    fingerprint = hashlib.sha256(
        json.dumps([condition.model.source, condition.method, condition.params], sort_keys=True).encode()
    ).hexdigest()[:12]
    return Path(settings.ARTIFACT_DIR) / condition.study.slug / f"{condition.key}-{fingerprint}"


def generation_job_run(*, job_id: int) -> GenerationJob:
    """Run one job to completion: the body of ``generation_job_run_task``.

    Idempotent: pairs (item, sample) already stored are skipped, and every batch is stored
    with ``ignore_conflicts`` against the unique (job, item, sample_index) constraint, so a
    job redelivered after its worker died continues where the last batch was stored.
    """
    job = GenerationJob.objects.select_related(
        "deployment__study", "deployment__task", "condition__model", "condition__study"
    ).get(pk=job_id)
    items = list(job.deployment.task.items.all())
    total = len(items) * job.deployment.generated_samples_per_item
    if job.status == GenerationJob.Status.SUCCEEDED and _round_stimuli(job).count() >= total:
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
        from studyapp.studies.tasks import metrics_compute_task

        transaction.on_commit(lambda: metrics_compute_task.delay(job.pk))
    job.refresh_from_db()
    return job


def _generation_job_sample(*, job: GenerationJob, items: list[Item], total: int) -> None:
    from generation.pipeline import DecodingSettings, SampleRequest, iter_samples, prepare_artifact

    study = job.deployment.study
    condition = job.condition
    # Before anything is opened: a path outside its roots is refused, saying only where paths may lie.
    paths.condition_paths_require(condition=condition)
    stored = set(_round_stimuli(job).values_list("item_id", "sample_index"))
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
        for index in range(job.deployment.generated_samples_per_item)
        if (item.pk, index) not in stored
    ]
    requests = _stimuli_copy_from_twins(job=job, requests=requests, items=items)
    replacing = _replacement_requests(job=job, items=items)
    requests += list(replacing.values())
    GenerationJob.objects.filter(pk=job.pk).update(done=_round_stimuli(job).count())
    if not requests:
        return
    spec = condition_spec(condition=condition)
    run = model_run_options(model=condition.model)
    artifact = prepare_artifact(spec, artifact_dir(condition=condition), device=run["device"], dtype=run["dtype"])
    if artifact is not None:
        Condition.objects.filter(pk=condition.pk).update(
            artifact_path=str(artifact.path),
            artifact_sha256=artifact.sha256,
            artifact_manifest=json_safe(artifact.manifest),
        )
    family = task_family_for(task=job.deployment.task, items=items)
    decoding = DecodingSettings(**study.decoding)
    items_by_key = {item.key: item for item in items}
    started = time.monotonic()
    n_tokens = 0
    for batch in iter_samples(
        spec, artifact, family, requests, decoding, batch_size=study.generation_batch_size, progress=False, **run
    ):
        stimuli_store_batch(
            job=job,
            samples=batch,
            items_by_key=items_by_key,
            artifact_sha256=artifact.sha256 if artifact else "",
            replacing={key: replaced for replaced, key in _replaced_keys(replacing).items()},
        )
        n_tokens += sum(sample.n_new_tokens for sample in batch)
        elapsed = time.monotonic() - started
        GenerationJob.objects.filter(pk=job.pk).update(
            done=_round_stimuli(job).count(),
            tokens_per_second=round(n_tokens / elapsed, 2) if elapsed > 0 else None,
            updated_at=timezone.now(),
        )


def _round_stimuli(job: GenerationJob):
    """The job's stimuli of its study's current generation round (``job.deployment.study`` loaded)."""
    return Stimulus.objects.filter(job=job, generation_round=job.deployment.study.generation_round)


def _replacement_requests(*, job: GenerationJob, items: list[Item]) -> dict[int, Any]:
    """One request per excluded stimulus of ``job`` that has no replacement yet, keyed by its id.

    A replacement takes the next free sample index of its item, so its seed (derived from the
    index) is new: regenerating with the old seed would give the same text back.
    """
    from generation.types import SampleRequest

    study = job.deployment.study
    excluded = list(
        _round_stimuli(job)
        .filter(excluded_at__isnull=False, replacements__isnull=True)
        .select_related("item")
        .order_by("item_id", "sample_index")
    )
    if not excluded:
        return {}
    next_index: dict[int, int] = {}
    for item_id, index in _round_stimuli(job).values_list("item_id", "sample_index"):
        next_index[item_id] = max(next_index.get(item_id, 0), index + 1)
    requests = {}
    for stimulus in excluded:
        index = max(next_index.get(stimulus.item_id, 0), study.samples_per_item)
        next_index[stimulus.item_id] = index + 1
        requests[stimulus.pk] = SampleRequest(
            item_key=stimulus.item.key,
            item_text=stimulus.item.text,
            sample_index=index,
            seed=sample_seed(
                study_seed=study.seed, task_key=job.deployment.task.key, item_key=stimulus.item.key, sample_index=index
            ),
        )
    return requests


def _replaced_keys(replacing: dict[int, Any]) -> dict[int, tuple[str, int]]:
    return {replaced: (request.item_key, request.sample_index) for replaced, request in replacing.items()}


def stimulus_exclude(*, stimulus: Stimulus, reason: str) -> Stimulus:
    """Exclude a stimulus from rating, recording why; refused once its deployment's slots exist.

    Raises
    ------
    StudyLoadError
        No reason given, or raters' slots already hold the stimulus' deployment.
    """
    from studyapp.rating.models import Slot

    reason = reason.strip()
    if not reason:
        raise StudyLoadError("say why the stimulus is excluded")
    if stimulus.generation_round != stimulus.deployment.study.generation_round:
        raise StudyLoadError(f"stimulus {stimulus.token} belongs to an earlier generation round; it is not rated")
    if Slot.objects.filter(deployment_id=stimulus.deployment_id).exists():
        raise StudyLoadError(
            f"deployment {stimulus.deployment.slug} already has rater slots: exclude stimuli before slots are built"
        )
    Stimulus.objects.filter(pk=stimulus.pk).update(excluded_at=timezone.now(), exclusion_reason=reason)
    stimulus.refresh_from_db()
    return stimulus


def generation_round_start(*, study: Study, decoding: dict) -> list[GenerationJob]:
    """Apply changed decoding settings as a new generation round of the same study; returns the jobs queued.

    Every (deployment, condition, item, sample) is generated again with the new settings (and
    the same seeds: raising ``max_new_tokens`` continues the same texts further). The earlier
    rounds' stimuli stay in the database with the decoding that made them; only the current
    round's are screened, rated, scored and exported. Allowed while the study has no rater
    slot (the design is built from one round's texts) and no job is queued or running.

    Raises
    ------
    StudyLoadError
        With the reason: invalid or unchanged settings, slots built, generation running.
    """
    from studyapp.rating.models import Slot
    from studyapp.studies.models import DiversityMetric
    from studyapp.studies.spec import decoding_problems

    problems = decoding_problems(decoding)
    if problems:
        raise StudyLoadError("; ".join(problems))
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study.pk)
        if Slot.objects.filter(deployment__study=study).exists():
            raise StudyLoadError(
                f"study {study.slug!r} already has rater slots, built from round {study.generation_round}'s texts: "
                "a new generation round is possible only before slots are built"
            )
        if GenerationJob.objects.filter(deployment__study=study, status__in=GenerationJob.BUSY).exists():
            raise StudyLoadError("generation is running: start the new round once its jobs have ended")
        if decoding_effective(decoding) == decoding_effective(study.decoding):
            raise StudyLoadError("the decoding settings are unchanged: nothing to generate again")
        study.decoding = decoding
        study.generation_round += 1
        study.save(update_fields=["decoding", "generation_round"])  # the new round has no stimuli: not locked
        GenerationJob.objects.filter(deployment__study=study).update(
            status=GenerationJob.Status.PENDING, done=0, tokens_per_second=None, error_message="",
            started_at=None, finished_at=None, metrics_computed_at=None, metrics_error="",
        )  # fmt: skip
        DiversityMetric.objects.filter(deployment__study=study).delete()  # recomputed from the new texts
        return generation_start(study=study)


def decoding_effective(decoding: dict) -> dict:
    """Every decoding setting as generation uses it: the given ones, the library's defaults for the rest."""
    from generation.types import DecodingSettings

    return DecodingSettings(**decoding).as_dict()


def deployment_truncation_set(*, deployment: Deployment, accept: bool) -> Deployment:
    """Whether the deployment's texts cut mid-word by ``max_new_tokens`` may be rated.

    Raises
    ------
    StudyLoadError
        The deployment's slots are built (what raters rate is settled), or it is never rated.
    """
    from studyapp.rating.models import Slot

    if deployment.automatic_only:
        raise StudyLoadError(f"deployment {deployment.slug} is automatic only: its texts are never rated")
    if Slot.objects.filter(deployment=deployment).exists():
        raise StudyLoadError(f"deployment {deployment.slug} already has rater slots: decide before slots are built")
    Deployment.objects.filter(pk=deployment.pk).update(accept_truncation=accept)
    deployment.accept_truncation = accept
    return deployment


def stimuli_regenerate_excluded(*, study: Study) -> list[GenerationJob]:
    """Queue the jobs holding excluded stimuli without a replacement; each generates replacements with new seeds."""
    job_ids = set(
        Stimulus.objects.current()
        .filter(deployment__study=study, excluded_at__isnull=False, replacements__isnull=True)
        .values_list("job_id", flat=True)
    )
    queued = []
    with transaction.atomic():
        for job in GenerationJob.objects.select_for_update().filter(pk__in=job_ids):
            if job.status in GenerationJob.BUSY:
                continue
            _job_queue(job=job)
            queued.append(job)
    return queued


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
        Stimulus.objects.current()
        .filter(condition_id=job.condition_id, item__in=items, job__status=GenerationJob.Status.SUCCEEDED)
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
            text_id=twin.text_id,
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
            finished=twin.finished,
            n_words=twin.n_words,
            ends_mid_word=twin.ends_mid_word,
            generation_round=twin.generation_round,
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
    *,
    job: GenerationJob,
    samples: Sequence[Any],
    items_by_key: dict[str, Item],
    artifact_sha256: str,
    replacing: dict[tuple[str, int], int] | None = None,
) -> int:
    """Store one batch of samples; a sample already stored is ignored (unique constraint).

    ``replacing`` maps (item key, sample index) of a replacement to the excluded stimulus it replaces.
    """
    source = job.condition.model.source
    generation_round = job.deployment.study.generation_round
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
            decoding=json_safe(sample.decoding),
            model_source=source,
            model_sha256=sample.model_sha256,
            artifact_sha256=artifact_sha256,
            n_new_tokens=sample.n_new_tokens,
            finished=sample.finished,
            n_words=count_words(sample.text),
            ends_mid_word=ends_mid_word(text=sample.text, finished=sample.finished),
            generation_round=generation_round,
            replaces_id=(replacing or {}).get((sample.item_key, sample.sample_index)),
        )
        for sample in samples
    ]
    return len(Stimulus.objects.bulk_create(rows, ignore_conflicts=True))


def ends_mid_word(*, text: str, finished: bool | None) -> bool:
    """Cut by ``max_new_tokens`` (``finished`` False) right after a letter or digit.

    The last token may have split a word there ("umbrel"); whether it did cannot be told from
    the text, so every such text counts. A cut after punctuation or a space is at a boundary.
    """
    return finished is False and text[-1:].isalnum()


def count_words(text: str) -> int:
    """Words of a response as a rater sees them: whitespace-separated tokens with a letter ("1." is not a word)."""
    return sum(any(ch.isalpha() for ch in token) for token in text.split())
