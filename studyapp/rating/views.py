"""Rater pages. Thin: read with selectors, write with services, render.

A rater is known by an opaque participant token kept in their (server-side) session,
never by a database id; a researcher's preview keeps its whole state in the session and
writes nothing to the database.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import wraps
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from studyapp.rating import selectors, services
from studyapp.rating.forms import (
    AttentionCheckForm,
    ConsentForm,
    DebriefForm,
    PageTicket,
    RatingPageForm,
    ScoresForm,
    page_ticket_load,
    page_ticket_sign,
    score_field_name,
)
from studyapp.rating.models import Participant
from studyapp.rating.page_sequence import ENDINGS, IN_PROGRESS, step_after, step_url_name
from studyapp.rating.quality import study_time_estimate
from studyapp.rating.ratelimit import entry_rate_allow
from studyapp.studies.access import user_can_view_study
from studyapp.studies.models import Deployment, Study
from studyapp.studies.vocabulary import SLIDER

Step = Participant.Step
PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete"
# Prolific ids are 24 hex characters; anything in this set is accepted so that test
# links work, while an unfilled placeholder such as {{%PROLIFIC_PID%}} is refused.
PROLIFIC_PARAM = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PROLIFIC_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")


def _session_key(study_slug: str) -> str:
    return f"rater:{study_slug}"


def _preview_key(study_slug: str) -> str:
    return f"preview:{study_slug}"


def message(request: HttpRequest, title: str, text: str, *, status: int = 200, **context) -> HttpResponse:
    return render(request, "rating/message.html", {"title": title, "text": text, **context}, status=status)


def _study(slug: str) -> Study | None:
    return Study.objects.filter(slug=slug).first()


def _not_found(request: HttpRequest) -> HttpResponse:
    return message(
        request,
        "Study not found",
        "This link does not lead to a study. Please check that you opened the full link from Prolific.",
        status=404,
    )


@dataclass
class Rater:
    """The person on the page: a participant, or a researcher previewing (nothing stored)."""

    study: Study
    participant: Participant | None = None
    preview: dict | None = None

    @property
    def token(self) -> str:
        return self.participant.token if self.participant else "preview"

    @property
    def step(self) -> str:
        return self.participant.step if self.participant else (self.preview or {})["step"]

    def step_url(self) -> str:
        return reverse(step_url_name(self.step), args=[self.study.slug])


def _rater(request: HttpRequest, study: Study) -> Rater | None:
    preview = request.session.get(_preview_key(study.slug))
    if preview is not None:
        return Rater(study=study, preview=preview)
    token = request.session.get(_session_key(study.slug))
    if not token:
        return None
    participant = Participant.objects.filter(study=study, token=token).first()
    if participant is None:
        return None
    participant.study = study
    return Rater(study=study, participant=participant)


def _study_and_rater(request: HttpRequest, study_slug: str) -> tuple[Study | None, Rater | None]:
    """``_study`` then ``_rater``; a participant is read with their study in one query."""
    if request.session.get(_preview_key(study_slug)) is None:
        token = request.session.get(_session_key(study_slug))
        participant = (
            Participant.objects.select_related("study").filter(study__slug=study_slug, token=token).first()
            if token
            else None
        )
        if participant is not None:
            return participant.study, Rater(study=participant.study, participant=participant)
    study = _study(study_slug)
    return study, (_rater(request, study) if study is not None else None)


def _preview_update(request: HttpRequest, rater: Rater, **changes) -> None:
    rater.preview = {**(rater.preview or {}), **changes}
    request.session[_preview_key(rater.study.slug)] = rater.preview


def rater_page(step_names: AbstractSet[str]):
    """Load the study and the rater; send anyone on another step to their own page."""

    def decorate(view):
        @wraps(view)
        @never_cache
        def wrapped(request: HttpRequest, study_slug: str) -> HttpResponse:
            study, rater = _study_and_rater(request, study_slug)
            if study is None:
                return _not_found(request)
            if rater is None:
                return message(
                    request,
                    "Please start from your study link",
                    "We could not find your session. Please open the study again from the link on Prolific; "
                    "you will continue where you left off.",
                    status=403,
                )
            if rater.step not in step_names:
                return HttpResponseRedirect(rater.step_url(), status=303 if request.method == "POST" else 302)
            if rater.participant is not None and request.method == "GET":
                services.participant_touch(participant=rater.participant)
            return view(request, rater)

        return wrapped

    return decorate


def _redirect(rater: Rater) -> HttpResponse:
    return HttpResponseRedirect(rater.step_url(), status=303)


# --- Entry ---------------------------------------------------------------------------------


@require_GET
@never_cache
def entry(request: HttpRequest, study_slug: str, deployment_ref: str | None = None) -> HttpResponse:
    """A Prolific link: resume from the session, or check the link and enter (or resume) its participation."""
    study = _study(study_slug)
    if study is None:
        return _not_found(request)
    params = {key: request.GET.get(key, "").strip() for key in PROLIFIC_PARAMS}
    if not any(params.values()):
        return _entry_from_session(request, study)
    problem = _link_problem(request, study, params)
    if problem is not None:
        return problem
    pinned = None
    if deployment_ref is not None:
        pinned = selectors.deployment_by_ref(study=study, ref=deployment_ref)
        if pinned is None:
            return _not_found(request)
    refusal = _new_entry_refusal(request, study, params, pinned)
    if refusal is not None:
        return refusal
    participant = services.participant_enter(
        study=study,
        prolific_pid=params["PROLIFIC_PID"],
        prolific_study_id=params["STUDY_ID"],
        prolific_session_id=params["SESSION_ID"],
        pinned_deployment=pinned,
        user_agent=request.headers.get("User-Agent", ""),
    )
    request.session.pop(_preview_key(study.slug), None)
    request.session[_session_key(study.slug)] = participant.token
    return HttpResponseRedirect(Rater(study=study, participant=participant).step_url())


def _entry_from_session(request: HttpRequest, study: Study) -> HttpResponse:
    """A link without Prolific details: back to the rater's page when this browser has one."""
    rater = _rater(request, study)
    if rater is not None:
        return HttpResponseRedirect(rater.step_url())
    return message(
        request,
        "Your study link is incomplete",
        "This link is missing your Prolific details. Please open the study from Prolific again "
        "using the button there, so that your participation can be recorded.",
        status=400,
    )


