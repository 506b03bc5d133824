"""Reads of the rater side: a participant's page plan, study config normalised for pages.

A rater's page order and dimension order are derived from their opaque token with a
seeded shuffle, so they are the same on every request (resume after reload) without
being stored, and differ between raters.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Exists, OuterRef, Q, Value
from django.urls import reverse
from django.utils import timezone

from generation.task_families import template_render
from studyapp.rating.models import (
    AttentionCheckResponse,
    DeploymentLink,
    Participant,
    Rating,
    Slot,
    SlotStimulus,
)
from studyapp.rating.quality import PARTIAL_FLAG
from studyapp.studies.models import Deployment, RatingDimension, Stimulus, Study

logger = logging.getLogger(__name__)

DEFAULT_PRACTICE = {
    "prompt": "List an unusual use for a paperclip.",
    "text": "Bend it into a tiny hook and use it to fish a lost ring out of a drain.",
}


@dataclass(frozen=True)
class AttentionCheck:
    index: int  # position in Study.attention_checks: what AttentionCheckResponse.check_index stores
    after: int  # shown after this many rating pages
    text: str
    question: str
    options: tuple[str, ...]  # empty: answered on a 0-100 slider
    expected: str
    tolerance: float

    def passes(self, response: str) -> bool:
        if self.options:
            return response.strip().casefold() == self.expected.strip().casefold()
        try:
            return abs(float(response) - float(self.expected)) <= self.tolerance
        except ValueError:
            return False


@dataclass(frozen=True)
class DebriefQuestion:
    key: str
    text: str
    kind: str  # "text", "choice" or "number"
    options: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class Page:
    index: int  # position in this rater's sequence: Rating.page_index
    stimulus: Stimulus | None = None
    check: AttentionCheck | None = None


@dataclass
class RaterPlan:
    slot: Slot | None
    pages: list[Page]
    done: set[int] = field(default_factory=set)
    dimensions: list[RatingDimension] = field(default_factory=list)

    @property
    def current(self) -> Page | None:
        return next((page for page in self.pages if page.index not in self.done), None)

    @property
    def n_done(self) -> int:
        return len(self.done)


def study_attention_checks(*, study: Study) -> list[AttentionCheck]:
    """The study's instructed-response items, in the fields the spec loader checks (studies/spec.py).

    The admin checks them on save; one stored otherwise that a page could not show (a position
    that is not a whole number, say) is left out, never a server error on a rater's page, and
    the dashboard lists the problem (``spec.rater_pages_check``).
    """
    checks = []
    raws = study.attention_checks if isinstance(study.attention_checks, list) else []
    for index, raw in enumerate(raws):
        try:
            options = tuple(str(option) for option in (raw.get("options") or ()))
            checks.append(
                AttentionCheck(
                    index=index,
                    after=max(0, int(raw.get("position", 0) or 0)),
                    text=str(raw.get("text") or ""),
                    question=str(raw.get("question") or "Your answer"),
                    options=options,
                    expected=str(raw.get("expected", options[0] if options else 100)),
                    tolerance=float(raw.get("tolerance", 5)),
                )
            )
        except (AttributeError, TypeError, ValueError):
            logger.warning("study %s: attention check %d cannot be shown and is left out", study.slug, index)
    return checks


def study_debrief_questions(*, study: Study) -> list[DebriefQuestion]:
    """The debrief questions, stored in the one form the spec loader writes (``spec._check_debrief_question``).

    One stored otherwise is read as the spec reads it (a question without a key gets ``q<n>``),
    or left out when even that fails, never a server error on a rater's page.
    """
    from studyapp.studies.spec import SpecError, debrief_question_stored

    questions = []
    raws = study.debrief_questions if isinstance(study.debrief_questions, list) else []
    for index, raw in enumerate(raws):
        try:
            question = debrief_question_stored(raw, index=index)
        except SpecError:
            logger.warning("study %s: debrief question %d cannot be shown and is left out", study.slug, index)
            continue
        questions.append(
            DebriefQuestion(
                key=question["key"],
                text=question["question"],
                kind=question["type"],
                options=tuple(question["options"]),
                required=question["required"],
            )
        )
    return questions


def study_practice(*, study: Study) -> dict:
    """The practice item, with the typical rating per dimension key (the spec's ``typical``) where
    given, and where they were measured (``typical_measured_in``; "" for the researchers' estimate)."""
    practice = study.practice if isinstance(study.practice, dict) else {}
    given = practice.get("typical")
    typical: dict = given if isinstance(given, dict) else {}
    return {
        "prompt": str(practice.get("prompt") or DEFAULT_PRACTICE["prompt"]),
        "text": str(practice.get("text") or DEFAULT_PRACTICE["text"]),
        "typical": {
            str(key): value
            for key, value in typical.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        },
        "typical_measured_in": str(practice.get("typical_measured_in") or "").strip(),
    }


def participant_ending_code(*, study: Study, step: str, flags: list | None) -> str:
    """The Prolific code a participation ending on ``step`` is given ("" for none).

    Completed: the completion code; declined: the no-consent code; screened out: the
    screen-out code; timed out after saving ratings (flag ``timed_out_partial``): the
    partial-completion code. Any other ending is asked to return the study.
    """
    if step == Participant.Step.TIMED_OUT:
        return study.prolific_timed_out_code if PARTIAL_FLAG in (flags or []) else ""
    codes: dict[str, str] = {
        Participant.Step.COMPLETE: study.prolific_completion_code,
        Participant.Step.DECLINED: study.prolific_no_consent_code,
        Participant.Step.SCREENED_OUT: study.prolific_screen_out_code,
    }
    return codes.get(step, "")


def stimulus_display_prompt(*, stimulus: Stimulus) -> str:
    """The prompt a rater reads above a response.

    Built from the task template and the item, never from ``Stimulus.prompt``: a
    condition such as "prompt" (told to be creative) changes the prompt the model saw,
    and showing it would unblind the rater.
    """
    return template_render(stimulus.item.task.template, stimulus.item.text)


def rater_dimensions(*, study: Study, seed: str) -> list[RatingDimension]:
    dimensions = list(RatingDimension.objects.filter(study=study).order_by("position", "key"))
    random.Random(f"{seed}:dimensions").shuffle(dimensions)  # noqa: S311 (a reproducible order, not a secret)
    return dimensions


def pages_build(*, seed: str, stimuli: list[Stimulus], checks: list[AttentionCheck]) -> list[Page]:
    """This rater's sequence: their planned stimuli in a seeded order, checks at their positions."""
    order = list(stimuli)
    random.Random(f"{seed}:stimuli").shuffle(order)  # noqa: S311 (a reproducible order, not a secret)
    entries: list[tuple[Stimulus | None, AttentionCheck | None]] = [(stimulus, None) for stimulus in order]
    # Insert from the back so that each check's position counts rating pages only.
    for check in sorted(checks, key=lambda c: (c.after, c.index), reverse=True):
        entries.insert(min(check.after, len(order)), (None, check))
    return [Page(index=i, stimulus=s, check=c) for i, (s, c) in enumerate(entries)]


def participant_slot(*, participant: Participant, lock: bool = False) -> Slot | None:
    slots = Slot.objects.filter(participant=participant, status__in=[Slot.Status.ACTIVE, Slot.Status.COMPLETE])
    return (slots.select_for_update() if lock else slots).order_by("-claimed_at").first()


STIMULUS_FIELDS = (
    "stimulus__id",
    "stimulus__token",
    "stimulus__text",
    "stimulus__item__text",
    "stimulus__item__task__template",
)


def slot_stimuli(*, slot: Slot) -> list[Stimulus]:
    planned = (
        SlotStimulus.objects.filter(slot=slot)
        .select_related("stimulus__item__task")
        .only("position", *STIMULUS_FIELDS)
        .order_by("position")
    )
    return [entry.stimulus for entry in planned]


def participant_slot_stimuli(*, participant: Participant, lock: bool = False) -> tuple[Slot | None, list[Stimulus]]:
    """``participant_slot`` and its ``slot_stimuli`` in one query (the slot rides on each row).

    A slot always has planned stimuli once built; should none come back, the slot is read on
    its own, so the answer is the same as the two selectors'. ``lock`` (inside a
    transaction, a page being stored) also takes the slot's row lock, in the same query, and
    reads of each stimulus only what a stored answer is checked against (id and token), not
    the text and prompt a page shows.
    """
    planned = SlotStimulus.objects.filter(
        slot__participant=participant, slot__status__in=[Slot.Status.ACTIVE, Slot.Status.COMPLETE]
    ).order_by("-slot__claimed_at", "slot_id", "position")
    slot_fields = [f"slot__{f.attname}" for f in Slot._meta.concrete_fields]
    if lock:
        planned = (
            planned.select_related("slot", "stimulus")
            .only("position", *slot_fields, "stimulus__id", "stimulus__token")
            .select_for_update(of=("slot",))
        )
    else:
        planned = planned.select_related("slot", "stimulus__item__task").only(
            "position", *slot_fields, *STIMULUS_FIELDS
        )
    rows = list(planned)
    if not rows:
        slot = participant_slot(participant=participant, lock=lock)
        return slot, slot_stimuli(slot=slot) if slot is not None else []
    slot = rows[0].slot
    return slot, [entry.stimulus for entry in rows if entry.slot_id == slot.pk]


def participant_plan(
    *, participant: Participant, dimensions: list[RatingDimension] | None = None, lock: bool = False
) -> RaterPlan:
    """Every page of this participant and which are answered: a fixed number of queries.

    ``lock=True``, inside a transaction (a page being stored): the query that reads the
    rater's slot also takes its row lock, and what is answered is read after it in a
    statement of its own, so that it sees a page a concurrent request stored while this one
    waited for the lock. ``dimensions`` the caller already read (``rater_dimensions``) are
    not read again.
    """
    study = participant.study
    slot, stimuli = participant_slot_stimuli(participant=participant, lock=lock)
    if dimensions is None:
        dimensions = rater_dimensions(study=study, seed=participant.token)
    if slot is None:
        return RaterPlan(slot=None, pages=[], dimensions=dimensions)
    pages = pages_build(seed=participant.token, stimuli=stimuli, checks=study_attention_checks(study=study))
    done = pages_done(participant=participant, slot=slot, pages=pages)
    return RaterPlan(slot=slot, pages=pages, done=done, dimensions=dimensions)


def pages_done(*, participant: Participant, slot: Slot, pages: list[Page]) -> set[int]:
    """The answered pages: rated stimuli and answered checks, in one query (a UNION)."""
    rated = Rating.objects.filter(participant=participant, slot=slot).values_list(Value("rating"), "stimulus_id")
    checked = AttentionCheckResponse.objects.filter(participant=participant).values_list(Value("check"), "check_index")
    answers = set(rated.union(checked, all=True))
    return {
        page.index
        for page in pages
        if (page.stimulus is not None and ("rating", page.stimulus.id) in answers)
        or (page.check is not None and ("check", page.check.index) in answers)
    }


def preview_plan(*, study: Study, done: set[int], deployment_slug: str = "") -> RaterPlan:
    """What a researcher's preview shows: the lowest slot of the study (of the deployment
    ``deployment_slug`` names, when it names one), nothing claimed."""
    slots = Slot.objects.filter(deployment__study=study, pilot=False)
    if deployment_slug:
        slots = slots.filter(deployment__slug=deployment_slug)
    slot = slots.order_by("index", "deployment_id").first()
    stimuli = slot_stimuli(slot=slot) if slot else []
    pages = pages_build(seed="preview", stimuli=stimuli, checks=study_attention_checks(study=study))
    return RaterPlan(slot=slot, pages=pages, done=set(done), dimensions=rater_dimensions(study=study, seed="preview"))


def claimable_slots(*, study: Study, deployment: Deployment | None = None, pilot: bool | None = False):
    """Free slots, slots whose rater has been silent past the study's timeout, and slots
    claimed longer ago than the (shorter) hold whose rater has no rating saved yet.

    The hold counts from the claim, not from the rater's last request: a participation with
    no saved rating keeps its slot at most ``slot_hold_minutes``, whatever it sends (page
    loads, heartbeats), so made-up entries cannot keep a slot alive with requests alone.

    ``pilot``: False, the balanced design's slots; True, pilot raters' copies; None, both.
    """
    now = timezone.now()
    cutoff = now - timedelta(minutes=study.slot_timeout_minutes)
    hold_cutoff = now - timedelta(minutes=min(study.slot_hold_minutes, study.slot_timeout_minutes))
    slots = Slot.objects.filter(deployment__study=study)
    if pilot is not None:
        slots = slots.filter(pilot=pilot)
    if deployment is not None:
        slots = slots.filter(deployment=deployment)
    rated = Exists(Rating.objects.filter(slot=OuterRef("pk"), participant=OuterRef("participant")))
    return slots.filter(
        Q(status=Slot.Status.FREE)
        | Q(status=Slot.Status.ACTIVE, participant__last_seen_at__lt=cutoff)
        | (Q(status=Slot.Status.ACTIVE, claimed_at__lt=hold_cutoff) & ~rated)
    )


def study_has_room(*, study: Study, deployment: Deployment | None = None, pilot: bool = False) -> bool:
    """Whether a new rater can get a slot now. A pilot rater always can once the design is
    built: their slot is a fresh copy of a design slot's plan (``services.slot_claim``)."""
    if pilot:
        design = Slot.objects.filter(deployment__study=study, pilot=False)
        return (design.filter(deployment=deployment) if deployment is not None else design).exists()
    return claimable_slots(study=study, deployment=deployment).exists()


def deployment_by_ref(*, study: Study, ref: str) -> Deployment | None:
    """A pinned entry link names its deployment by opaque token only.

    Never by slug: a slug names model and method, and accepting it would let a rater pick
    a deployment and probe slug names.
    """
    link = DeploymentLink.objects.filter(token=ref, deployment__study=study).select_related("deployment").first()
    return link.deployment if link is not None else None


def deployment_entry_path(*, deployment: Deployment) -> str | None:
    """The blinded pinned entry path to give Prolific; None until slots were built."""
    link = DeploymentLink.objects.filter(deployment=deployment).first()
    if link is None:
        return None
    return reverse("rating:entry_pinned", args=[deployment.study.slug, link.token])
