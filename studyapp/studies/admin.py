"""The researcher panel in the Django admin: every studies model, and rating data read-only.

A staff user sees only the studies they are a researcher of (superusers: all). Study
definitions are edited here after loading; the stored spec keeps what was loaded.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from studyapp.rating import models as rating
from studyapp.rating.withdrawal import WithdrawalError, participant_delete, participant_withdraw
from studyapp.studies.admin_scoping import (
    SameStudyForm,
    ScopedChoicesMixin,
    ScopedInline,
    ScopedListFiltersMixin,
    scoped,
)
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
from studyapp.studies.spec import RATER_PAGE_FIELDS, SpecError, rater_pages_check
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


class StudyAdminForm(SameStudyForm):
    """The rater pages read the practice item, attention checks and debrief questions as stored:
    each is checked with the spec's rules on save (a form error, nothing saved) and saved in the
    form the spec loader writes."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        fields = [name for name in RATER_PAGE_FIELDS if name in cleaned]
        if not fields:
            return cleaned
        per_rater = self.instance.fewest_stimuli_per_rater(cleaned.get("stimuli_per_rater"))
        problems, stored = rater_pages_check(
            practice=cleaned.get("practice", self.instance.practice),
            attention_checks=cleaned.get("attention_checks", self.instance.attention_checks),
            screen_out_after=cleaned.get("attention_screen_out_after", self.instance.attention_screen_out_after),
            debrief_questions=cleaned.get("debrief_questions", self.instance.debrief_questions),
            per_rater=per_rater,
        )
        for name in fields:
            if name in problems:
                self.add_error(name, problems[name])
            else:
                cleaned[name] = stored[name]
        return cleaned


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
    form = StudyAdminForm
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
    list_display = ("slug", "study", "model", "task", "samples_per_item", "automatic_only", "accept_truncation")
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
        n = 0
        for job in queryset:
            try:
                n += generation_job_retry(job=job)
            except StudyLoadError as error:  # queued or running: left as it is
                self.message_user(request, f"Not retried: {error}.", messages.WARNING)
        self.message_user(request, f"Queued {n} job(s) again.", messages.INFO)


@admin.register(Stimulus)
class StimulusAdmin(ReadOnlyAdmin):
    list_display = (
        "token", "deployment", "condition", "item", "sample_index", "generation_round", "n_new_tokens",
        "ends_mid_word", "short_text",
    )  # fmt: skip
    list_filter = ("deployment__study", "condition__method", "ends_mid_word")
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
    """Participants are withdrawn (ratings kept, marked, left out of the analysis), never deleted by
    a researcher: deletion (a data-protection request) is a superuser's, logged, and gives the
    slots back (rating/withdrawal.py)."""

    list_display = (
        "token", "study", "step", "attention_failures", "flags", "simulated", "withdrawn_at", "started_at",
        "completed_at",
    )  # fmt: skip
    list_filter = ("study", "step", "simulated")
    search_fields = ("token", "prolific_pid")
    actions = ("withdraw_to_pool", "withdraw_short")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return bool(request.user.is_superuser)

    def has_withdraw_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rating.change_participant")

    def get_deleted_objects(self, objs, request: HttpRequest):
        # Ratings and slots refuse a plain delete on purpose (RESTRICT): participant_delete deletes
        # the ratings and gives the slots back itself, so the confirmation page may go ahead.
        deleted, model_count, perms_needed, _restricted = super().get_deleted_objects(objs, request)
        return deleted, model_count, perms_needed, []

    def delete_model(self, request: HttpRequest, obj) -> None:
        participant_delete(participant=obj, by=request.user, reason="deleted in the admin (data-protection request)")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for participant in queryset:
            self.delete_model(request, participant)

    @admin.action(description="Withdraw: keep the ratings (left out of the analysis), slot back to the pool",
                  permissions=["withdraw"])  # fmt: skip
    def withdraw_to_pool(self, request: HttpRequest, queryset: QuerySet):
        return self._withdraw(request, queryset, to_pool=True, action="withdraw_to_pool")

    @admin.action(description="Withdraw: keep the ratings (left out of the analysis), slot counted short",
                  permissions=["withdraw"])  # fmt: skip
    def withdraw_short(self, request: HttpRequest, queryset: QuerySet):
        return self._withdraw(request, queryset, to_pool=False, action="withdraw_short")

    def _withdraw(self, request: HttpRequest, queryset: QuerySet, *, to_pool: bool, action: str):
        """Ask why on a page of its own, then withdraw each selected participant."""
        reason = request.POST.get("reason", "").strip() if "apply" in request.POST else ""
        if not reason:
            context = {
                **self.admin_site.each_context(request),
                "title": "Withdraw participants",
                "participants": list(queryset.select_related("study")),
                "action": action,
                "to_pool": to_pool,
                "error": "Say why." if "apply" in request.POST else "",
                "opts": self.model._meta,
            }
            return TemplateResponse(request, "admin/rating/participant/withdraw.html", context)
        for participant in queryset:
            try:
                done = participant_withdraw(participant=participant, to_pool=to_pool, reason=reason)
            except WithdrawalError as error:
                self.message_user(request, f"Not withdrawn: {error}", messages.ERROR)
            else:
                self.message_user(
                    request, f"Withdrawn {participant.token}: {done.ratings} ratings kept, slot {done.slot}.",
                    messages.SUCCESS,
                )  # fmt: skip
        return None


@admin.register(rating.BonusPayment)
class BonusPaymentAdmin(ReadOnlyAdmin):
    """The bonus ledger (``manage.py prolific bonuses``): what was paid to whom, when, in which bulk payment."""

    list_display = ("participant", "study", "amount", "bulk_payment_id", "set_up_at", "paid_at")
    list_select_related = ("participant", "study")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the ledger is what stops a bonus being paid twice


@admin.register(rating.ParticipantDeletion)
class ParticipantDeletionAdmin(ReadOnlyAdmin):
    list_display = ("participant_token", "study", "deleted_by", "deleted_at", "reason", "ratings_deleted")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the log of deletions is kept


@admin.register(rating.Slot)
class SlotAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "status", "pilot", "participant", "claimed_at", "completed_at", "times_released")
    list_filter = ("status", "pilot", "deployment__study")
    list_select_related = ("deployment", "participant")


@admin.register(rating.Rating)
class RatingAdmin(ReadOnlyAdmin):
    list_display = ("participant", "stimulus", "dimension", "score", "page_index", "seconds_on_page", "created_at")
    list_select_related = ("participant", "stimulus", "dimension")


@admin.register(rating.AttentionCheckResponse)
class AttentionCheckResponseAdmin(ReadOnlyAdmin):
    list_display = ("participant", "check_index", "page_index", "response", "passed", "created_at")
    list_select_related = ("participant",)