def _link_problem(request: HttpRequest, study: Study, params: dict[str, str]) -> HttpResponse | None:
    """A page saying what is wrong with the link's Prolific details; None when they are fine."""
    bad = [key for key, value in params.items() if not PROLIFIC_PARAM.match(value)]
    if bad:
        return message(
            request,
            "Your study link is incomplete",
            "Some of the details Prolific adds to the link are missing or malformed "
            f"({', '.join(bad)}). Please open the study from Prolific again.",
            status=400,
        )
    if study.prolific_study_id and params["STUDY_ID"] != study.prolific_study_id:
        return message(
            request,
            "This link does not belong to this study",
            "The study details in this link do not match this study. Please open the study again from Prolific.",
            status=400,
        )
    return None


def _new_entry_refusal(
    request: HttpRequest, study: Study, params: dict[str, str], pinned: Deployment | None
) -> HttpResponse | None:
    """Why a new participation cannot start now (rate limit, closed, full); None when it can.

    A returning rater (the same Prolific session) always resumes, whatever these say.
    """
    returning = Participant.objects.filter(
        study=study, prolific_pid=params["PROLIFIC_PID"], prolific_session_id=params["SESSION_ID"]
    ).exists()
    if returning:
        return None
    if not entry_rate_allow(request=request):
        return message(
            request,
            "Too many new entries",
            "Too many new participations were started from your network in the last hour. "
            "Please try again later, or return the study on Prolific.",
            status=429,
        )
    if not study.is_open:
        return message(
            request,
            "This study is closed",
            "This study is not accepting participants at the moment. Thank you for your interest; "
            "please return the study on Prolific.",
        )
    if not selectors.study_has_room(study=study, deployment=pinned, pilot=study.pilot_mode):
        return _study_full(request)
    return None


def _study_full(request: HttpRequest) -> HttpResponse:
    return message(
        request,
        "This study is full",
        "Thank you for your interest! All places in this study are taken at the moment. "
        "Please return the study on Prolific so that you are not penalised.",
    )


