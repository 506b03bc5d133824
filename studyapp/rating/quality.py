"""Reads about how raters work: time per page, speeding, and the study's time estimate.

Time on a page is measured on the server (the signed page ticket holds when the page was
shown), so it cannot be made up by the browser; every dimension of a page carries the
same value, so one value per (rater, page) is read.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from studyapp.rating.models import Participant, Rating
from studyapp.studies.models import Deployment, Study

# Fewer measured pages than this and the spec's expected time is used instead: a handful
# of pilot pages says little about the median.
MIN_MEASURED_PAGES = 20
# Consent, instructions, practice and debrief together, in pages' worth of time.
OVERHEAD_PAGES = 3
# Participant flags (docs/rating.md): a rater timed out after saving ratings; a page faster
# than the study's minimum time per page.
PARTIAL_FLAG = "timed_out_partial"
SPEEDING_FLAG = "speeding"


def page_speeding(*, study: Study, seconds_on_page: float | None, held_back: int) -> bool:
    """A page is speeding when the page held back a click as too fast, or when it was answered
    faster than the study's minimum (0: off). The page holds a fast click back, so a browser
    rater's stored time is rarely below the minimum: the held-back clicks are what shows it."""
    minimum = study.min_seconds_per_page
    if not minimum:
        return False
    return held_back > 0 or (seconds_on_page is not None and seconds_on_page < minimum)


@dataclass(frozen=True)
class PageTime:
    participant_id: int
    page_index: int
    seconds: float
    pilot: bool
    held_back: int = 0


def study_page_times(*, study: Study) -> list[PageTime]:
    """One row per rated page with a measured time (one query)."""
    rows = (
        Rating.objects.filter(participant__study=study, seconds_on_page__isnull=False)
        .values_list("participant_id", "page_index", "seconds_on_page", "pilot", "held_back")
        .distinct()
    )
    return [
        PageTime(participant, page, float(seconds or 0.0), bool(pilot), held_back)
        for participant, page, seconds, pilot, held_back in rows
    ]


@dataclass(frozen=True)
class TimeEstimate:
    minutes: int
    seconds_per_page: float
    measured_pages: int  # 0: the spec's expected time per page was used

    @property
    def measured(self) -> bool:
        return self.measured_pages >= MIN_MEASURED_PAGES


def study_rating_pages(*, study: Study, deployment: Deployment | None = None) -> int:
    """Rating pages of one rater: the deployment's stimuli per rater and the attention checks.

    Without a deployment (a rater not yet given a slot), the most any rated deployment asks.
    """
    if deployment is not None:
        per_rater = deployment.per_rater
    else:
        own = Deployment.objects.filter(study=study, automatic_only=False).values_list("stimuli_per_rater", flat=True)
        per_rater = max((n or study.stimuli_per_rater for n in own), default=study.stimuli_per_rater)
    return per_rater + len(study.attention_checks or [])


def study_time_estimate(
    *, study: Study, pages: list[PageTime] | None = None, deployment: Deployment | None = None
) -> TimeEstimate:
    """Minutes a rater needs: pages of the design x the median time per page so far.

    The design gives the pages (``study_rating_pages``: the rater's deployment's, or the most
    any deployment asks, plus consent, instructions, practice and debrief); the median comes
    from the study's own rated pages once there are enough of them, before that from the
    spec's ``expected_seconds_per_page``. ``pages``: the study's page times when the caller has
    read them already.
    """
    seconds = [page.seconds for page in (study_page_times(study=study) if pages is None else pages)]
    measured = len(seconds) >= MIN_MEASURED_PAGES
    per_page = statistics.median(seconds) if measured else study.expected_seconds_per_page
    n_pages = study_rating_pages(study=study, deployment=deployment) + OVERHEAD_PAGES
    return TimeEstimate(
        minutes=max(1, math.ceil(n_pages * per_page / 60)),
        seconds_per_page=float(per_page),
        measured_pages=len(seconds) if measured else 0,
    )


@dataclass(frozen=True)
class RaterQuality:
    median_seconds_per_page: float | None
    pages: int
    speeding_pages: int
    speeding_raters: int
    partial_raters: int
    pilot_raters: int
    pilot_pages: int
    completions_last_hour: int
    completion_times: list[datetime]  # in order
    estimate: TimeEstimate


def study_rater_quality(*, study: Study) -> RaterQuality:
    """Dashboard figures: time per page, who went too fast, timed out after work or was a pilot.

    Two queries (the page times and the participants), whatever the study's size.
    """
    pages = study_page_times(study=study)
    fast = [
        page for page in pages if page_speeding(study=study, seconds_on_page=page.seconds, held_back=page.held_back)
    ]
    hour_ago = timezone.now() - timedelta(hours=1)
    partial = pilots = 0
    completed: list[datetime] = []
    for flags, pilot, completed_at in Participant.objects.filter(study=study).values_list(
        "flags", "pilot", "completed_at"
    ):
        partial += PARTIAL_FLAG in (flags or [])
        pilots += bool(pilot)
        if completed_at is not None:
            completed.append(completed_at)
    completed.sort()
    return RaterQuality(
        median_seconds_per_page=statistics.median([page.seconds for page in pages]) if pages else None,
        pages=len(pages),
        speeding_pages=len(fast),
        speeding_raters=len({page.participant_id for page in fast}),
        partial_raters=partial,
        pilot_raters=pilots,
        pilot_pages=sum(page.pilot for page in pages),
        completions_last_hour=sum(moment >= hour_ago for moment in completed),
        completion_times=completed,
        estimate=study_time_estimate(study=study, pages=pages),
    )
