"""Researcher isolation in the admin: every queryset, choice, filter and form of a study's rows.

A staff user who is not a superuser sees and picks only rows of the studies they are a
researcher of (and of user accounts only their co-researchers'): change lists, the choices
of every foreign-key and many-to-many field (add and change forms, inlines), the list
filters, and the rows an action receives. A submitted form whose related rows belong to
another study than the row's own is refused too (a researcher of two studies cannot
cross-wire them).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from studyapp.rating import models as rating
from studyapp.studies.access import studies_visible_to, user_sees_every_study, users_visible_to
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

# How each model reaches its study ("" for Study itself).
STUDY_PATHS: dict[type[Model], str] = {
    Study: "",
    LanguageModel: "study",
    Condition: "study",
    TaskFamily: "study",
    Item: "task__study",
    RatingDimension: "study",
    Deployment: "study",
    GenerationJob: "deployment__study",
    Stimulus: "deployment__study",
    DiversityMetric: "deployment__study",
    StudyReport: "study",
    rating.Participant: "study",
    rating.Slot: "deployment__study",
    rating.SlotStimulus: "slot__deployment__study",
    rating.Rating: "participant__study",
    rating.AttentionCheckResponse: "participant__study",
    rating.DeploymentLink: "deployment__study",
}


def scoped(queryset: QuerySet, user) -> QuerySet:
    """``queryset`` limited to rows of studies ``user`` may see, and user accounts to those
    ``user`` may see (``access.users_visible_to``); unchanged for other models."""
    if queryset.model is get_user_model():
        return queryset.filter(pk__in=users_visible_to(user=user).values("pk"))
    path = STUDY_PATHS.get(queryset.model)
    if path is None or user_sees_every_study(user=user):
        return queryset
    visible = studies_visible_to(user=user)
    if path == "":
        return queryset.filter(pk__in=visible.values("pk"))
    return queryset.filter(**{f"{path}__in": visible.values("pk")})


def study_id_of(obj: Model | None) -> int | None:
    """The id of the study a row belongs to, following its study path."""
    if obj is None or type(obj) not in STUDY_PATHS:
        return None
    path = STUDY_PATHS[type(obj)]
    if path == "":
        return obj.pk
    *hops, last = path.split("__")
    for hop in hops:
        obj = getattr(obj, hop, None)
        if obj is None:
            return None
    return getattr(obj, f"{last}_id", None)


class SameStudyForm(forms.ModelForm):
    """Refuses related rows of another study than the row's own."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        own = None
        for name in ("study", "task", "deployment", "participant"):
            if name in cleaned and cleaned[name] is not None:
                own = study_id_of(cleaned[name])
                break
        if own is None:
            own = study_id_of(self.instance) if self.instance.pk else None
        if own is None:
            return cleaned
        for name, value in list(cleaned.items()):
            related = list(value) if isinstance(value, QuerySet | list | tuple) else [value]
            for row in related:
                other = study_id_of(row) if isinstance(row, Model) else None
                if other is not None and other != own:
                    self.add_error(name, "Choose rows of this row's own study.")
                    break
        return cleaned


class ScopedChoicesMixin:
    """Foreign-key and many-to-many choices limited to the user's studies (admin and inlines)."""

    form: type[forms.ModelForm] = SameStudyForm

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
        if formfield is not None and hasattr(formfield, "queryset"):
            formfield.queryset = scoped(formfield.queryset, request.user)
        return formfield

    def formfield_for_manytomany(self, db_field, request: HttpRequest, **kwargs):
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]
        if formfield is not None and hasattr(formfield, "queryset"):
            formfield.queryset = scoped(formfield.queryset, request.user)
        return formfield


class ScopedListFiltersMixin:
    """A relation in ``list_filter`` offers only the related rows present in the user's list."""

    def get_list_filter(self, request: HttpRequest):
        filters = []
        for entry in super().get_list_filter(request):  # type: ignore[misc]
            if isinstance(entry, str) and _is_relation(self.model, entry):  # type: ignore[attr-defined]
                entry = (entry, admin.RelatedOnlyFieldListFilter)
            filters.append(entry)
        return filters


def _is_relation(model: type[Model] | None, path: str) -> bool:
    for hop in path.split("__"):
        if model is None:
            return False
        field = model._meta.get_field(hop)
        if not field.is_relation:
            return False
        model = field.related_model  # type: ignore[assignment]
    return True


class ScopedInline(ScopedChoicesMixin, admin.TabularInline):
    pass
