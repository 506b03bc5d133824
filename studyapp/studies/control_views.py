"""Control-room actions of the dashboard: open or close the study, switch pilot mode."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from studyapp.studies import control
from studyapp.studies.models import Study
from studyapp.studies.views import researcher_required

SWITCH = {"on": True, "off": False}


def _switch(request: HttpRequest, study: Study, apply: Callable[[bool], object], said: dict[bool, str]) -> HttpResponse:
    value = SWITCH.get(request.POST.get("state", ""))
    if value is None:
        return HttpResponseBadRequest("state must be on or off")
    apply(value)
    messages.info(request, said[value])
    return redirect("studies:dashboard", slug=study.slug)


@require_POST
@researcher_required
def study_open(request: HttpRequest, study: Study) -> HttpResponse:
    return _switch(
        request,
        study,
        lambda value: control.study_open_set(study=study, is_open=value),
        {True: "The study is open to raters.", False: "The study is closed to new raters."},
    )


@require_POST
@researcher_required
def study_pilot(request: HttpRequest, study: Study) -> HttpResponse:
    return _switch(
        request,
        study,
        lambda value: control.study_pilot_set(study=study, pilot=value),
        {
            True: "Pilot mode on: new participations are marked pilot and left out of the analysis.",
            False: "Pilot mode off: new participations are real data.",
        },
    )
