"""The rater flow's pages, in order: the one place that says which page follows which.

Declared once, in the manner of oTree's ``page_sequence``: a rater's ``Participant.step``
names the page they are on, and moving on means taking the next page of
:data:`PAGE_SEQUENCE`. Views find a step's page here; services and the researcher's
preview find the step that follows here. A flow that stops early (declined, screened
out, study full, timed out) lands on one of the :data:`ENDINGS`, all shown by one view.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from studyapp.rating.models import Participant

Step = Participant.Step


@dataclass(frozen=True)
class FlowPage:
    step: str  # Participant.step while the rater is on this page
    url_name: str  # the view that shows it
    # Its POST stores nothing and only moves on to the next page (a repeat is a no-op).
    continues: bool = False


PAGE_SEQUENCE: tuple[FlowPage, ...] = (
    FlowPage(Step.CONSENT, "rating:consent"),
    FlowPage(Step.INSTRUCTIONS, "rating:instructions", continues=True),
    FlowPage(Step.PRACTICE, "rating:practice", continues=True),
    FlowPage(Step.RATING, "rating:rate"),
    FlowPage(Step.DEBRIEF, "rating:debrief"),
    FlowPage(Step.COMPLETE, "rating:done"),
)

# Where a flow stops before completion; one view shows each with its own text and code.
ENDINGS: frozenset[str] = frozenset({Step.DECLINED, Step.SCREENED_OUT, Step.STUDY_FULL, Step.TIMED_OUT, Step.WITHDRAWN})
ENDED_URL_NAME = "rating:ended"

# A rater on one of these pages is still taking part (their slot is theirs while they are here).
IN_PROGRESS: frozenset[str] = frozenset(page.step for page in PAGE_SEQUENCE[:-1])

# Pages whose POST only moves on: instructions and practice.
CONTINUE_PAGES: frozenset[str] = frozenset(page.step for page in PAGE_SEQUENCE if page.continues)

_URL_NAMES = {page.step: page.url_name for page in PAGE_SEQUENCE} | dict.fromkeys(ENDINGS, ENDED_URL_NAME)
_FOLLOWING = {page.step: after.step for page, after in pairwise(PAGE_SEQUENCE)}


def step_url_name(step: str) -> str:
    """The url name of the view that shows a rater on ``step``."""
    return _URL_NAMES[step]


def step_after(step: str) -> str:
    """The step of the page that follows ``step`` in the sequence (KeyError after the last)."""
    return _FOLLOWING[step]
