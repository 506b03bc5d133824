"""Celery tasks of the studies app: thin shells around services.

``generation_*`` tasks go to the ``generation`` queue (settings.CELERY_TASK_ROUTES); the
others to ``default``. Each is idempotent, so a redelivery after a worker died is safe.
"""

from __future__ import annotations

from celery import shared_task

from studyapp.studies import services


@shared_task
def generation_run_job(job_id: int) -> dict:
    job = services.generation_job_run(job_id=job_id)
    return {"job": job.pk, "status": job.status, "done": job.done, "total": job.total}


@shared_task
def metrics_compute_job(job_id: int) -> int:
    return services.metrics_compute_job(job_id=job_id)


@shared_task
def report_build(report_id: int) -> str:
    return services.report_build_run(report_id=report_id).status
