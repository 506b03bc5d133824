"""The researcher panel in the Django admin: every studies model, and rating data read-only.

A staff user sees only the studies they are a researcher of (superusers: all). Study
definitions are edited here after loading; the stored spec keeps what was loaded.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from studyapp.rating import models as rating
from studyapp.studies.admin_scoping import ScopedChoicesMixin, ScopedInline, ScopedListFiltersMixin, scoped
from studyapp.studies.forms import SpecUploadForm, StorableJSONField
from studyapp.studies.generation_jobs import generation_job_retry, generation_start
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
from studyapp.studies.provenance import NEW_VERSION_ADVICE
from studyapp.studies.spec import SpecError
from studyapp.studies.study_loading import StudyLoadError, study_load


class StudyScopedAdmin(ScopedListFiltersMixin, ScopedChoicesMixin, admin.ModelAdmin):
    """Rows, choices, filters and forms only of the studies the user may see (admin_scoping.py)."""

    formfield_overrides = {models.JSONField: {"form_class": StorableJSONField}}  # noqa: RUF012 (Django's)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return scoped(super().get_queryset(request), request.user)


class ProvenanceReadOnlyMixin:
    """Provenance fields are read-only once stimuli were generated with them (provenance.py)."""

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        if obj is not None and obj.provenance_locked():
            readonly += tuple(f for f in obj.provenance_fields if f not in readonly)
        return readonly

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        obj = self.get_object(request, object_id)  # type: ignore[attr-defined]
        if request.method == "GET" and obj is not None and obj.provenance_locked():
            fields = ", ".join(obj.provenance_fields)
            self.message_user(  # type: ignore[attr-defined]
                request, f"{fields.capitalize()} are read-only: {NEW_VERSION_ADVICE}.", messages.WARNING
            )
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]


class ReadOnlyAdmin(StudyScopedAdmin):
    """Data written by the platform (stimuli, ratings): shown, never edited by hand."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class LanguageModelInline(ScopedInline):
    model = LanguageModel
    extra = 0

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        # obj is the study: once it has stimuli, no model's source may change here.
        locked = obj is not None and obj.provenance_locked()
        return (*super().get_readonly_fields(request, obj), *(LanguageModel.provenance_fields if locked else ()))


class RatingDimensionInline(ScopedInline):
    model = RatingDimension
    extra = 0


