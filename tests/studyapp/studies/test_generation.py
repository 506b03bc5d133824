"""Generation jobs: one per (deployment, condition), idempotent, traceable, surviving a killed worker."""

from __future__ import annotations

import time

import pytest

from studyapp.celery import app
from studyapp.studies.exports import export_stimuli_frame
from studyapp.studies.generation_jobs import generation_job_retry, generation_start, sample_seed
from studyapp.studies.models import DiversityMetric, GenerationJob, Stimulus
from studyapp.studies.study_loading import study_load
from studyapp.studies.tasks import generation_job_run_task
from tests.studyapp.studies.conftest import tiny_spec, wait_for_jobs


def _assert_traceable(stimuli) -> None:
    for stimulus in stimuli:
        condition = stimulus.condition
        assert stimulus.model_source == condition.model.source
        assert len(stimulus.model_sha256) == 64
        assert stimulus.decoding["max_new_tokens"] > 0 and "temperature" in stimulus.decoding
        assert stimulus.seed == sample_seed(
            study_seed=condition.study.seed,
            task_key=stimulus.item.task.key,
            item_key=stimulus.item.key,
            sample_index=stimulus.sample_index,
        )
        if condition.method == "weight":
            assert stimulus.artifact_sha256 == condition.artifact_sha256 and len(stimulus.artifact_sha256) == 64
        else:
            assert stimulus.artifact_sha256 == ""


@pytest.mark.django_db
def test_generation_in_process_stores_each_sample_once(
    tiny_study, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path
) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = tiny_study(conditions=("base", "weight", "prompt"))
    with django_capture_on_commit_callbacks(execute=True):
        jobs = generation_start(study=study)
    assert len(jobs) == 3
    jobs = list(GenerationJob.objects.filter(deployment__study=study))
    assert {job.status for job in jobs} == {"succeeded"}, [job.error_message for job in jobs]
    assert all(job.done == job.total == 4 for job in jobs)
    stimuli = Stimulus.objects.filter(deployment__study=study).select_related(
        "condition__model", "condition__study", "item__task"
    )
    assert stimuli.count() == 12
    _assert_traceable(stimuli)
    # Same seed for a steered sample and its base twin (common random numbers).
    seeds = {(s.condition.key, s.item.key, s.sample_index): s.seed for s in stimuli}
    assert seeds[("base", "brick", 1)] == seeds[("weight", "brick", 1)]
    # The prompt condition's instruction reaches the model; the base prompt lacks it.
    prompts = {s.condition.key: s.prompt for s in stimuli}
    assert "Be as original as you can." in prompts["prompt"] and "original as you can" not in prompts["base"]
    # Metrics ran after each job (queued on commit, in-process here).
    assert all(s.metrics and "n_words" in s.metrics for s in stimuli)
    assert DiversityMetric.objects.filter(deployment__study=study).count() == 3 * 2

    # Starting again queues nothing; running a finished job again adds nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert generation_start(study=study) == []
        generation_job_run_task.delay(jobs[0].pk)
    assert Stimulus.objects.filter(deployment__study=study).count() == 12


