"""The dashboard as a control room: open/close, pilot mode, the links to give Prolific, and
the rater-quality figures of issue 13 (time per page, speeding, partial completions, pilots).

Writes are ``<noun>_<verb>`` services; the reads gather what the template shows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from django.db.models import Count, Q
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
class StimulusProgress:
    """How often one rated deployment's design stimuli have been rated, against its own target."""

    deployment: str
    slots_built: bool
    stimuli: int = 0  # in the design: planned in its balanced slots (pilot copies are outside it)
    target_low: int = 0  # ratings per stimulus the slots plan (equal in a balanced design)
    target_high: int = 0
    at_target: int = 0  # stimuli rated at least as often as their slots plan
    by_times_rated: list[tuple[int, int]] = field(default_factory=list)  # (times rated, stimuli), target included

    @property
    def target(self) -> str:
        return str(self.target_high) if self.target_low == self.target_high else f"{self.target_low}–{self.target_high}"


@dataclass(frozen=True)
class ControlRoom:
    entry_links: list[EntryLink]
    previews: list[EntryLink]  # one per rated deployment: the real pages of its first slot
    quality: RaterQuality
    slots_left: int
    hours_to_completion: float | None
    stimulus_progress: list[StimulusProgress]
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
    rated = [row.slug for row in dashboard.deployments if not row.automatic_only]
    preview = base + reverse("rating:preview", args=[study.slug])
    quality = study_rater_quality(study=study)
    left = sum(row.slots.get("free", 0) + row.slots.get("active", 0) for row in dashboard.deployments)
    recent = quality.completions_last_hour
    return ControlRoom(
        entry_links=[EntryLink(link.label, _with_placeholders(base + link.url)) for link in links],
        previews=[EntryLink(slug, f"{preview}?{urlencode({'deployment': slug})}") for slug in rated],
        quality=quality,
        slots_left=left,
        # At the last hour's pace; None until someone finished in the last hour.
        hours_to_completion=round(left / recent, 1) if recent else None,
        stimulus_progress=_stimulus_progress(study=study, deployments=rated),
        completions_chart=charts.cumulative_svg(quality.completion_times, label="completed raters"),
        conditions_chart=charts.bars_svg(
            [(row["condition"], row["ratings"]) for row in dashboard.ratings_per_condition], label="ratings"
        ),
    )


def _stimulus_progress(*, study: Study, deployments: list[str]) -> list[StimulusProgress]:
    """Per rated deployment (slugs in ``deployments``), its design stimuli by times rated; one query.

    The design is what the balanced slots plan: the stimuli of the rated subset only (not every
    generated sample), each with the number of slots that plan it as its target. A rater rates a
    stimulus on one page, on every dimension: times rated counts raters, pilots and withdrawn
    raters left out.
    """
    per_stimulus: dict[str, list[tuple[int, int]]] = {}
    for slug, n_rated, n_planned in (
        Stimulus.objects.current()
        .filter(deployment__study=study, deployment__automatic_only=False)
        .annotate(
            n_rated=Count(
                "ratings__participant", distinct=True, filter=Q(ratings__pilot=False, ratings__withdrawn=False)
            ),
            n_planned=Count("planned_in", distinct=True, filter=Q(planned_in__slot__pilot=False)),
        )
        .filter(n_planned__gt=0)
        .values_list("deployment__slug", "n_rated", "n_planned")
    ):
        per_stimulus.setdefault(slug, []).append((n_rated, n_planned))
    progress = []
    for slug in deployments:
        stimuli = per_stimulus.get(slug)
        if not stimuli:
            progress.append(StimulusProgress(deployment=slug, slots_built=False))
            continue
        low, high = min(planned for _, planned in stimuli), max(planned for _, planned in stimuli)
        counts = Counter(rated for rated, _ in stimuli)
        progress.append(
            StimulusProgress(
                deployment=slug,
                slots_built=True,
                stimuli=len(stimuli),
                target_low=low,
                target_high=high,
                at_target=sum(rated >= planned for rated, planned in stimuli),
                by_times_rated=sorted({**counts, high: counts.get(high, 0)}.items()),
            )
        )
    return progress