@require_GET
@never_cache
def preview_start(request: HttpRequest, study_slug: str) -> HttpResponse:
    study = _study(study_slug)
    if study is None:
        return _not_found(request)
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not user_can_view_study(user=user, study=study):
        return message(request, "Not allowed", "Only the researchers of this study can preview it.", status=403)
    # ?deployment=<slug>: the pages of that deployment's first slot (its own task and stimuli).
    deployment = request.GET.get("deployment", "")
    if deployment and not study.deployments.filter(slug=deployment, automatic_only=False).exists():
        return message(
            request, "No such deployment", f"This study has no rated deployment {deployment!r} to preview.", status=404
        )
    request.session[_preview_key(study.slug)] = {"step": Step.CONSENT, "done": [], "deployment": deployment}
    return HttpResponseRedirect(reverse("rating:consent", args=[study.slug]))


@require_POST
def alive(request: HttpRequest, study_slug: str) -> HttpResponse:
    """The heartbeat of an open rater page: the rater is still here, keep their slot.

    One UPDATE; nothing else changes. A rater whose page is closed stops sending it and
    loses the slot after the study's timeout (or the hold, before a first rating).
    """
    _, rater = _study_and_rater(request, study_slug)
    if rater is None or rater.participant is None:
        return HttpResponse(status=204)  # a preview, or nobody: nothing to keep
    if rater.participant.step in IN_PROGRESS:
        services.participant_touch(participant=rater.participant)
    return HttpResponse(status=204)


# --- Steps -------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@rater_page({Step.CONSENT})
def consent(request: HttpRequest, rater: Rater) -> HttpResponse:
    form = ConsentForm(request.POST or None)
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "rating/consent.html", _consent_context(rater, form), status=400)
        agree = form.cleaned_data["choice"] == "agree"
        if rater.participant is not None:
            services.participant_consent(participant=rater.participant, agree=agree)
        else:
            _preview_update(request, rater, step=step_after(Step.CONSENT) if agree else Step.DECLINED)
        return _redirect(rater)
    return render(request, "rating/consent.html", _consent_context(rater, form))


def _consent_context(rater: Rater, form: ConsentForm) -> dict:
    pinned = rater.participant.pinned_deployment if rater.participant is not None else None
    return {"rater": rater, "form": form, "estimate": study_time_estimate(study=rater.study, deployment=pinned)}


def _advance(request: HttpRequest, rater: Rater, from_step: str) -> HttpResponse:
    if rater.participant is not None:
        services.participant_advance(participant=rater.participant, from_step=from_step)
    else:
        _preview_update(request, rater, step=step_after(from_step))
    return _redirect(rater)


@require_http_methods(["GET", "POST"])
@rater_page({Step.INSTRUCTIONS})
def instructions(request: HttpRequest, rater: Rater) -> HttpResponse:
    if request.method == "POST":
        return _advance(request, rater, Step.INSTRUCTIONS)
    return render(request, "rating/instructions.html", {"rater": rater, "dimensions": _dimensions(rater)})


def _dimensions(rater: Rater):
    return selectors.rater_dimensions(study=rater.study, seed=rater.token)


@require_http_methods(["GET", "POST"])
@rater_page({Step.PRACTICE})
def practice(request: HttpRequest, rater: Rater) -> HttpResponse:
    dimensions = _dimensions(rater)
    form = ScoresForm(request.POST or None, dimensions=dimensions)
    if request.method == "POST" and form.is_valid():
        # Practice answers are not data: the page only teaches the scales.
        return _advance(request, rater, Step.PRACTICE)
    practice = selectors.study_practice(study=rater.study)
    context = {
        "rater": rater,
        "form": form,
        "practice": practice,
        "dimensions": dimensions,
        "scales": _scales(form, dimensions, typical=practice["typical"]),
    }
    return render(request, "rating/practice.html", context, status=400 if form.is_bound else 200)


def _scales(form, dimensions, typical: dict | None = None) -> list[dict]:
    scales = []
    for dimension in dimensions:
        name = score_field_name(dimension)
        low, high = dimension.scale_range
        value = form[name].value() if form.is_bound else None
        scales.append(
            {
                "name": name,
                "dimension": dimension,
                "slider": dimension.scale == SLIDER,
                "choices": [str(v) for v in range(low, high + 1)],
                "value": "" if value is None else str(value),
                "errors": form[name].errors if form.is_bound else [],
                "typical": (typical or {}).get(dimension.key),
            }
        )
    return scales


def _plan(rater: Rater) -> selectors.RaterPlan:
    if rater.participant is not None:
        return selectors.participant_plan(participant=rater.participant)
    preview = rater.preview or {}
    return selectors.preview_plan(
        study=rater.study, done=set(preview.get("done", [])), deployment_slug=preview.get("deployment", "")
    )


