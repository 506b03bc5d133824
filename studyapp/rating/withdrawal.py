"""Taking a participant out of a study: withdrawal (ratings kept, marked) and deletion (superusers).

Deleting a participation used to break the design: its slot stayed active with no rater
(never claimable again) or complete with no ratings (they went with it). Here both ways out
keep the design consistent:

* :func:`participant_withdraw`: the participation and its ratings stay, marked withdrawn
  (``Participant.withdrawn_at``, flag ``withdrawn``, ``Rating.withdrawn``), and the analysis
  leaves them out; the slot goes back to the pool (``to_pool``: another rater rates it whole)
  or is counted short (``Slot.Status.SHORT``: never given out again, shown on the dashboard).
  A rater withdrawn while still rating lands on an ending page at their next click.
* :func:`participant_delete`: a data-protection request, for superusers: the ratings and
  answers go, every slot of the participation goes back to the pool (a short one stays
  short), and a :class:`~studyapp.rating.models.ParticipantDeletion` row and a log line say
  who deleted whom (by opaque token), when and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from studyapp.rating.models import AttentionCheckResponse, Participant, ParticipantDeletion, Rating, Slot
from studyapp.rating.page_sequence import IN_PROGRESS

logger = logging.getLogger(__name__)
WITHDRAWN_FLAG = "withdrawn"


class WithdrawalError(ValueError):
    """The participant cannot be withdrawn or deleted so (already withdrawn, no reason, ...)."""


@dataclass(frozen=True)
class Withdrawal:
    participant: Participant
    ratings: int  # ratings kept, marked withdrawn
    slot: str  # what happened to the slot: "returned to the pool", "counted short" or "none held"


def _slot_back_to_pool(slot_ids: list[int]) -> int:
    return Slot.objects.filter(pk__in=slot_ids).update(
        status=Slot.Status.FREE,
        participant=None,
        claimed_at=None,
        completed_at=None,
        times_released=F("times_released") + 1,
    )


def participant_withdraw(*, participant: Participant, to_pool: bool, reason: str) -> Withdrawal:
    """Withdraw a participant: ratings kept and marked, slot to the pool (``to_pool``) or short.

    A pilot slot (outside the design) always goes back to the pool.

    Raises
    ------
    WithdrawalError
        Already withdrawn, or no reason given.
    """
    reason = reason.strip()
    if not reason:
        raise WithdrawalError("say why the participant is withdrawn")
    with transaction.atomic():
        participant = Participant.objects.select_for_update().get(pk=participant.pk)
        if participant.withdrawn_at is not None:
            raise WithdrawalError(f"participant {participant.token} is already withdrawn")
        n_ratings = Rating.objects.filter(participant=participant).update(withdrawn=True)
        slot = (
            Slot.objects.select_for_update()
            .filter(participant=participant, status__in=[Slot.Status.ACTIVE, Slot.Status.COMPLETE])
            .first()
        )
        outcome = "none held"
        if slot is not None and (to_pool or slot.pilot):
            _slot_back_to_pool([slot.pk])
            outcome = "returned to the pool"
        elif slot is not None:
            Slot.objects.filter(pk=slot.pk).update(status=Slot.Status.SHORT)
            outcome = "counted short"
        now = timezone.now()
        step = Participant.Step.WITHDRAWN if participant.step in IN_PROGRESS else participant.step
        times = dict(participant.step_times or {})
        times.setdefault(Participant.Step.WITHDRAWN, now.isoformat())
        flags = list(participant.flags or [])
        if WITHDRAWN_FLAG not in flags:
            flags.append(WITHDRAWN_FLAG)
        Participant.objects.filter(pk=participant.pk).update(
            withdrawn_at=now, withdrawal_reason=reason, step=step, step_times=times, flags=flags
        )
        participant.refresh_from_db()
    return Withdrawal(participant=participant, ratings=n_ratings, slot=outcome)


def participant_delete(*, participant: Participant, by, reason: str) -> ParticipantDeletion:
    """Delete a participation and everything it gave (superusers only: the caller checks), logged.

    Every slot it holds goes back to the pool first (a complete slot lost its ratings, so it
    must be rated again; a short one stays short), so no slot is left with no rater.

    Raises
    ------
    WithdrawalError
        No reason given, or ``by`` is not a superuser.
    """
    reason = reason.strip()
    if not reason:
        raise WithdrawalError("say why the participant is deleted (e.g. a data-protection request)")
    if not getattr(by, "is_superuser", False):
        raise WithdrawalError("only a superuser may delete a participant; withdraw them instead")
    with transaction.atomic():
        participant = Participant.objects.select_for_update().select_related("study").get(pk=participant.pk)
        held = list(
            Slot.objects.select_for_update()
            .filter(participant=participant)
            .exclude(status=Slot.Status.SHORT)
            .values_list("pk", flat=True)
        )
        returned = _slot_back_to_pool(held)
        Slot.objects.filter(participant=participant).update(participant=None)  # short slots keep no rater
        n_ratings, _ = Rating.objects.filter(participant=participant).delete()
        AttentionCheckResponse.objects.filter(participant=participant).delete()
        record = ParticipantDeletion.objects.create(
            study=participant.study,
            participant_token=participant.token,
            deleted_by=by,
            reason=reason,
            ratings_deleted=n_ratings,
            slots_returned=returned,
        )
        participant.delete()
    logger.warning(
        "participant %s of study %s deleted by %s (%s): %d ratings, %d slot(s) back to the pool",
        record.participant_token, record.study.slug, by, reason, n_ratings, returned,
    )  # fmt: skip
    return record
