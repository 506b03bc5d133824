"""Redis restarted (killed, even) while generation jobs wait in the queue: no job is lost.

A redis-server of the test's own on a free port (the shared one serves other runs), run as
docs/trust.md asks a production broker to run: append-only file, fsync on every write.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from studyapp.studies.models import GenerationJob, Stimulus
from tests.conftest import REPO_ROOT, _test_database_url
from tests.studyapp.studies.conftest import tiny_model_dir, tiny_study, wait_for_jobs  # noqa: F401 (fixtures)
from tests.studyapp.trust.servers import RedisServer, clean_env, free_port, manage, redis_server_binary

QUEUE = "from studyapp.studies.models import Study; from studyapp.studies.generation_jobs import generation_start;" \
        "print(len(generation_start(study=Study.objects.get(slug='{slug}'))))"  # fmt: skip


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")
def test_jobs_queued_before_a_redis_crash_all_run_after_it(tiny_study, tmp_path: Path) -> None:  # noqa: F811
    redis = RedisServer(port=free_port(), directory=tmp_path)
    redis.start()
    env = clean_env(
        DATABASE_URL=_test_database_url(),
        CELERY_BROKER_URL=redis.url,
        ARTIFACT_DIR=str(tmp_path / "artifacts"),
        LOG_LEVEL="WARNING",
    )
    worker = None
    try:
        study = tiny_study(conditions=("base", "weight", "prompt"))
        assert manage(["shell", "-v", "0", "-c", QUEUE.format(slug=study.slug)], env).stdout.strip() == "3"
        assert set(GenerationJob.objects.values_list("status", flat=True)) == {"queued"}
        redis.process.kill()  # SIGKILL: no shutdown, no final save
        redis.process.wait(timeout=20)
        redis.start()  # same directory: the append-only file is replayed
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "studyapp", "worker", "-Q", "default,generation",
             "--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        jobs = wait_for_jobs(study, timeout=300)
        assert {job.status for job in jobs} == {"succeeded"}, [job.error_message for job in jobs]
        assert Stimulus.objects.filter(deployment__study=study).count() == 3 * 2 * 2
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        redis.stop()


@pytest.mark.django_db(transaction=True)
def test_starting_generation_with_redis_down_marks_the_jobs_failed_with_a_message(tiny_study) -> None:  # noqa: F811
    env = clean_env(DATABASE_URL=_test_database_url(), CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    study = tiny_study(conditions=("base", "weight"))
    manage(["shell", "-v", "0", "-c", QUEUE.format(slug=study.slug)], env, timeout=300)
    jobs = GenerationJob.objects.filter(deployment__study=study)
    assert set(jobs.values_list("status", flat=True)) == {"failed"}  # never "queued" with no message behind it
    assert all("could not be reached" in job.error_message for job in jobs)
