"""The Django project: stores, schedules and serves the study.

The Celery app is imported here so that ``shared_task`` binds to it whenever Django
starts (the documented Django/Celery pattern).
"""

from studyapp.celery import app as celery_app

__all__ = ["celery_app"]
