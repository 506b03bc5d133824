"""The dashboard as a control room: open/close, pilot mode, the links to give Prolific, and
the rater-quality figures of issue 13 (time per page, speeding, partial completions, pilots).

Writes are ``<noun>_<verb>`` services; the reads gather what the template shows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from urllib.parse import quote

from django.db.models import Count
from django.urls import reverse

from studyapp.rating.models import DeploymentLink
from studyapp.rating.quality import RaterQuality, study_rater_quality
from studyapp.rating.services import slots_release_stale
from studyapp.studies import charts
from studyapp.studies.dashboard import Dashboard
from studyapp.studies.models import Stimulus, Study

# Prolific replaces these in the study URL with each participant's values.
PROLIFIC_PLACEHOLDERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


def study_open_set(*, study: Study, is_open: bool) -> Study:
    """Open or close the study. Closing frees at once every slot whose rater is past the
    hold with no rating saved (or silent past the timeout): raters at work finish, holds go."""
    Study.objects.filter(pk=study.pk).update(is_open=is_open)
    study.is_open = is_open
    if not is_open:
        slots_release_stale(study=study)
    return study


def study_pilot_set(*, study: Study, pilot: bool) -> Study:
    """New participations from now on are pilot data (or not); earlier ones keep their mark."""
    Study.objects.filter(pk=study.pk).update(pilot_mode=pilot)
    study.pilot_mode = pilot
    return study


@dataclass(frozen=True)
class EntryLink:
    label: str
    url: str


@dataclass(frozen=True)
class ControlRoom:
    entry_links: list[EntryLink]
    preview_url: str
    quality: RaterQuality
    slots_left: int
    hours_to_completion: float | None
    target_ratings_per_stimulus: int
    stimuli_by_ratings: list[tuple[int, int]]  # (pages rated, stimuli with that many), target included
    completions_chart: str  # inline SVG, no scripts, no external files
    conditions_chart: str


def _with_placeholders(absolute_url: str) -> str:
    # Prolific's placeholders must reach it verbatim; only the path is quoted.
    return f"{quote(absolute_url, safe=':/')}?{PROLIFIC_PLACEHOLDERS}"


def study_control_room(*, study: Study, base_url: str, dashboard: Dashboard) -> ControlRoom:
    """``base_url``: scheme and host the raters use (``request.build_absolute_uri('/')``).

    Reuses what ``dashboard`` read already; four queries of its own whatever the design's size.
    """
    base = base_url.rstrip("/")
    links = [
        EntryLink("Whole study (raters spread evenly over deployments)", reverse("rating:entry", args=[study.slug]))
    ]
    for slug, token in (
        DeploymentLink.objects.filter(deployment__study=study)
        .order_by("deployment__slug")
        .values_list("deployment__slug", "token")
    ):
        links.append(EntryLink(f"Pinned to {slug}", reverse("rating:entry_pinned", args=[study.slug, token])))
    quality = study_rater_quality(study=study)
    left = sum(row.slots.get("free", 0) + row.slots.get("active", 0) for row in dashboard.deployments)
    recent = quality.completions_last_hour
    # Per stimulus: raters who rated it (one page rates it on every dimension) and slots that plan it.
    rated: Counter[int] = Counter()
    target = 0
    for n_rated, n_planned in (
        Stimulus.objects.filter(deployment__study=study)
        .annotate(n_rated=Count("ratings__participant", distinct=True), n_planned=Count("planned_in", distinct=True))
        .values_list("n_rated", "n_planned")
    ):
        rated[n_rated] += 1
        target = max(target, n_planned)  # the balanced design plans every stimulus equally often
    return ControlRoom(
        entry_links=[EntryLink(link.label, _with_placeholders(base + link.url)) for link in links],
        preview_url=base + reverse("rating:preview", args=[study.slug]),
        quality=quality,
        slots_left=left,
        # At the last hour's pace; None until someone finished in the last hour.
        hours_to_completion=round(left / recent, 1) if recent else None,
        target_ratings_per_stimulus=target,
        stimuli_by_ratings=sorted(({**rated, target: rated.get(target, 0)}).items()),
        completions_chart=charts.cumulative_svg(quality.completion_times, label="completed raters"),
        conditions_chart=charts.bars_svg(
            [(row["condition"], row["ratings"]) for row in dashboard.ratings_per_condition], label="ratings"
        ),
    )