def _render_page(request, rater, plan, page, form=None, status=200, ticket: str | None = None) -> HttpResponse:
    context = {
        "rater": rater,
        "page": page,
        "page_number": plan.n_done + 1,
        "page_count": len(plan.pages),
        "dimensions": plan.dimensions,
        "min_seconds": rater.study.min_seconds_per_page,
        # A page shown again with form errors keeps its first ticket: time on page runs on.
        "ticket": ticket
        or page_ticket_sign(
            rater_token=rater.token, index=page.index, check_index=page.check.index if page.check else None
        ),
    }
    if page.check is not None:
        form = form or AttentionCheckForm(rater_token=rater.token, check=page.check)
        value = form["response"].value() if form.is_bound else None
        context.update(form=form, check=page.check, value="" if value is None else str(value))
        return render(request, "rating/check.html", context, status=status)
    form = form or RatingPageForm(dimensions=plan.dimensions, rater_token=rater.token)
    context.update(
        form=form,
        stimulus=page.stimulus,
        prompt=selectors.stimulus_display_prompt(stimulus=page.stimulus),
        scales=_scales(form, plan.dimensions),
    )
    return render(request, "rating/rate.html", context, status=status)


def _out_of_date(request: HttpRequest, rater: Rater, status: int = 400) -> HttpResponse:
    return message(
        request,
        "This page is out of date",
        "This answer does not belong to the page you are on. Nothing was changed. "
        "Please continue from your current page.",
        status=status,
        continue_url=rater.step_url(),
    )


@require_http_methods(["GET", "POST"])
@rater_page({Step.RATING})
def rate(request: HttpRequest, rater: Rater) -> HttpResponse:
    if request.method == "GET":
        return _rate_show(request, rater)
    # The signed ticket names the page and its kind, so the form is checked before the
    # plan is read: a valid answer has its plan read once, under the slot's row lock.
    ticket = page_ticket_load(value=request.POST.get("page", ""), rater_token=rater.token)
    dimensions = _dimensions(rater)
    form = _page_form(request, rater, ticket, dimensions) if ticket is not None else None
    if ticket is None or form is None:
        return _out_of_date(request, rater)
    if not form.is_valid():
        return _rate_invalid(request, rater, ticket, form)
    if rater.participant is None:
        return _preview_page_done(request, rater, ticket, form)
    if isinstance(form, AttentionCheckForm):
        assert ticket.check_index is not None  # noqa: S101 (narrows the type: the form was chosen by the ticket)
        result = services.attention_check_submit(
            participant=rater.participant,
            page_index=ticket.index,
            check_index=ticket.check_index,
            response=str(form.cleaned_data["response"]),
            dimensions=dimensions,
            held_back=form.held_back_count(),
        )
    else:
        result = services.rating_page_submit(
            participant=rater.participant,
            page_index=ticket.index,
            stimulus_token=form.cleaned_data["stimulus"],
            scores=form.scores(),
            seconds_on_page=form.cleaned_data["page"].seconds_on_page,
            dimensions=dimensions,
            held_back=form.held_back_count(),
        )
    return _outcome_response(request, rater, result.outcome)


def _page_form(
    request: HttpRequest, rater: Rater, ticket: PageTicket, dimensions
) -> AttentionCheckForm | RatingPageForm | None:
    """The form of the page the ticket names; None for a check the study does not have."""
    if ticket.check_index is None:
        return RatingPageForm(request.POST, dimensions=dimensions, rater_token=rater.token)
    check = next(
        (c for c in selectors.study_attention_checks(study=rater.study) if c.index == ticket.check_index), None
    )
    if check is None:
        return None
    return AttentionCheckForm(request.POST, rater_token=rater.token, check=check)


def _rate_show(request: HttpRequest, rater: Rater) -> HttpResponse:
    plan = _plan(rater)
    page = plan.current
    if page is None and rater.participant is None:
        # A preview of a study without slots yet: nothing to rate, go on to the debrief.
        _preview_update(request, rater, step=step_after(Step.RATING))
        return HttpResponseRedirect(rater.step_url())
    if page is None:
        return _out_of_date(request, rater, status=409)
    return _render_page(request, rater, plan, page)


