"""What the researcher dashboard shows: progress of generation, slots, raters and their quality.

Every function here runs a fixed number of queries whatever the size of the design
(aggregates grouped in the database, no per-row queries): the dashboard of a 24-deployment,
720-rater study costs the same number of queries as the demo's.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet
from django.utils import timezone

from studyapp.rating.models import AttentionCheckResponse, Participant, Rating, Slot
from studyapp.rating.page_sequence import IN_PROGRESS
from studyapp.studies.exports import flags_text
from studyapp.studies.models import DiversityMetric, GenerationJob, Stimulus, Study, StudyReport
from studyapp.studies.reports import latest_ready_report


@dataclass
class DeploymentRow:
    slug: str
    model: str
    task: str
    conditions: list[str]
    automatic_only: bool = False  # generated and scored, never rated
    design: str = ""  # the deployment's rater design: raters x stimuli per rater
    slots: dict[str, int] = field(default_factory=dict)
    stimuli: int = 0
    ratings: int = 0
    raters: int = 0
    raters_complete: int = 0
    raters_timed_out: int = 0
    raters_screened_out: int = 0
    raters_attention_failed: int = 0
    # The pilot, apart from the design: its own slots and ratings (pilot mode in
    # docs/rating.md, "Rater experience and Prolific operations").
    pilot_slots: dict[str, int] = field(default_factory=dict)
    pilot_ratings: int = 0
    # Ratings of withdrawn raters: kept, marked, outside the design's counts (rating/withdrawal.py).
    withdrawn_ratings: int = 0

    @property
    def pilot_summary(self) -> str:
        if not self.pilot_slots and not self.pilot_ratings:
            return ""
        total = sum(self.pilot_slots.values())
        complete = self.pilot_slots.get("complete", 0)
        return f"{total} slots, {complete} complete, {self.pilot_ratings} ratings"

    @property
    def completion_rate(self) -> float | None:
        return self.raters_complete / self.raters if self.raters else None


@dataclass
class ParticipantFigures:
    counts: dict[str, int]  # total, consented, simulated and one per step
    completion_rate: float | None
    dropouts: int


@dataclass
class Dashboard:
    study: Study
    jobs: list[GenerationJob]
    deployments: list[DeploymentRow]
    ratings_per_condition: list[Any]
    participants: dict[str, int]
    completion_rate: float | None
    dropouts: int
    median_seconds_per_page: float | None
    attention_checks: int
    attention_failures: int
    attention_failure_rate: float | None
    raters: list[Any]
    raters_shown_limit: int
    latest_ready_report: StudyReport | None
    diversity_rows: int

    @property
    def generation_done(self) -> int:
        return sum(job.done for job in self.jobs)

    @property
    def generation_total(self) -> int:
        return sum(job.total for job in self.jobs)

    @property
    def jobs_busy(self) -> bool:
        """A job is queued or running: the page refreshes itself to show each stored batch."""
        return any(job.status in GenerationJob.BUSY for job in self.jobs)


def study_dashboard(*, study: Study, raters_limit: int = 500) -> Dashboard:
    """Everything the dashboard shows, in a fixed number of queries."""
    participants = _participant_figures(study=study)
    checks = AttentionCheckResponse.objects.filter(participant__study=study).aggregate(
        n=Count("pk"), failed=Count("pk", filter=Q(passed=False))
    )
    page_times = _seconds_per_page(study=study)
    return Dashboard(
        study=study,
        jobs=list(
            GenerationJob.objects.filter(deployment__study=study)
            .select_related("deployment", "condition")
            .order_by("deployment__slug", "condition__key")
        ),
        deployments=_deployment_rows(study=study),
        ratings_per_condition=_ratings_per_condition(study=study),
        participants=participants.counts,
        completion_rate=participants.completion_rate,
        dropouts=participants.dropouts,
        median_seconds_per_page=statistics.median(page_times) if page_times else None,
        attention_checks=checks["n"],
        attention_failures=checks["failed"],
        attention_failure_rate=checks["failed"] / checks["n"] if checks["n"] else None,
        raters=_raters_table(study=study, limit=raters_limit),
        raters_shown_limit=raters_limit,
        latest_ready_report=latest_ready_report(study=study),
        diversity_rows=DiversityMetric.objects.filter(deployment__study=study).count(),
    )


def _deployment_rows(*, study: Study) -> list[DeploymentRow]:
    """One row per deployment: its conditions, slots by status, stimuli, ratings and raters."""
    rows = {
        d.pk: DeploymentRow(
            slug=d.slug,
            model=d.model.key,
            task=d.task.key,
            conditions=[],
            automatic_only=d.automatic_only,
            design=f"{d.raters_planned} raters x {d.per_rater} stimuli",
        )
        for d in study.deployments.select_related("model", "task").order_by("slug")
    }
    for deployment_id, key in study.deployments.values_list("pk", "conditions__key").order_by("conditions__key"):
        if key:
            rows[deployment_id].conditions.append(key)
    for slot_row in (
        Slot.objects.filter(deployment__study=study).values("deployment_id", "pilot", "status").annotate(n=Count("pk"))
    ):
        row = rows[slot_row["deployment_id"]]
        (row.pilot_slots if slot_row["pilot"] else row.slots)[slot_row["status"]] = slot_row["n"]
    stimuli = Stimulus.objects.current().filter(deployment__study=study)
    for deployment_id, n in _rows_per_deployment(stimuli, "deployment_id"):
        rows[deployment_id].stimuli = n
    for rating_row in (
        Rating.objects.filter(stimulus__deployment__study=study)
        .values("stimulus__deployment_id", "pilot", "withdrawn")
        .annotate(n=Count("pk"))
    ):
        row = rows[rating_row["stimulus__deployment_id"]]
        if rating_row["withdrawn"]:
            row.withdrawn_ratings += rating_row["n"]
        elif rating_row["pilot"]:
            row.pilot_ratings = rating_row["n"]
        else:
            row.ratings = rating_row["n"]
    _count_raters(study=study, rows=rows)
    return list(rows.values())


def _rows_per_deployment(queryset: QuerySet, deployment_field: str) -> QuerySet:
    """(deployment id, number of rows) pairs, grouped in the database."""
    return queryset.values(deployment_field).annotate(n=Count("pk")).values_list(deployment_field, "n")


def _count_raters(*, study: Study, rows: dict[int, DeploymentRow]) -> None:
    """The design's raters per deployment: everyone given one of its slots, those whose slot went
    back to the pool (timed out, screened out, withdrawn) included; pilot raters are counted apart."""
    step = Participant.Step
    for rater_row in (
        study.participants.filter(deployment__isnull=False, pilot=False)
        .values("deployment_id")
        .annotate(
            raters=Count("pk"),
            complete=Count("pk", filter=Q(step=step.COMPLETE)),
            timed_out=Count("pk", filter=Q(step=step.TIMED_OUT)),
            screened_out=Count("pk", filter=Q(step=step.SCREENED_OUT)),
            attention_failed=Count("pk", filter=Q(attention_failures__gt=0)),
        )
    ):
        row = rows[rater_row["deployment_id"]]
        row.raters = rater_row["raters"]
        row.raters_complete = rater_row["complete"]
        row.raters_timed_out = rater_row["timed_out"]
        row.raters_screened_out = rater_row["screened_out"]
        row.raters_attention_failed = rater_row["attention_failed"]


def _ratings_per_condition(*, study: Study) -> list[Any]:
    """The design's ratings per condition (the pilot's are counted apart, per deployment)."""
    return list(
        Rating.objects.filter(stimulus__deployment__study=study, pilot=False, withdrawn=False)
        .values(condition=F("stimulus__condition__key"), method=F("stimulus__condition__method"))
        .annotate(ratings=Count("pk"), raters=Count("participant", distinct=True))
        .order_by("condition")
    )


def _participant_figures(*, study: Study) -> ParticipantFigures:
    """Participants per step, the completion rate of those who consented, and drop-outs.

    A drop-out timed out, or has been silent past the slot timeout in a step before the end
    (someone who only opened the consent page a moment ago is not one yet).
    """
    participants = study.participants.all()
    by_step = dict(participants.values_list("step").annotate(n=Count("pk")).values_list("step", "n"))
    stale_before = timezone.now() - timedelta(minutes=study.slot_timeout_minutes)
    dropped = (Q(step=Participant.Step.TIMED_OUT) | Q(step__in=IN_PROGRESS, last_seen_at__lt=stale_before)) & ~Q(
        step=Participant.Step.CONSENT, consented_at__isnull=True, last_seen_at__gte=stale_before
    )
    counts = participants.aggregate(
        dropouts=Count("pk", filter=dropped),
        consented=Count("pk", filter=Q(consented_at__isnull=False)),
        simulated=Count("pk", filter=Q(simulated=True)),
        pilot=Count("pk", filter=Q(pilot=True)),
    )
    complete = by_step.get(Participant.Step.COMPLETE, 0)
    consented = counts["consented"]
    return ParticipantFigures(
        counts={
            "total": sum(by_step.values()),
            "consented": consented,
            "simulated": counts["simulated"],
            "pilot": counts["pilot"],
            **by_step,
        },
        completion_rate=complete / consented if consented else None,
        dropouts=counts["dropouts"],
    )


def _seconds_per_page(*, study: Study) -> list[float]:
    # One time per page (a page holds every dimension of one stimulus, each row carries it).
    return list(
        Rating.objects.filter(stimulus__deployment__study=study, seconds_on_page__isnull=False)
        .values("participant_id", "page_index")
        .annotate(seconds=Max("seconds_on_page"))
        .values_list("seconds", flat=True)
    )


def _raters_table(*, study: Study, limit: int) -> list[Any]:
    """The latest ``limit`` raters, one row each, with their flags as text and whether they are
    pilot or simulated raters (both are left out of the analysis by default)."""
    raters = list(
        study.participants.annotate(n_ratings=Count("ratings"), deployment_slug=F("deployment__slug"))
        .order_by("-started_at")
        .values(
            "token",
            "step",
            "deployment_slug",
            "pilot",
            "simulated",
            "n_ratings",
            "attention_failures",
            "flags",
            "started_at",
            "last_seen_at",
            "completed_at",
        )[:limit]
    )
    for rater in raters:
        rater["flags"] = flags_text(rater["flags"])
    return raters
