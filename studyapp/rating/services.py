"""Writes of the rater side: the balanced slot plan, atomic slot claims, and each page's answers.

The plan is stored as slots by ``rating.slots.slots_build``.

Every page is stored in its own transaction the moment it is submitted, under a row
lock on the rater's slot: a double submission, a reload or a lost connection can
neither lose nor duplicate a rating, and a slot handed to another rater after a
timeout cannot be written to by the one who left.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from django.db import IntegrityError, transaction
from django.db.models import Count, F
from django.utils import timezone

from studyapp.rating import selectors
from studyapp.rating.models import (
    AttentionCheckResponse,
    Participant,
    Rating,
    Slot,
    SlotStimulus,
)
from studyapp.rating.page_sequence import CONTINUE_PAGES, ENDINGS, step_after
from studyapp.rating.quality import PARTIAL_FLAG, SPEEDING_FLAG, page_speeding
from studyapp.studies.models import Deployment, RatingDimension, Study
from studyapp.studies.vocabulary import balance_problem

Step = Participant.Step


class SlotPlanError(ValueError):
    """The study's numbers cannot give every stimulus the same number of ratings."""


# --- Balanced slots ---------------------------------------------------------------------


@dataclass(frozen=True)
class SlotPlan:
    slots: list[list[int]]  # stimulus ids per slot, in planned order
    ratings_per_stimulus: int


