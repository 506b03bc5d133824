"""Prolific operations on a study: what to do with each submission, and doing it.

A submission's id is the SESSION_ID of the rater's entry link, so each Prolific submission
meets its participation here. The plan is computed from both sides first (a dry run prints
it and stops); applying it calls Prolific and frees at once the slots of raters who returned
their submission, instead of waiting for the study's timeout.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from studyapp.rating.models import BonusPayment, Participant
from studyapp.rating.prolific_api import Bonus, ProlificClient, ProlificError, Submission
from studyapp.rating.services import participant_slot_release
from studyapp.studies.models import Study

Step = Participant.Step
RETURNED_FLAG = "returned_on_prolific"
# Prolific statuses of a submission the participant gave up (returned, or ran out of time).
GIVEN_UP = {"RETURNED", "TIMED-OUT"}
# Participations that ended with nothing to pay for: the participant is asked to return.
RETURN_REASONS: dict[str, str] = {
    Step.DECLINED: "Withdrew consent.",
    Step.STUDY_FULL: "The study was full when they arrived.",
}
FAILED_CHECK_MESSAGE = (
    "Thank you for taking part. Your answers to the attention questions in this study did not match the "
    "instructions given on those pages, so we cannot accept this submission."
)


@dataclass
class Plan:
    approve: list[Submission] = field(default_factory=list)
    reject: list[Submission] = field(default_factory=list)
    free_slots: list[tuple[Submission, Participant]] = field(default_factory=list)
    request_return: list[tuple[Submission, str]] = field(default_factory=list)  # with the reason
    review: list[tuple[Submission, str]] = field(default_factory=list)  # left to the researcher, with why

    def lines(self) -> list[str]:
        out = [f"approve {s.id} (participant {s.participant}): completed the study" for s in self.approve]
        out += [f"reject {s.id} (participant {s.participant}): FAILED_CHECK, screened out" for s in self.reject]
        out += [f"ask {s.id} (participant {s.participant}) to return: {why}" for s, why in self.request_return]
        out += [
            f"free the slot of {s.id} (participant {s.participant}): {s.status.lower()}" for s, _ in self.free_slots
        ]
        out += [f"review {s.id} (participant {s.participant}): {why}" for s, why in self.review]
        return out or ["nothing to do"]


def prolific_plan(*, study: Study, submissions: list[Submission], reject_failed_checks: bool = False) -> Plan:
    """Match each submission with its participation and decide; reads only."""
    participants = {
        p.prolific_session_id: p
        for p in Participant.objects.filter(study=study, prolific_session_id__in=[s.id for s in submissions])
    }
    plan = Plan()
    for submission in submissions:
        participant = participants.get(submission.id)
        if submission.status in GIVEN_UP:
            if participant is not None and participant.step in {Step.INSTRUCTIONS, Step.PRACTICE, Step.RATING}:
                plan.free_slots.append((submission, participant))
            continue
        if submission.status != "AWAITING REVIEW":
            continue
        if participant is None:
            plan.review.append((submission, "no participation with this SESSION_ID here"))
        elif participant.step == Step.COMPLETE:
            plan.approve.append(submission)
        elif participant.step == Step.SCREENED_OUT and reject_failed_checks:
            plan.reject.append(submission)
        elif participant.step in RETURN_REASONS:
            plan.request_return.append((submission, RETURN_REASONS[participant.step]))
        elif participant.step == Step.TIMED_OUT and participant.ratings.exists():
            plan.review.append((submission, "timed out after rating: partial completion, pay by bonus"))
        else:
            plan.review.append((submission, f"participation ended as {participant.step}"))
    return plan


def prolific_plan_apply(*, plan: Plan, client: ProlificClient) -> None:
    if plan.approve:
        client.submissions_approve([s.id for s in plan.approve])
    for submission in plan.reject:
        client.submission_reject(submission.id, category="FAILED_CHECK", message=FAILED_CHECK_MESSAGE)
    for submission, reason in plan.request_return:
        client.submission_request_return(submission.id, reasons=[reason])
    for _, participant in plan.free_slots:
        participant_slot_release(participant=participant, flag=RETURNED_FLAG)


# --- Bonuses ---------------------------------------------------------------------------------


class BonusRefused(ValueError):
    """A bonus file names someone who is not a participant, twice, or someone already paid."""


def bonuses_check(*, study: Study, bonuses: list[Bonus], again: bool = False) -> dict[str, Participant]:
    """The participation each bonus goes to (by Prolific ID), or :class:`BonusRefused` saying why not.

    Refused: IDs that are no participant of the study, IDs listed twice, and (unless ``again``)
    IDs the ledger (:class:`BonusPayment`) lists already, paid or set up; every one is named.
    """
    pids = [bonus.participant for bonus in bonuses]
    twice = sorted(pid for pid, n in Counter(pids).items() if n > 1)
    if twice:
        raise BonusRefused(f"listed more than once (Prolific would pay each line): {', '.join(twice)}")
    participants = {
        p.prolific_pid: p for p in Participant.objects.filter(study=study, prolific_pid__in=pids).order_by("started_at")
    }  # the latest participation of a PID that took part more than once
    unknown = [pid for pid in pids if pid not in participants]
    if unknown:
        raise BonusRefused(f"not participants of study {study.slug!r}: {', '.join(unknown)}")
    if not again:
        listed = BonusPayment.objects.filter(study=study, participant__prolific_pid__in=pids).select_related(
            "participant"
        )
        if listed:
            lines = [
                f"{row.participant.prolific_pid if row.participant else '?'} {row.amount} "
                f"(bulk payment {row.bulk_payment_id}, "
                + (f"paid {row.paid_at:%Y-%m-%d %H:%M}" if row.paid_at else "set up, payment not confirmed")
                + ")"
                for row in listed
            ]
            raise BonusRefused("already in the bonus ledger (pass --again to pay them again): " + "; ".join(lines))
    return participants


def bonuses_pay(
    *, study: Study, bonuses: list[Bonus], participants: dict[str, Participant], client: ProlificClient
) -> dict:
    """Set up the bulk payment on Prolific, write it to the ledger, then pay it once.

    The ledger rows are written (and committed) before the pay call, which is not idempotent: if
    it fails, they stay as "set up, payment not confirmed" and a second run is refused until the
    researcher has checked on Prolific.
    """
    payment = client.bonuses_set_up(study.prolific_study_id, bonuses)
    bulk_id = str(payment["id"])
    rows = BonusPayment.objects.bulk_create(
        [
            BonusPayment(study=study, participant=participants[bonus.participant], amount=bonus.amount,
                         bulk_payment_id=bulk_id)
            for bonus in bonuses
        ]
    )  # fmt: skip
    try:
        client.bonuses_pay(bulk_id)
    except ProlificError as error:
        raise ProlificError(
            f"{error}; the bonuses were set up as bulk payment {bulk_id} but the payment was not confirmed: "
            "check it on Prolific before paying again (the ledger lists them as set up)"
        ) from None
    BonusPayment.objects.filter(pk__in=[row.pk for row in rows]).update(paid_at=timezone.now())
    return payment


def partial_bonuses(*, study: Study, per_page: Decimal, max_amount: Decimal = Decimal("50")) -> list[Bonus]:
    """The partial-completion bonuses, from the participants table: each real participant flagged
    ``partial`` (timed out or returned after rating) gets ``per_page`` per page rated (at most
    ``max_amount``), unless the ledger lists them already."""
    from studyapp.studies.exports import export_participants_frame

    table = export_participants_frame(study=study)
    partial = table[table["partial"] & ~table["simulated"] & (table["pages_rated"] > 0)]
    listed = set(
        BonusPayment.objects.filter(study=study, participant__isnull=False).values_list(
            "participant__prolific_pid", flat=True
        )
    )
    bonuses = []
    for pid, pages in partial[["prolific_pid", "pages_rated"]].itertuples(index=False):
        if pid in listed:
            continue
        amount = min(per_page * int(pages), max_amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if amount > 0:
            bonuses.append(Bonus(participant=str(pid), amount=amount))
    return bonuses
