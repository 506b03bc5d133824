"""Researcher pages: the study dashboard, its exports, and the analysis report.

Who may see what: anonymous users are sent to the login page; logged-in users who are not
staff get 403; staff who are not researchers of the study get 404, so a study's existence
is not disclosed to other teams. Superusers see every study.
"""

from __future__ import annotations

import io
import mimetypes
from functools import wraps
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from studyapp.rating import slots
from studyapp.rating.services import SlotPlanError
from studyapp.studies import generation_jobs, metrics, reports
from studyapp.studies.access import studies_visible_to, user_is_researcher_staff
from studyapp.studies.control import study_control_room
from studyapp.studies.dashboard import study_dashboard
from studyapp.studies.exports import EXPORT_FORMATS, EXPORT_FRAMES, export_frame_write
from studyapp.studies.models import Deployment, GenerationJob, Study, StudyReport
from studyapp.studies.reports import latest_ready_report, report_result_tables, report_results, report_summary
from studyapp.studies.study_loading import StudyLoadError

CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


def researcher_required(view):
    """Resolve ``slug`` to a study the user may see, or answer 403/404."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, slug: str, *args, **kwargs) -> HttpResponse:
        if not user_is_researcher_staff(user=request.user):
            raise PermissionDenied("The researcher panel is for staff only.")
        study = studies_visible_to(user=request.user).filter(slug=slug).first()
        if study is None:
            raise Http404("No such study.")
        return view(request, study, *args, **kwargs)

    return wrapper


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    if not user_is_researcher_staff(user=request.user):
        raise PermissionDenied("The researcher panel is for staff only.")
    studies = studies_visible_to(user=request.user).order_by("slug")
    return render(request, "studies/index.html", {"studies": studies})


@require_GET
@researcher_required
def dashboard(request: HttpRequest, study: Study) -> HttpResponse:
    from studyapp.studies.forms import DecodingRoundForm, StimulusExcludeForm
    from studyapp.studies.screening import excluded_stimuli, study_screening

    dashboard = study_dashboard(study=study)
    metrics_columns, metrics_rows = metrics.summary_table(metrics.automatic_metrics_by_condition(study=study))
    context = {
        "d": dashboard,
        "metrics_by_condition": metrics_rows,
        "summary_metrics": metrics_columns,
        "result_tables": report_result_tables(results=report_results(report=dashboard.latest_ready_report)),
        "screening": study_screening(study=study),
        "excluded": excluded_stimuli(study=study),
        "exclude_form": StimulusExcludeForm(),
        "decoding_form": DecodingRoundForm(initial=generation_jobs.decoding_effective(study.decoding)),
        "rater_pages_problems": study.rater_pages_problems(),
        "control": study_control_room(study=study, base_url=request.build_absolute_uri("/"), dashboard=dashboard),
    }
    return render(request, "studies/dashboard.html", context)


def _back(request: HttpRequest, study: Study) -> HttpResponse:
    """Back to the page the form was on (``next``, a path of this site), else the dashboard."""
    target = request.POST.get("next", "")
    panel = reverse("studies:index")
    if target.startswith(panel) and url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        return redirect(target)
    return redirect("studies:dashboard", slug=study.slug)


@require_POST
@researcher_required
def stimulus_exclude(request: HttpRequest, study: Study) -> HttpResponse:
    from studyapp.studies.forms import StimulusExcludeForm
    from studyapp.studies.models import Stimulus

    form = StimulusExcludeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "To exclude a stimulus give its token and a reason.")
        return _back(request, study)
    stimulus = Stimulus.objects.filter(deployment__study=study, token=form.cleaned_data["stimulus"].strip()).first()
    if stimulus is None:
        messages.error(request, "This study has no stimulus with that token.")
        return _back(request, study)
    try:
        generation_jobs.stimulus_exclude(stimulus=stimulus, reason=form.cleaned_data["reason"])
    except StudyLoadError as error:
        messages.error(request, f"Not excluded: {error}")
    else:
        messages.info(request, f"Excluded {stimulus.token}: {stimulus.exclusion_reason}.")
    return _back(request, study)


@require_POST
@researcher_required
def stimuli_regenerate(request: HttpRequest, study: Study) -> HttpResponse:
    jobs = generation_jobs.stimuli_regenerate_excluded(study=study)
    messages.info(request, f"Queued {len(jobs)} job(s) to generate replacements with new seeds.")
    return _back(request, study)


@require_GET
@researcher_required
def texts(request: HttpRequest, study: Study, deployment: str, condition: str) -> HttpResponse:
    """A (deployment, condition)'s generated texts, a page at a time, each excludable by a click."""
    from studyapp.rating.models import Slot
    from studyapp.studies.forms import StimulusExcludeForm
    from studyapp.studies.screening import TEXT_FILTERS, stimuli_texts_page

    chosen = get_object_or_404(Deployment, study=study, slug=deployment)
    if not chosen.conditions.filter(key=condition).exists():
        raise Http404("No such condition in this deployment.")
    which = request.GET.get("which", "all")
    which = which if which in TEXT_FILTERS else "all"
    page = stimuli_texts_page(
        deployment=chosen, condition_key=condition, which=which, number=request.GET.get("page", 1)
    )
    context = {
        "study": study,
        "deployment": chosen,
        "condition": condition,
        "which": which,
        "filters": list(TEXT_FILTERS),
        "page": page,
        "rated": set(slots.rated_stimuli(deployment=chosen).values_list("pk", flat=True)),
        "slots_built": Slot.objects.filter(deployment=chosen).exists(),
        "exclude_form": StimulusExcludeForm(),
        "here": request.get_full_path(),
    }
    return render(request, "studies/texts.html", context)


