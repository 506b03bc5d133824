"""Periodic bookkeeping of the rater side (run by Celery beat; see CELERY_BEAT_SCHEDULE).

Tasks are named after the service they run, with ``_task`` added (studyapp/studies/tasks.py).
"""

from celery import shared_task

from studyapp.rating import services
from studyapp.studies.models import Study


@shared_task
def slots_release_stale_task() -> dict[str, int]:
    """Free the slots of raters silent past their study's timeout, in every open study.

    A claim frees stale slots too, but only when a new rater arrives; this keeps the
    dashboard's free/active counts true while nobody is arriving. Safe to run any time.
    """
    released = {study.slug: services.slots_release_stale(study=study) for study in Study.objects.filter(is_open=True)}
    return {slug: n for slug, n in released.items() if n}
