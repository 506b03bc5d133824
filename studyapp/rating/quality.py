"""Reads about how raters work: time per page, speeding, and the study's time estimate.

Time on a page is measured on the server (the signed page ticket holds when the page was
shown), so it cannot be made up by the browser; every dimension of a page carries the
same value, so one value per (rater, page) is read.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from studyapp.rating.models import Participant, Rating
from studyapp.studies.models import Study

# Fewer measured pages than this and the spec's expected time is used instead: a handful
# of pilot pages says little about the median.
MIN_MEASURED_PAGES = 20
# Consent, instructions, practice and debrief together, in pages' worth of time.
OVERHEAD_PAGES = 3
# Participant flags (docs/rating.md): a rater timed out after saving ratings; a page faster
# than the study's minimum time per page.
PARTIAL_FLAG = "timed_out_partial"
SPEEDING_FLAG = "speeding"


def study_page_seconds(*, study: Study, include_pilot: bool = True) -> list[float]:
    """Seconds on each rated page of the study (one value per rater and page)."""
    ratings = Rating.objects.filter(participant__study=study)
    if not include_pilot:
        ratings = ratings.filter(pilot=False)
    return [seconds for _, _, seconds in _pages(ratings)]


def _pages(ratings) -> list[tuple[int, int, float]]:
    """(participant id, page index, seconds) once per rated page with a measured time."""
    rows = ratings.filter(seconds_on_page__isnull=False).values_list("participant_id", "page_index", "seconds_on_page")
    return [(participant, page, float(seconds or 0.0)) for participant, page, seconds in rows.distinct()]


@dataclass(frozen=True)
class TimeEstimate:
    minutes: int
    seconds_per_page: float
    measured_pages: int  # 0: the spec's expected time per page was used

    @property
    def measured(self) -> bool:
        return self.measured_pages >= MIN_MEASURED_PAGES


def study_time_estimate(*, study: Study) -> TimeEstimate:
    """Minutes a rater needs: pages of the design x the median time per page so far.

    The design gives the pages (stimuli per rater, attention checks, plus consent,
    instructions, practice and debrief); the median comes from the study's own rated pages
    once there are enough of them, before that from the spec's ``expected_seconds_per_page``.
    """
    seconds = study_page_seconds(study=study)
    per_page = statistics.median(seconds) if len(seconds) >= MIN_MEASURED_PAGES else study.expected_seconds_per_page
    pages = study.stimuli_per_rater + len(study.attention_checks or []) + OVERHEAD_PAGES
    return TimeEstimate(
        minutes=max(1, math.ceil(pages * per_page / 60)),
        seconds_per_page=float(per_page),
        measured_pages=len(seconds) if len(seconds) >= MIN_MEASURED_PAGES else 0,
    )


@dataclass(frozen=True)
class RaterQuality:
    median_seconds_per_page: float | None
    pages: int
    speeding_pages: int
    speeding_raters: int
    partial_raters: int


def study_rater_quality(*, study: Study) -> RaterQuality:
    """Dashboard figures: the median time per page and who went too fast or timed out after work."""
    minimum = study.min_seconds_per_page
    per_page = _pages(Rating.objects.filter(participant__study=study))
    fast = [(participant, seconds) for participant, _, seconds in per_page if minimum and seconds < minimum]
    flags = Participant.objects.filter(study=study).values_list("flags", flat=True)
    return RaterQuality(
        median_seconds_per_page=statistics.median([s for _, _, s in per_page]) if per_page else None,
        pages=len(per_page),
        speeding_pages=len(fast),
        speeding_raters=len({participant for participant, _ in fast}),
        partial_raters=sum(1 for f in flags if PARTIAL_FLAG in (f or [])),
    )