@admin.register(Study)
class StudyAdmin(ProvenanceReadOnlyMixin, StudyScopedAdmin):
    list_display = ("slug", "title", "spec_version", "is_open", "dashboard_link", "created_at")
    search_fields = ("slug", "title")
    readonly_fields = ("spec_version", "spec_sha256", "spec", "created_at")
    filter_horizontal = ("researchers",)
    inlines = (LanguageModelInline, RatingDimensionInline)
    actions = ("start_generation",)
    change_list_template = "admin/studies/study/change_list.html"

    def get_urls(self):
        load = path("load-spec/", self.admin_site.admin_view(self.load_spec_view), name="studies_study_load_spec")
        return [load, *super().get_urls()]

    def load_spec_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a YAML spec: every problem is listed with its path, or the study is loaded whole."""
        if not self.has_add_permission(request):
            return redirect("admin:index")
        form = SpecUploadForm(request.POST or None, request.FILES or None)
        problems: list[str] = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["spec"]
            try:
                study, changed = study_load(
                    content=upload.read(),
                    source=upload.name,
                    acting_user=request.user,
                )
            except SpecError as error:
                problems = error.problems
            except StudyLoadError as error:
                problems = [str(error)]
            else:
                verb = "loaded" if changed else "unchanged (this spec was already loaded)"
                self.message_user(request, f"Study {study.slug} {verb}.", messages.SUCCESS)
                return redirect("studies:dashboard", slug=study.slug)
        context = {
            **self.admin_site.each_context(request),
            "title": "Load a study spec",
            "form": form,
            "problems": problems,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/studies/study/load_spec.html", context)

    @admin.display(description="Dashboard")
    def dashboard_link(self, study: Study) -> str:
        return format_html('<a href="{}">dashboard</a>', reverse("studies:dashboard", args=[study.slug]))

    @admin.action(description="Start (or resume) generation")
    def start_generation(self, request: HttpRequest, queryset: QuerySet) -> None:
        n = sum(len(generation_start(study=study)) for study in queryset)
        self.message_user(request, f"Queued {n} generation job(s).", messages.INFO)


@admin.register(LanguageModel)
class LanguageModelAdmin(ProvenanceReadOnlyMixin, StudyScopedAdmin):
    list_display = ("key", "study", "source")
    list_filter = ("study",)


@admin.register(Condition)
class ConditionAdmin(ProvenanceReadOnlyMixin, StudyScopedAdmin):
    list_display = ("key", "study", "model", "method", "params", "artifact_sha256")
    list_filter = ("study", "method")
    readonly_fields = ("artifact_sha256", "artifact_manifest")


class ItemInline(ScopedInline):
    model = Item
    extra = 0


@admin.register(TaskFamily)
class TaskFamilyAdmin(StudyScopedAdmin):
    list_display = ("key", "study", "parser")
    list_filter = ("study",)
    inlines = (ItemInline,)


@admin.register(Item)
class ItemAdmin(StudyScopedAdmin):
    list_display = ("key", "task", "text")
    list_filter = ("task__study",)


@admin.register(RatingDimension)
class RatingDimensionAdmin(StudyScopedAdmin):
    list_display = ("key", "study", "question", "scale", "position")
    list_filter = ("study",)


@admin.register(Deployment)
class DeploymentAdmin(StudyScopedAdmin):
    list_display = ("slug", "study", "model", "task", "samples_per_item", "automatic_only")
    list_filter = ("study", "automatic_only")
    filter_horizontal = ("conditions",)


@admin.register(GenerationJob)
class GenerationJobAdmin(StudyScopedAdmin):
    list_display = ("__str__", "status", "done", "total", "tokens_per_second", "attempts", "short_error", "updated_at")
    list_filter = ("status", "deployment__study")
    list_select_related = ("deployment", "condition")
    readonly_fields = tuple(f.name for f in GenerationJob._meta.fields)
    actions = ("retry",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are created by "start generation", one per (deployment, condition)

    @admin.display(description="Error")
    def short_error(self, job: GenerationJob) -> str:
        return job.error_message[:120]

    @admin.action(description="Retry (keeps stored stimuli)")
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        n = sum(generation_job_retry(job=job) for job in queryset)
        self.message_user(request, f"Queued {n} job(s) again.", messages.INFO)


@admin.register(Stimulus)
class StimulusAdmin(ReadOnlyAdmin):
    list_display = ("token", "deployment", "condition", "item", "sample_index", "n_new_tokens", "short_text")
    list_filter = ("deployment__study", "condition__method")
    list_select_related = ("deployment", "condition", "item__task")
    search_fields = ("token", "text")

    @admin.display(description="Text")
    def short_text(self, stimulus: Stimulus) -> str:
        return stimulus.text[:100]


@admin.register(DiversityMetric)
class DiversityMetricAdmin(ReadOnlyAdmin):
    list_display = ("deployment", "condition", "item", "n_samples", "computed_at")
    list_select_related = ("deployment", "condition", "item__task")


@admin.register(StudyReport)
class StudyReportAdmin(ReadOnlyAdmin):
    list_display = ("study", "status", "n_ratings", "requested_at", "finished_at")


@admin.register(rating.Participant)
class ParticipantAdmin(ReadOnlyAdmin):
    list_display = ("token", "study", "step", "attention_failures", "flags", "simulated", "started_at", "completed_at")
    list_filter = ("study", "step", "simulated")
    search_fields = ("token", "prolific_pid")


@admin.register(rating.Slot)
class SlotAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "status", "participant", "claimed_at", "completed_at", "times_released")
    list_filter = ("status", "deployment__study")
    list_select_related = ("deployment", "participant")


@admin.register(rating.Rating)
class RatingAdmin(ReadOnlyAdmin):
    list_display = ("participant", "stimulus", "dimension", "score", "page_index", "seconds_on_page", "created_at")
    list_select_related = ("participant", "stimulus", "dimension")


@admin.register(rating.AttentionCheckResponse)
class AttentionCheckResponseAdmin(ReadOnlyAdmin):
    list_display = ("participant", "check_index", "page_index", "response", "passed", "created_at")
    list_select_related = ("participant",)
