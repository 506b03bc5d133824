"""Prolific operations on a study: what to do with each submission, and doing it.

A submission's id is the SESSION_ID of the rater's entry link, so each Prolific submission
meets its participation here. The plan is computed from both sides first (a dry run prints
it and stops); applying it calls Prolific and frees at once the slots of raters who returned
their submission, instead of waiting for the study's timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from studyapp.rating.models import Participant
from studyapp.rating.prolific_api import ProlificClient, Submission
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