@pytest.mark.django_db
def test_failed_job_keeps_its_message_and_can_be_retried(
    tiny_study, tiny_model_dir, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path
) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = tiny_study(conditions=("base",))
    study.language_models.update(source=str(tmp_path / "no-such-model"))
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study)
    job = GenerationJob.objects.get(deployment__study=study)
    assert job.status == "failed"
    assert "no-such-model" in job.error_message and "does not exist" in job.error_message

    study.language_models.update(source=str(tiny_model_dir))
    with django_capture_on_commit_callbacks(execute=True):
        assert generation_job_retry(job=job)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.done == 4 and job.attempts == 2
    assert job.error_message == ""


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_generation_job_through_a_real_worker(tiny_study, celery_worker_factory, tmp_path) -> None:
    celery_worker_factory(queues="default,generation", env={"ARTIFACT_DIR": str(tmp_path / "artifacts")})
    study = tiny_study()
    generation_start(study=study)
    jobs = wait_for_jobs(study)
    assert {job.status for job in jobs} == {"succeeded"}, [job.error_message for job in jobs]
    stimuli = Stimulus.objects.filter(deployment__study=study).select_related(
        "condition__model", "condition__study", "item__task"
    )
    assert stimuli.count() == 2 * 2 * 2
    assert len({(s.job_id, s.item_id, s.sample_index) for s in stimuli}) == 8
    _assert_traceable(stimuli)
    assert all(job.tokens_per_second and job.tokens_per_second > 0 for job in jobs)

    # Running a finished job again on the worker adds nothing.
    generation_job_run_task.delay(jobs[0].pk).get(timeout=120)
    assert Stimulus.objects.filter(deployment__study=study).count() == 8

    deadline = time.monotonic() + 120
    while GenerationJob.objects.filter(deployment__study=study, metrics_computed_at__isnull=True).exists():
        assert time.monotonic() < deadline, "metrics were not computed on the default queue"
        time.sleep(0.5)
    assert not Stimulus.objects.filter(deployment__study=study, metrics={}).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_job_of_a_killed_worker_completes_on_a_new_worker_without_duplicates(
    tiny_study, celery_worker_factory, tmp_path
) -> None:
    # A short visibility timeout: Redis hands the unacknowledged job of the dead worker to the
    # next one within seconds instead of hours. Batch size 1 and longer answers make the job
    # slow enough to kill between two stored batches.
    env = {"ARTIFACT_DIR": str(tmp_path / "artifacts"), "CELERY_VISIBILITY_TIMEOUT": "5"}
    study = tiny_study(
        conditions=("base",), items=("brick", "fork", "shoe"), samples=4, batch_size=1, max_new_tokens=24
    )
    first = celery_worker_factory(queues="generation", env=env)
    generation_start(study=study)
    job = GenerationJob.objects.get(deployment__study=study)
    deadline = time.monotonic() + 180
    while Stimulus.objects.filter(job=job).count() < 2:
        assert time.monotonic() < deadline, f"no progress before the kill:\n{first.log()[-3000:]}"
        time.sleep(0.05)
    first.kill()
    stored_at_kill = Stimulus.objects.filter(job=job).count()
    assert 2 <= stored_at_kill < 12, "the job finished before the kill; make it slower"
    job.refresh_from_db()
    assert job.status == "running"

    # The new worker starts on another queue and only then takes generation work: a solo-pool
    # worker busy with a job cannot answer the ping that tells the fixture it is up.
    second = celery_worker_factory(queues="default", env=env)
    app.control.add_consumer("generation", destination=[second.name], reply=True)
    jobs = wait_for_jobs(study, timeout=240, statuses=("succeeded", "failed"))
    job = jobs[0]
    assert job.status == "succeeded", job.error_message
    assert job.attempts >= 2
    stimuli = Stimulus.objects.filter(job=job)
    assert stimuli.count() == job.total == job.done == 12
    assert len(set(stimuli.values_list("item_id", "sample_index"))) == 12


@pytest.mark.django_db
def test_a_condition_shared_by_deployments_is_generated_once(
    tiny_study, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path
) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = tiny_study(conditions=("base",), deployments=2)
    first, second = study.deployments.order_by("slug")
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study, deployments=[first])
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study, deployments=[second])
    copied = Stimulus.objects.filter(deployment=second).order_by("item__key", "sample_index")
    original = Stimulus.objects.filter(deployment=first).order_by("item__key", "sample_index")
    assert copied.count() == original.count() == 4
    for a, b in zip(original, copied, strict=True):
        assert (a.text, a.seed, a.model_sha256, a.decoding) == (b.text, b.seed, b.model_sha256, b.decoding)
        assert a.token != b.token and a.job_id != b.job_id
        assert a.text_id == b.text_id  # one generated text, counted once by the analysis
    assert len({s.text_id for s in original}) == 4
    job = GenerationJob.objects.get(deployment=second)
    assert job.status == "succeeded" and job.done == 4
    assert job.tokens_per_second is None  # nothing was sampled
    # The export carries the shared id; diversity stays per deployment (no pooling across deployments).
    frame = export_stimuli_frame(study=study)
    by_deployment = frame.pivot(index=["item", "sample_index"], columns="deployment", values="text_id")
    assert (by_deployment[first.slug] == by_deployment[second.slug]).all()
    assert DiversityMetric.objects.filter(deployment=first).count() == 2
    assert DiversityMetric.objects.filter(deployment=second).count() == 2


