"""Celery tasks of the studies app: thin shells around the stage modules' services.

Naming: a task is named after the service it runs, with ``_task`` added
(``generation_job_run_task`` runs ``generation_jobs.generation_job_run``). Tasks named
``generation_*`` go to the ``generation`` queue (settings.CELERY_TASK_ROUTES); the others to
``default``. Each is idempotent, so a redelivery after a worker died is safe.
"""

from __future__ import annotations

from celery import shared_task

from studyapp.studies import generation_jobs, metrics, reports


@shared_task
def generation_job_run_task(job_id: int) -> dict:
    job = generation_jobs.generation_job_run(job_id=job_id)
    return {"job": job.pk, "status": job.status, "done": job.done, "total": job.total}


@shared_task
def metrics_compute_task(job_id: int) -> int:
    return metrics.metrics_compute(job_id=job_id)


@shared_task
def report_build_task(report_id: int) -> str:
    return reports.report_build(report_id=report_id).status