def slot_plan_compute(
    *, stimuli_by_condition: dict[str, list[int]], raters: int, per_rater: int, seed: str
) -> SlotPlan:
    """Cyclic balanced design (see docs/rating.md).

    Each condition's stimuli are put in a seeded random order and read as a ring; slot j
    takes the next ``per_rater / n_conditions`` stimuli of every condition's ring. Every
    stimulus is taken the same number of times, every slot holds each condition equally
    often, and because each condition has its own order an item's stimuli of different
    conditions land with different raters (neither forced together nor kept apart).
    """
    if not stimuli_by_condition or not any(stimuli_by_condition.values()):
        raise SlotPlanError("the deployment has no stimuli yet: generate them before building slots")
    sizes = {key: len(ids) for key, ids in stimuli_by_condition.items()}
    n_conditions = len(sizes)
    if len(set(sizes.values())) != 1:
        raise SlotPlanError(f"conditions have different numbers of stimuli ({sizes}); balance needs equal numbers")
    n_per_condition = next(iter(sizes.values()))
    if raters <= 0 or per_rater <= 0:
        raise SlotPlanError("raters_per_deployment and stimuli_per_rater must be positive")
    problem = balance_problem(
        n_conditions=n_conditions, per_condition=n_per_condition, raters=raters, per_rater=per_rater
    )
    if problem:
        raise SlotPlanError(problem)
    take = per_rater // n_conditions
    rng = random.Random(seed)  # noqa: S311 (the design must be reproducible from the seed; nothing secret)
    rings = {}
    for key in sorted(stimuli_by_condition):
        ring = sorted(stimuli_by_condition[key])
        rng.shuffle(ring)
        rings[key] = ring
    slots = []
    for j in range(raters):
        planned: list[int] = []
        for key in sorted(rings):
            ring = rings[key]
            planned.extend(ring[(j * take + t) % n_per_condition] for t in range(take))
        rng.shuffle(planned)
        slots.append(planned)
    return SlotPlan(slots=slots, ratings_per_stimulus=raters * take // n_per_condition)


# --- Entering and claiming ----------------------------------------------------------------


def participant_enter(
    *,
    study: Study,
    prolific_pid: str,
    prolific_study_id: str,
    prolific_session_id: str,
    pinned_deployment: Deployment | None = None,
    user_agent: str = "",
) -> Participant:
    """One participation per Prolific session (study, PROLIFIC_PID, SESSION_ID).

    A returning rater with the same session gets the same participation. The same PID with
    another SESSION_ID is a new attempt, flagged ``repeat_prolific_pid``: it never resumes the
    other session's participation (whoever knows a PID cannot take over its ratings).
    """
    identity = {"study": study, "prolific_pid": prolific_pid, "prolific_session_id": prolific_session_id}
    try:
        with transaction.atomic():
            participant, created = Participant.objects.get_or_create(
                **identity,
                defaults={
                    "pilot": study.pilot_mode,
                    "prolific_study_id": prolific_study_id,
                    "pinned_deployment": pinned_deployment,
                    "user_agent": user_agent[:300],
                    "step_times": _times_with(None, Step.CONSENT, timezone.now()),
                },
            )
            if created and Participant.objects.filter(study=study, prolific_pid=prolific_pid).count() > 1:
                participant.flags = [*participant.flags, "repeat_prolific_pid"]
                Participant.objects.filter(pk=participant.pk).update(flags=participant.flags)
    except IntegrityError:
        # Two tabs entered at the same moment: the other one created it.
        participant, created = Participant.objects.get(**identity), False
    if (
        not created
        and participant.step == Step.STUDY_FULL
        and selectors.study_has_room(study=study, deployment=participant.pinned_deployment, pilot=participant.pilot)
    ):
        # Someone timed out since: this rater may try again.
        Participant.objects.filter(pk=participant.pk, step=Step.STUDY_FULL).update(step=Step.CONSENT)
        participant.step = Step.CONSENT
    return participant


def participant_touch(*, participant: Participant) -> None:
    """Keeps the rater's slot from being taken as stale while they are still here."""
    now = timezone.now()
    Participant.objects.filter(pk=participant.pk).update(last_seen_at=now)
    participant.last_seen_at = now


def slot_claim(*, participant: Participant) -> Slot | None:
    """Give the participant the lowest free (or stale) slot; None when the study is full.

    ``FOR UPDATE SKIP LOCKED``: concurrent claimers never wait on each other and never
    get the same row; each takes the lowest slot nobody else is holding right now.
    Without a pinned deployment the order is (index, deployment), which fills every
    deployment evenly, slot 0 of each first.
    """
    study = participant.study
    with transaction.atomic():
        # A double click on "I agree" must not claim two slots.
        participant = Participant.objects.select_for_update(of=("self",)).select_related("study").get(pk=participant.pk)
        current = selectors.participant_slot(participant=participant)
        if current is not None:
            return current
        slot = (
            selectors.claimable_slots(study=study, deployment=participant.pinned_deployment, pilot=participant.pilot)
            .order_by("index", "deployment_id")
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if slot is None and participant.pilot:
            slot = _pilot_slot_create(study=study, deployment=participant.pinned_deployment)
        if slot is None:
            return None
        now = timezone.now()
        if slot.status == Slot.Status.ACTIVE and slot.participant_id:
            # The previous rater went silent: their ratings stay, marked by their step.
            participants_time_out(participant_ids=[slot.participant_id])
            slot.times_released += 1
        slot.participant = participant
        slot.status = Slot.Status.ACTIVE
        slot.claimed_at = now
        slot.save(update_fields=["participant", "status", "claimed_at", "times_released"])
        # The deployment stays with the participant after the slot goes back to the pool.
        Participant.objects.filter(pk=participant.pk).update(last_seen_at=now, deployment_id=slot.deployment_id)
        return slot


def _pilot_slot_create(*, study: Study, deployment: Deployment | None) -> Slot | None:
    """A new pilot slot: a copy of one design slot's plan, outside the balanced design.

    The deployment is the pinned one, or the one with the fewest pilot slots; the copied
    plan is design slot ``n mod R`` for the deployment's n-th pilot slot, so pilots rate the
    real stimuli in the real combinations and spread over the design. None when the design
    has no slots yet. The deployment's row lock numbers concurrent pilots' slots one by one.
    """
    design = Slot.objects.filter(deployment__study=study, pilot=False)
    if deployment is not None:
        design = design.filter(deployment=deployment)
    deployment_ids = set(design.values_list("deployment_id", flat=True))
    if not deployment_ids:
        return None
    pilots = dict(
        Slot.objects.filter(deployment_id__in=deployment_ids, pilot=True)
        .values("deployment_id")
        .annotate(n=Count("pk"))
        .values_list("deployment_id", "n")
    )
    chosen = min(sorted(deployment_ids), key=lambda pk: pilots.get(pk, 0))
    Deployment.objects.select_for_update().filter(pk=chosen).first()
    n_pilot = Slot.objects.filter(deployment_id=chosen, pilot=True).count()
    plan = list(design.filter(deployment_id=chosen).order_by("index"))
    source = plan[n_pilot % len(plan)]
    slot = Slot.objects.create(deployment_id=chosen, index=n_pilot, pilot=True)
    SlotStimulus.objects.bulk_create(
        [
            SlotStimulus(slot=slot, stimulus_id=stimulus_id, position=position)
            for stimulus_id, position in source.planned.values_list("stimulus_id", "position")
        ]
    )
    return slot


def slots_release_stale(*, study: Study) -> int:
    """Free the slots of raters silent past the timeout (the claim does this lazily too)."""
    released = 0
    with transaction.atomic():
        stale = list(
            selectors.claimable_slots(study=study, pilot=None)
            .filter(status=Slot.Status.ACTIVE)
            .select_for_update(skip_locked=True, of=("self",))
        )
        participants_time_out(participant_ids=[slot.participant_id for slot in stale])
        for slot in stale:
            Slot.objects.filter(pk=slot.pk).update(
                status=Slot.Status.FREE, participant=None, claimed_at=None, times_released=F("times_released") + 1
            )
            released += 1
    return released


def participant_slot_release(*, participant: Participant, flag: str) -> bool:
    """The rater is gone for good (returned on Prolific, a simulated rater that could not go on):
    their slot goes back to the pool now, not after the study's timeout.

    The participation ends as timed out, flagged ``flag``; their ratings stay (flagged partial if
    there are any). Returns False when they held no slot any more.
    """
    with transaction.atomic():
        slot = Slot.objects.select_for_update().filter(participant=participant, status=Slot.Status.ACTIVE).first()
        participants_time_out(participant_ids=[participant.pk])
        flags = list(Participant.objects.values_list("flags", flat=True).get(pk=participant.pk) or [])
        _flag_add(participant.pk, flags, flag)
        if slot is None:
            return False
        Slot.objects.filter(pk=slot.pk).update(
            status=Slot.Status.FREE, participant=None, claimed_at=None, times_released=F("times_released") + 1
        )
    return True


def _flag_add(participant_id: int, flags: list, flag: str) -> list:
    if flag in flags:
        return flags
    flags = [*flags, flag]
    Participant.objects.filter(pk=participant_id).update(flags=flags)
    return flags


def participants_time_out(*, participant_ids: list) -> None:
    """Mark silent raters timed out; one who had saved ratings is flagged as a partial completion.

    Their ratings stay in the data (flagged), and their ending page gives the spec's
    partial-completion code instead of asking them to return the study.
    """
    now = timezone.now()
    for participant_id, times in Participant.objects.filter(pk__in=participant_ids).values_list("pk", "step_times"):
        Participant.objects.filter(pk=participant_id).update(
            step=Step.TIMED_OUT, step_times=_times_with(times, Step.TIMED_OUT, now)
        )
    worked = set(
        Rating.objects.filter(participant_id__in=participant_ids).values_list("participant_id", flat=True).distinct()
    )
    for participant_id, flags in Participant.objects.filter(pk__in=worked).values_list("pk", "flags"):
        _flag_add(participant_id, list(flags or []), PARTIAL_FLAG)


def _times_with(times: dict | None, step: str, now) -> dict:
    """``Participant.step_times`` with ``step`` reached ``now`` (the first time counts)."""
    times = dict(times or {})
    times.setdefault(str(step), now.isoformat())
    return times


def _step_set(participant: Participant, step: str, **fields) -> None:
    now = timezone.now()
    fields["step_times"] = _times_with(participant.step_times, step, now)
    Participant.objects.filter(pk=participant.pk).update(step=step, last_seen_at=now, **fields)
    participant.step = step
    for name, value in fields.items():
        setattr(participant, name, value)


def participant_consent(*, participant: Participant, agree: bool) -> str:
    """Agree: claim a slot and go on (or see the study-full page). Decline: end politely."""
    if participant.step != Step.CONSENT:
        return participant.step
    with transaction.atomic():
        # "I agree" and "I do not agree" sent at once (two tabs): the row lock orders them and
        # the second sees the first's step, so a decline never lands on a consent with a slot.
        step = Participant.objects.select_for_update().values_list("step", flat=True).get(pk=participant.pk)
        if step != Step.CONSENT:
            participant.step = step
            return step
        if not agree:
            _step_set(participant, Step.DECLINED)
            return participant.step
        slot = slot_claim(participant=participant)
        if slot is None:
            _step_set(participant, Step.STUDY_FULL)
        else:
            _step_set(participant, step_after(Step.CONSENT), consented_at=timezone.now())
    return participant.step


def participant_advance(*, participant: Participant, from_step: str) -> str:
    """Leave a page that only continues (instructions, practice); a repeated submit is a no-op."""
    if participant.step == from_step and from_step in CONTINUE_PAGES:
        following = step_after(from_step)
        now = timezone.now()
        times = _times_with(participant.step_times, following, now)
        updated = Participant.objects.filter(pk=participant.pk, step=from_step).update(
            step=following, last_seen_at=now, step_times=times
        )
        if updated:
            participant.step, participant.step_times = following, times
        else:
            participant.refresh_from_db(fields=["step"])
    return participant.step


# --- Rating pages ------------------------------------------------------------------------


class PageOutcome(Enum):
    SAVED = "saved"
    ALREADY_SAVED = "already_saved"  # a double submission: nothing new stored
    NOT_CURRENT = "not_current"  # a page ahead of the rater's position
    FOREIGN = "foreign"  # a stimulus or check not in this rater's plan
    SLOT_LOST = "slot_lost"  # timed out or screened out meanwhile


@dataclass(frozen=True)
class PageResult:
    outcome: PageOutcome
    step: str


def _locked_plan(
    participant: Participant, dimensions: list[RatingDimension] | None
) -> tuple[Slot, selectors.RaterPlan] | None:
    """The rater's plan read under their slot's row lock; None when they hold no slot any more."""
    plan = selectors.participant_plan(participant=participant, dimensions=dimensions, lock=True)
    if plan.slot is None:
        return None
    return plan.slot, plan


def _page_finish(participant: Participant, slot: Slot, plan: selectors.RaterPlan, page_index: int) -> None:
    """After a page is stored: move on to the debrief when it was the last one.

    Any other page needs no write of ``last_seen_at`` here: the GET this POST redirects to
    touches it a moment later, as did the page's own GET and its heartbeat while it was open.
    """
    if len(plan.done | {page_index}) == len(plan.pages):
        now = timezone.now()
        Slot.objects.filter(pk=slot.pk).update(status=Slot.Status.COMPLETE, completed_at=now)
        _step_set(participant, step_after(Step.RATING))


def page_classify(
    plan: selectors.RaterPlan, page_index: int, *, stimulus_token: str | None = None, check_index: int | None = None
) -> tuple[PageOutcome | None, selectors.Page | None]:
    """Where a submitted page stands in the rater's plan: (outcome or None to store, page).

    The one place of the rules: a page not of this plan is FOREIGN, an answered one
    ALREADY_SAVED (a double submission), any other but the current one NOT_CURRENT. The
    plan's ``done`` must be read: under the slot's row lock before a store.
    """
    page = next((p for p in plan.pages if p.index == page_index), None)
    if page is None:
        return PageOutcome.FOREIGN, None
    if stimulus_token is not None and (page.stimulus is None or page.stimulus.token != stimulus_token):
        return PageOutcome.FOREIGN, None
    if check_index is not None and (page.check is None or page.check.index != check_index):
        return PageOutcome.FOREIGN, None
    if page.index in plan.done:
        return PageOutcome.ALREADY_SAVED, page
    current = plan.current
    if current is None or current.index != page.index:
        return PageOutcome.NOT_CURRENT, page
    return None, page


def rating_page_submit(
    *,
    participant: Participant,
    page_index: int,
    stimulus_token: str,
    scores: dict[str, float],
    seconds_on_page: float | None,
    dimensions: list[RatingDimension] | None = None,
    held_back: int = 0,
) -> PageResult:
    """Store one page's ratings, all dimensions at once or none.

    ``dimensions``: the rater's, as the caller read them to check the form (read here if not given).
    ``held_back``: clicks the page held back as too fast; any, or a time below the study's
    minimum, flags the rater ``speeding``.
    """
    if participant.step != Step.RATING:
        return PageResult(PageOutcome.SLOT_LOST if participant.step in ENDINGS else PageOutcome.ALREADY_SAVED,
                          participant.step)  # fmt: skip
    with transaction.atomic():
        locked = _locked_plan(participant, dimensions)
        if locked is None:
            return PageResult(PageOutcome.SLOT_LOST, participant.step)
        slot, plan = locked
        outcome, page = page_classify(plan, page_index, stimulus_token=stimulus_token)
        if outcome is not None or page is None or page.stimulus is None:
            return PageResult(outcome or PageOutcome.FOREIGN, participant.step)
        by_key = {dimension.key: (position, dimension) for position, dimension in enumerate(plan.dimensions)}
        if set(scores) != set(by_key):
            raise ValueError("scores must cover exactly the study's dimensions")
        Rating.objects.bulk_create(
            [
                Rating(
                    participant=participant,
                    slot=slot,
                    stimulus=page.stimulus,
                    dimension=dimension,
                    score=float(scores[key]),
                    page_index=page.index,
                    dimension_position=position,
                    seconds_on_page=seconds_on_page,
                    held_back=held_back,
                    pilot=participant.pilot,
                )
                for key, (position, dimension) in by_key.items()
            ]
        )
        if page_speeding(study=participant.study, seconds_on_page=seconds_on_page, held_back=held_back):
            participant.flags = _flag_add(participant.pk, list(participant.flags or []), SPEEDING_FLAG)
        _page_finish(participant, slot, plan, page.index)
    return PageResult(PageOutcome.SAVED, participant.step)


def attention_check_submit(
    *,
    participant: Participant,
    page_index: int,
    check_index: int,
    response: str,
    dimensions: list[RatingDimension] | None = None,
    held_back: int = 0,
) -> PageResult:
    """Record an instructed-response item; screen out after the study's K failures.

    ``dimensions``: as for ``rating_page_submit`` (the plan carries them; given, they are not read again).
    """
    if participant.step != Step.RATING:
        return PageResult(PageOutcome.SLOT_LOST if participant.step in ENDINGS else PageOutcome.ALREADY_SAVED,
                          participant.step)  # fmt: skip
    study = participant.study
    with transaction.atomic():
        locked = _locked_plan(participant, dimensions)
        if locked is None:
            return PageResult(PageOutcome.SLOT_LOST, participant.step)
        slot, plan = locked
        outcome, page = page_classify(plan, page_index, check_index=check_index)
        if outcome is not None or page is None or page.check is None:
            return PageResult(outcome or PageOutcome.FOREIGN, participant.step)
        passed = page.check.passes(response)
        AttentionCheckResponse.objects.create(
            participant=participant,
            check_index=page.check.index,
            page_index=page.index,
            response=response[:200],
            passed=passed,
            held_back=held_back,
        )
        if page_speeding(study=study, seconds_on_page=None, held_back=held_back):
            participant.flags = _flag_add(participant.pk, list(participant.flags or []), SPEEDING_FLAG)
        if not passed:
            participant.attention_failures += 1
            flags = list(participant.flags or [])
            if "attention_check_failed" not in flags:
                flags.append("attention_check_failed")
            participant.flags = flags
            Participant.objects.filter(pk=participant.pk).update(
                attention_failures=F("attention_failures") + 1, flags=flags
            )
            limit = study.attention_screen_out_after
            if limit and participant.attention_failures >= limit:
                # The slot goes back to the pool; this rater's ratings stay, marked by their step.
                Slot.objects.filter(pk=slot.pk).update(
                    status=Slot.Status.FREE,
                    participant=None,
                    claimed_at=None,
                    times_released=F("times_released") + 1,
                )
                _step_set(participant, Step.SCREENED_OUT)
                return PageResult(PageOutcome.SAVED, participant.step)
        _page_finish(participant, slot, plan, page.index)
    return PageResult(PageOutcome.SAVED, participant.step)


def participant_debrief_submit(*, participant: Participant, answers: dict) -> str:
    """Store the debrief answers and complete the participation (once)."""
    now = timezone.now()
    following = step_after(Step.DEBRIEF)
    updated = Participant.objects.filter(pk=participant.pk, step=Step.DEBRIEF).update(
        debrief=answers,
        step=following,
        completed_at=now,
        last_seen_at=now,
        step_times=_times_with(participant.step_times, following, now),
    )
    if updated:
        participant.debrief, participant.step, participant.completed_at = answers, following, now
    else:
        participant.refresh_from_db(fields=["step"])
    return participant.step
