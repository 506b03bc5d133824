"""Periodic bookkeeping of the rater side (run by Celery beat; see CELERY_BEAT_SCHEDULE).

Tasks are named after the service they run, with ``_task`` added (studyapp/studies/tasks.py).
"""

from celery import shared_task

from studyapp.rating import services
from studyapp.rating.models import Slot
from studyapp.studies.models import Study


@shared_task
def slots_release_stale_task() -> dict[str, int]:
    """Free the slots of raters silent past their study's timeout (or past the hold with no
    rating saved), in every study with a slot in use, open or closed.

    A claim frees stale slots too, but only when a new rater arrives; this keeps the
    dashboard's free/active counts true while nobody is arriving, and a closed study keeps
    no holds of made-up entries. Safe to run any time.
    """
    in_use = Study.objects.filter(deployments__slots__status=Slot.Status.ACTIVE).distinct()
    released = {study.slug: services.slots_release_stale(study=study) for study in in_use}
    return {slug: n for slug, n in released.items() if n}
