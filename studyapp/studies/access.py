"""Who may see a study: the one rule of the researcher panel, the admin and the rater preview.

Active staff users see the studies they are a researcher of; superusers (staff too) see
every study. Everyone else sees none. Pages answer 403 to a logged-in user who is not
staff and 404 for a study the user may not see, so that another team's study is never
confirmed to exist (docs/trust.md).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from studyapp.studies.models import Study


def user_is_researcher_staff(*, user) -> bool:
    """May use the researcher panel at all (which studies it shows is ``studies_visible_to``)."""
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def user_sees_every_study(*, user) -> bool:
    return user_is_researcher_staff(user=user) and user.is_superuser


def studies_visible_to(*, user) -> QuerySet[Study]:
    if not user_is_researcher_staff(user=user):
        return Study.objects.none()
    if user.is_superuser:
        return Study.objects.all()
    return Study.objects.filter(researchers=user)


def user_can_view_study(*, user, study: Study) -> bool:
    if not user_is_researcher_staff(user=user):
        return False
    return user.is_superuser or study.researchers.filter(pk=user.pk).exists()


def users_visible_to(*, user) -> QuerySet:
    """The user accounts a researcher may see and pick (a study's researchers): themselves and
    the researchers of their own studies, never the platform's whole list of usernames."""
    users = get_user_model().objects.all()
    if user_sees_every_study(user=user):
        return users
    if not user_is_researcher_staff(user=user):
        return users.none()
    colleagues = Study.researchers.through.objects.filter(study__researchers=user).values("user_id")
    return users.filter(Q(pk=user.pk) | Q(pk__in=colleagues))