@require_POST
@researcher_required
def truncation_accept(request: HttpRequest, study: Study, deployment: str) -> HttpResponse:
    chosen = get_object_or_404(Deployment, study=study, slug=deployment)
    accept = {"on": True, "off": False}.get(request.POST.get("state", ""))
    if accept is None:
        return HttpResponseBadRequest("state must be on or off")
    try:
        generation_jobs.deployment_truncation_set(deployment=chosen, accept=accept)
    except StudyLoadError as error:
        messages.error(request, f"Not changed: {error}")
    else:
        messages.info(
            request,
            f"{chosen.slug}: texts cut mid-word may be rated."
            if accept
            else f"{chosen.slug}: texts cut mid-word are never rated.",
        )
    return _back(request, study)


@require_POST
@researcher_required
def generation_round(request: HttpRequest, study: Study) -> HttpResponse:
    from studyapp.studies.forms import DecodingRoundForm

    form = DecodingRoundForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items())
        messages.error(request, f"No new round: {problems}")
        return redirect("studies:dashboard", slug=study.slug)
    try:
        jobs = generation_jobs.generation_round_start(study=study, decoding=form.decoding())
    except StudyLoadError as error:
        messages.error(request, f"No new round: {error}")
    else:
        study.refresh_from_db()
        messages.info(
            request,
            f"Generation round {study.generation_round} started with the new decoding: {len(jobs)} job(s) queued. "
            "The earlier round's texts are kept with their settings and no longer screened or rated.",
        )
    return redirect("studies:dashboard", slug=study.slug)


@require_POST
@researcher_required
def generation_start(request: HttpRequest, study: Study) -> HttpResponse:
    jobs = generation_jobs.generation_start(study=study)
    messages.info(request, f"Queued {len(jobs)} generation job(s).")
    return redirect("studies:dashboard", slug=study.slug)


@require_POST
@researcher_required
def job_retry(request: HttpRequest, study: Study, job_id: int) -> HttpResponse:
    job = get_object_or_404(GenerationJob, pk=job_id, deployment__study=study)
    try:
        queued = generation_jobs.generation_job_retry(job=job)
    except StudyLoadError as error:
        messages.error(request, f"Not retried: {error}.")
    else:
        messages.info(request, f"Queued {job} again." if queued else f"{job} is already complete.")
    return redirect("studies:dashboard", slug=study.slug)


@require_POST
@researcher_required
def metrics_start(request: HttpRequest, study: Study) -> HttpResponse:
    n = metrics.metrics_start(study=study)
    messages.info(request, f"Queued metrics for {n} job(s).")
    return redirect("studies:dashboard", slug=study.slug)


@require_POST
@researcher_required
def slots_build(request: HttpRequest, study: Study) -> HttpResponse:
    try:
        built = slots.slots_build(study=study)
    except SlotPlanError as error:
        messages.error(request, f"Slots were not built: {error}")
    else:
        summary = ", ".join(f"{slug} {len(planned)}" for slug, planned in built.items())
        messages.info(request, f"Rater slots: {summary or 'none'}")
    return redirect("studies:dashboard", slug=study.slug)


@require_GET
@researcher_required
def export(request: HttpRequest, study: Study, table: str, fmt: str) -> HttpResponse:
    if table not in EXPORT_FRAMES or fmt not in EXPORT_FORMATS:
        raise Http404("No such export.")
    buffer = io.BytesIO()
    export_frame_write(EXPORT_FRAMES[table](study=study), fmt=fmt, target=buffer)
    stamp = timezone.now().strftime("%Y%m%dT%H%M")
    response = HttpResponse(buffer.getvalue(), content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-{table}-{stamp}.{fmt}"'
    return response


@require_GET
@researcher_required
def report(request: HttpRequest, study: Study) -> HttpResponse:
    latest = study.reports.first()
    ready = latest_ready_report(study=study)
    results = report_results(report=ready)
    context = {
        "study": study,
        "latest": latest,
        "ready": ready,
        "summary": report_summary(results=results),
        "result_tables": report_result_tables(results=results),
    }
    return render(request, "studies/report.html", context)


@require_POST
@researcher_required
def report_request(request: HttpRequest, study: Study) -> HttpResponse:
    reports.report_request(study=study, user=request.user)
    messages.info(request, "The report is being built; this page shows it once it is ready.")
    return redirect("studies:report", slug=study.slug)


@require_GET
@researcher_required
def report_file(request: HttpRequest, study: Study, report_id: int, name: str) -> FileResponse:
    report = get_object_or_404(StudyReport, pk=report_id, study=study, status=StudyReport.Status.READY)
    if not report.out_dir:
        raise Http404("No such file.")
    root = Path(report.out_dir).resolve()
    try:
        path = (root / name).resolve()
        # The name comes from the URL: never serve anything outside the report's own folder.
        found = path.is_relative_to(root) and path.is_file()
    except (ValueError, OSError):  # a NUL byte, a name longer than the file system allows
        found = False
    if not found:
        raise Http404("No such file.")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    response = FileResponse(path.open("rb"), content_type=content_type)
    response["X-Frame-Options"] = "SAMEORIGIN"
    return response