def _ticket_classify(request: HttpRequest, plan: selectors.RaterPlan, ticket: PageTicket):
    """``services.page_classify`` of the page a ticket names, with the answer's stimulus."""
    stimulus_token = request.POST.get("stimulus", "") if ticket.check_index is None else None
    return services.page_classify(plan, ticket.index, stimulus_token=stimulus_token, check_index=ticket.check_index)


def _rate_invalid(request: HttpRequest, rater: Rater, ticket: PageTicket, form) -> HttpResponse:
    """The page again with its form errors, when it is still the one to answer."""
    plan = _plan(rater)
    outcome, page = _ticket_classify(request, plan, ticket)
    if outcome is not None or page is None:
        return _outcome_response(request, rater, outcome or services.PageOutcome.FOREIGN)
    return _render_page(request, rater, plan, page, form=form, status=400, ticket=request.POST["page"])


def _outcome_response(request: HttpRequest, rater: Rater, outcome: services.PageOutcome) -> HttpResponse:
    """What the rater sees after a page was submitted: their current page, or why not."""
    if outcome is services.PageOutcome.FOREIGN:
        return _out_of_date(request, rater)
    if outcome is services.PageOutcome.NOT_CURRENT:
        return _out_of_date(request, rater, status=409)
    return _redirect(rater)  # saved, saved before (a double submission), or the slot is gone


def _preview_page_done(request: HttpRequest, rater: Rater, ticket: PageTicket, form) -> HttpResponse:
    """A preview keeps its answered pages in the session; the same rules as a participant's."""
    plan = _plan(rater)
    outcome, _ = _ticket_classify(request, plan, ticket)
    if outcome is None:
        done = sorted(plan.done | {ticket.index})
        step = step_after(Step.RATING) if len(done) == len(plan.pages) else Step.RATING
        _preview_update(request, rater, done=done, step=step)
    return _outcome_response(request, rater, outcome or services.PageOutcome.SAVED)


@require_http_methods(["GET", "POST"])
@rater_page({Step.DEBRIEF})
def debrief(request: HttpRequest, rater: Rater) -> HttpResponse:
    form = DebriefForm(request.POST or None, questions=selectors.study_debrief_questions(study=rater.study))
    if request.method == "POST":
        if form.is_valid():
            if rater.participant is not None:
                services.participant_debrief_submit(participant=rater.participant, answers=form.answers())
            else:
                _preview_update(request, rater, step=step_after(Step.DEBRIEF))
            return _redirect(rater)
        return render(request, "rating/debrief.html", {"rater": rater, "form": form}, status=400)
    return render(request, "rating/debrief.html", {"rater": rater, "form": form})


def prolific_return_url(code: str) -> str:
    return f"{PROLIFIC_COMPLETE_URL}?{urlencode({'cc': code})}"


@require_GET
@rater_page({Step.COMPLETE})
def done(request: HttpRequest, rater: Rater) -> HttpResponse:
    code = selectors.participant_ending_code(study=rater.study, step=rater.step, flags=[])
    context = {"rater": rater, "code": code, "return_url": prolific_return_url(code) if code else ""}
    return render(request, "rating/done.html", context)


@require_GET
@rater_page(ENDINGS)
def ended(request: HttpRequest, rater: Rater) -> HttpResponse:
    """Every ending but completion; each with its code from the spec and Prolific's redirect."""
    study = rater.study
    if rater.step == Step.STUDY_FULL:
        return _study_full(request)
    flags = rater.participant.flags if rater.participant is not None else []
    code = selectors.participant_ending_code(study=study, step=rater.step, flags=flags)
    if rater.step == Step.DECLINED:
        title, text = "Thank you", "You chose not to take part. No ratings were recorded."
        if not code:
            text += " Please return the study on Prolific."
    elif rater.step == Step.TIMED_OUT:
        if code:
            title = "Thank you for the work you did"
            text = (
                "You were away from the study for a while, so the rest of your pages went to another participant. "
                "The ratings you gave are kept. Please submit this code on Prolific so that you are paid for them."
            )
        else:
            title = "Your session has expired"
            text = (
                "You were away from the study for a while, so your place was given to another participant. "
                "Please return the study on Prolific."
            )
    elif rater.step == Step.WITHDRAWN:
        title = "Your participation has ended"
        text = "The researchers have ended your participation in this study. Thank you for your time."
    else:
        title = "Thank you for your time"
        text = "Some answers to the attention questions did not match the instructions, so this session ends here."
    return message(request, title, text, code=code, return_url=prolific_return_url(code) if code else "")