@pytest.mark.django_db
def test_metrics_get_the_item_text_and_group_by_deployment_condition_and_item(
    tiny_model_dir, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path, monkeypatch
) -> None:
    import analysis.metrics

    seen: dict[str, list] = {}
    real_stimulus_metrics, real_diversity = analysis.metrics.stimulus_metrics, analysis.metrics.diversity_by_group

    def stimulus_metrics_spy(frame, **kwargs):
        seen["items"] = sorted(set(frame[kwargs["item_text_col"]]))
        return real_stimulus_metrics(frame, **kwargs)

    def diversity_spy(frame, **kwargs):
        seen["groups"] = list(kwargs["group_cols"])
        return real_diversity(frame, **kwargs)

    monkeypatch.setattr(analysis.metrics, "stimulus_metrics", stimulus_metrics_spy)
    monkeypatch.setattr(analysis.metrics, "diversity_by_group", diversity_spy)
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    spec = tiny_spec(tiny_model_dir, conditions=("base",)).replace(
        "items: [brick, fork]", "items: [{key: b, text: red clay brick}, {key: f, text: silver fork}]"
    )
    study, _ = study_load(content=spec)
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study)
    # AUT originality is measured against the object ("red clay brick"), not its key ("b").
    assert seen["items"] == ["red clay brick", "silver fork"]
    assert seen["groups"] == ["deployment", "condition", "item"]
    assert DiversityMetric.objects.filter(deployment__study=study).count() == 2
    assert all(s.metrics.get("aut_originality") is not None for s in Stimulus.objects.filter(deployment__study=study))


@pytest.mark.django_db
def test_failed_metrics_are_shown_and_generation_stays_succeeded(
    tiny_study, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path, monkeypatch
) -> None:
    import analysis.metrics

    def broken(*args, **kwargs):
        raise RuntimeError("no embedding model here")

    monkeypatch.setattr(analysis.metrics, "stimulus_metrics", broken)
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = tiny_study(conditions=("base",))
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study)
    job = GenerationJob.objects.get(deployment__study=study)
    assert job.status == "succeeded" and job.done == 4
    assert job.metrics_error == "RuntimeError: no embedding model here"
    assert job.metrics_computed_at is None


@pytest.mark.django_db
def test_a_running_job_records_its_progress_after_each_batch(tiny_study, settings, tmp_path) -> None:
    """The dashboard's progress bar moves a batch at a time: 2 items x 3 samples in batches of 2
    store 2, 4, then 6 samples, each written to the job's row before the next batch is sampled.
    A trigger logs every write of the row (rolled back with the test's transaction)."""
    from django.db import connection

    from studyapp.studies.generation_jobs import generation_job_run

    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = tiny_study(conditions=("base",), samples=3, batch_size=2)
    [job] = generation_start(study=study)  # queued on commit, which this test's transaction never reaches
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE job_progress_log (id serial PRIMARY KEY, status text, done integer)")
        cursor.execute(
            "CREATE FUNCTION job_progress_record() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO job_progress_log (status, done) VALUES (NEW.status, NEW.done); RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER job_progress_log AFTER UPDATE ON studies_generationjob "
            "FOR EACH ROW EXECUTE FUNCTION job_progress_record()"
        )
    job = generation_job_run(job_id=job.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, done FROM job_progress_log ORDER BY id")
        writes = cursor.fetchall()
    assert job.status == "succeeded" and job.done == job.total == 6
    running = [done for status, done in writes if status == "running"]
    assert running[-3:] == [2, 4, 6] and set(running) == {0, 2, 4, 6}, writes
    assert writes[-1] == ("succeeded", 6)
