"""Reads of the studies app: access, the dashboard, and the export tables.

Every function here runs a fixed number of queries whatever the size of the design
(aggregates grouped in the database, no per-row queries): the dashboard of a 24-deployment,
720-rater study costs the same number of queries as the demo's.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db.models import Count, F, Max, Min, Q, QuerySet
from django.utils import timezone

from studyapp.rating.models import AttentionCheckResponse, Participant, Rating, Slot
from studyapp.studies.models import DiversityMetric, GenerationJob, Stimulus, Study, StudyReport
from studyapp.studies.vocabulary import SCALE_RANGES

# --- Access -----------------------------------------------------------------------------


def user_can_view_study(*, user, study: Study) -> bool:
    """Staff researchers of the study (superusers: every study)."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    return user.is_superuser or study.researchers.filter(pk=user.pk).exists()


def studies_visible_to(*, user) -> QuerySet[Study]:
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return Study.objects.none()
    if user.is_superuser:
        return Study.objects.all()
    return Study.objects.filter(researchers=user)


# --- Dashboard --------------------------------------------------------------------------

IN_PROGRESS_STEPS = (
    Participant.Step.CONSENT,
    Participant.Step.INSTRUCTIONS,
    Participant.Step.PRACTICE,
    Participant.Step.RATING,
    Participant.Step.DEBRIEF,
)


@dataclass
class DeploymentRow:
    slug: str
    model: str
    task: str
    conditions: list[str]
    automatic_only: bool = False  # generated and scored, never rated
    slots: dict[str, int] = field(default_factory=dict)
    stimuli: int = 0
    ratings: int = 0
    raters: int = 0
    raters_complete: int = 0
    raters_timed_out: int = 0
    raters_screened_out: int = 0
    raters_attention_failed: int = 0

    @property
    def completion_rate(self) -> float | None:
        return self.raters_complete / self.raters if self.raters else None


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
    reports: list[StudyReport]
    diversity_rows: int

    @property
    def generation_done(self) -> int:
        return sum(job.done for job in self.jobs)

    @property
    def generation_total(self) -> int:
        return sum(job.total for job in self.jobs)


def study_dashboard(*, study: Study, raters_limit: int = 500) -> Dashboard:
    """Everything the dashboard shows, in a fixed number of queries."""
    deployments = {
        d.pk: DeploymentRow(
            slug=d.slug, model=d.model.key, task=d.task.key, conditions=[], automatic_only=d.automatic_only
        )
        for d in study.deployments.select_related("model", "task").order_by("slug")
    }
    for deployment_id, key in study.deployments.values_list("pk", "conditions__key").order_by("conditions__key"):
        if key:
            deployments[deployment_id].conditions.append(key)
    for slot_row in (
        Slot.objects.filter(deployment__study=study).values("deployment_id", "status").annotate(n=Count("pk"))
    ):
        deployments[slot_row["deployment_id"]].slots[slot_row["status"]] = slot_row["n"]
    for stimulus_row in (
        Stimulus.objects.filter(deployment__study=study).values("deployment_id").annotate(n=Count("pk"))
    ):
        deployments[stimulus_row["deployment_id"]].stimuli = stimulus_row["n"]
    for rating_row in (
        Rating.objects.filter(stimulus__deployment__study=study)
        .values("stimulus__deployment_id")
        .annotate(n=Count("pk"))
    ):
        deployments[rating_row["stimulus__deployment_id"]].ratings = rating_row["n"]

    # Raters per deployment through their slots (a released slot keeps no participant).
    for rater_row in (
        Slot.objects.filter(deployment__study=study, participant__isnull=False)
        .values("deployment_id")
        .annotate(
            raters=Count("participant", distinct=True),
            complete=Count("participant", distinct=True, filter=Q(participant__step=Participant.Step.COMPLETE)),
            timed_out=Count("participant", distinct=True, filter=Q(participant__step=Participant.Step.TIMED_OUT)),
            screened_out=Count("participant", distinct=True, filter=Q(participant__step=Participant.Step.SCREENED_OUT)),
            attention_failed=Count("participant", distinct=True, filter=Q(participant__attention_failures__gt=0)),
        )
    ):
        deployment = deployments[rater_row["deployment_id"]]
        deployment.raters = rater_row["raters"]
        deployment.raters_complete = rater_row["complete"]
        deployment.raters_timed_out = rater_row["timed_out"]
        deployment.raters_screened_out = rater_row["screened_out"]
        deployment.raters_attention_failed = rater_row["attention_failed"]

    jobs = list(
        GenerationJob.objects.filter(deployment__study=study)
        .select_related("deployment", "condition")
        .order_by("deployment__slug", "condition__key")
    )
    ratings_per_condition = list(
        Rating.objects.filter(stimulus__deployment__study=study)
        .values(condition=F("stimulus__condition__key"), method=F("stimulus__condition__method"))
        .annotate(ratings=Count("pk"), raters=Count("participant", distinct=True))
        .order_by("condition")
    )

    participants = study.participants.all()
    by_step = dict(participants.values_list("step").annotate(n=Count("pk")).values_list("step", "n"))
    stale_before = timezone.now() - timedelta(minutes=study.slot_timeout_minutes)
    dropouts = (
        participants.filter(
            Q(step=Participant.Step.TIMED_OUT) | Q(step__in=IN_PROGRESS_STEPS, last_seen_at__lt=stale_before)
        )
        .exclude(step=Participant.Step.CONSENT, consented_at__isnull=True, last_seen_at__gte=stale_before)
        .count()
    )
    consented = participants.filter(consented_at__isnull=False).count()
    simulated = participants.filter(simulated=True).count()
    complete = by_step.get(Participant.Step.COMPLETE, 0)

    checks = AttentionCheckResponse.objects.filter(participant__study=study).aggregate(
        n=Count("pk"), failed=Count("pk", filter=Q(passed=False))
    )
    # One time per page (a page holds every dimension of one stimulus, each row carries it).
    page_times = list(
        Rating.objects.filter(stimulus__deployment__study=study, seconds_on_page__isnull=False)
        .values("participant_id", "page_index")
        .annotate(seconds=Max("seconds_on_page"))
        .values_list("seconds", flat=True)
    )

    raters = list(
        participants.annotate(
            n_ratings=Count("ratings", distinct=True),
            deployment_slug=Min("slots__deployment__slug"),
        )
        .order_by("-started_at")
        .values(
            "token",
            "step",
            "deployment_slug",
            "n_ratings",
            "attention_failures",
            "flags",
            "started_at",
            "last_seen_at",
            "completed_at",
        )[:raters_limit]
    )
    for rater in raters:
        rater["flags"] = _flags_text(rater["flags"])

    return Dashboard(
        study=study,
        jobs=jobs,
        deployments=list(deployments.values()),
        ratings_per_condition=ratings_per_condition,
        participants={"total": sum(by_step.values()), "consented": consented, "simulated": simulated, **by_step},
        completion_rate=complete / consented if consented else None,
        dropouts=dropouts,
        median_seconds_per_page=statistics.median(page_times) if page_times else None,
        attention_checks=checks["n"],
        attention_failures=checks["failed"],
        attention_failure_rate=checks["failed"] / checks["n"] if checks["n"] else None,
        raters=raters,
        raters_shown_limit=raters_limit,
        reports=list(study.reports.all()[:5]),
        diversity_rows=DiversityMetric.objects.filter(deployment__study=study).count(),
    )


def _flags_text(flags: Any) -> str:
    if not flags:
        return ""
    if isinstance(flags, list | tuple):
        return ";".join(str(flag) for flag in flags)
    if isinstance(flags, dict):
        return ";".join(f"{k}={v}" for k, v in flags.items())
    return str(flags)


# --- Export -----------------------------------------------------------------------------

RATING_COLUMNS = [
    "rater",
    "deployment",
    "condition",
    "condition_key",
    "method",
    "model",
    "task",
    "item",
    "stimulus",
    "text_id",
    "sample_index",
    "dimension",
    "score",
    "scale",
    "scale_min",
    "scale_max",
    "page_index",
    "dimension_position",
    "seconds_on_page",
    "rated_at",
    "slot",
    "rater_status",
    "rater_complete",
    "rater_attention_failures",
    "attention_failed",
    "rater_flags",
    "simulated",
    "speeding",
    "pilot",
]
STIMULUS_COLUMNS = [
    "stimulus",
    "deployment",
    "condition",
    "condition_key",
    "method",
    "model",
    "task",
    "item",
    "item_text",
    "sample_index",
    "text_id",
    "rated",
    "text",
    "prompt",
    "n_new_tokens",
    "seed",
    "decoding",
    "condition_params",
    "model_source",
    "model_sha256",
    "artifact_sha256",
    "created_at",
    "finished",
    "length_words",
    "excluded",
    "exclusion_reason",
    "replaces",
]


def export_ratings_frame(*, study: Study):
    """One row per rating, long format (documented in README.md, "The export"). One query."""
    import pandas as pd

    rows = (
        Rating.objects.filter(stimulus__deployment__study=study)
        .order_by("participant_id", "page_index", "dimension_position", "pk")
        .values_list(
            "participant__token",
            "stimulus__deployment__slug",
            "stimulus__condition__label",
            "stimulus__condition__key",
            "stimulus__condition__method",
            "stimulus__condition__model__key",
            "stimulus__item__task__key",
            "stimulus__item__key",
            "stimulus__token",
            "stimulus__text_id",
            "stimulus__sample_index",
            "dimension__key",
            "score",
            "dimension__scale",
            "page_index",
            "dimension_position",
            "seconds_on_page",
            "created_at",
            "slot__index",
            "participant__step",
            "participant__attention_failures",
            "participant__flags",
            "participant__simulated",
            "pilot",
        )
    )
    records = []
    # A page faster than the spec's minimum (0: off) is marked on each of its rows.
    minimum = study.min_seconds_per_page
    for (
        rater, deployment, condition, condition_key, method, model, task, item, stimulus, text_id, sample_index,
        dimension, score, scale, page_index, dimension_position, seconds, rated_at, slot, step, failures, flags,
        simulated, pilot,
    ) in rows:  # fmt: skip
        low, high = SCALE_RANGES.get(scale, (None, None))
        records.append(
            (
                rater, deployment, condition or method, condition_key, method, model, task, item, stimulus, text_id,
                sample_index, dimension, score, scale, low, high, page_index, dimension_position, seconds, rated_at,
                slot, step, step == Participant.Step.COMPLETE, failures, failures > 0, _flags_text(flags), simulated,
                bool(minimum and seconds is not None and seconds < minimum), pilot,
            )
        )  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=RATING_COLUMNS)
    frame["rated_at"] = pd.to_datetime(frame["rated_at"], utc=True)
    frame["score"] = frame["score"].astype(float)
    frame["seconds_on_page"] = frame["seconds_on_page"].astype(float)
    frame["simulated"] = frame["simulated"].astype(bool)
    return frame


def export_stimuli_frame(*, study: Study):
    """One row per stimulus with full text, provenance and metrics (one column per metric). Two queries."""
    import pandas as pd

    from studyapp.studies.design import SampleRow, rated_stimulus_ids

    stimuli = list(
        Stimulus.objects.filter(deployment__study=study)
        .select_related("deployment", "condition__model", "item__task", "replaces")
        .order_by("deployment__slug", "condition__key", "item__key", "sample_index")
    )
    # The same rule as the slot builder (rating.services.rated_stimuli), on rows already read.
    rated_ids = rated_stimulus_ids(
        rows=(
            SampleRow(
                s.pk,
                s.item.task.key,
                s.item.key,
                s.deployment.samples_per_item or study.samples_per_item,
                s.sample_index,
                s.replaces_id,
                s.excluded_at is not None,
            )
            for s in stimuli
            if not s.deployment.automatic_only
        ),
        study_seed=study.seed,
        n_rated=study.rated_samples_per_item,
    )
    diversity = {
        (row.deployment_id, row.condition_id, row.item_id): row.metrics
        for row in DiversityMetric.objects.filter(deployment__study=study)
    }
    records = []
    metric_names: list[str] = []
    for s in stimuli:
        record = {
            "stimulus": s.token,
            "deployment": s.deployment.slug,
            "condition": s.condition.label or s.condition.method,
            "condition_key": s.condition.key,
            "method": s.condition.method,
            "model": s.condition.model.key,
            "task": s.item.task.key,
            "item": s.item.key,
            "item_text": s.item.text,
            "sample_index": s.sample_index,
            "text_id": s.text_id,
            "rated": s.pk in rated_ids,
            "text": s.text,
            "prompt": s.prompt,
            "n_new_tokens": s.n_new_tokens,
            "seed": s.seed,
            "decoding": json.dumps(s.decoding, sort_keys=True),
            "condition_params": json.dumps(s.condition.params, sort_keys=True),
            "model_source": s.model_source,
            "model_sha256": s.model_sha256,
            "artifact_sha256": s.artifact_sha256,
            "created_at": s.created_at,
            "finished": s.finished,
            "length_words": s.n_words,
            "excluded": s.excluded_at is not None,
            "exclusion_reason": s.exclusion_reason,
            "replaces": s.replaces.token if s.replaces else "",
        }
        # Metrics keep analysis/' names; one that collides with a column above gets a prefix.
        for name, value in (s.metrics or {}).items():
            column = name if name not in record else f"metric_{name}"
            record[column] = value
            if column not in metric_names:
                metric_names.append(column)
        for name, value in (diversity.get((s.deployment_id, s.condition_id, s.item_id)) or {}).items():
            column = f"group_{name}"
            record[column] = value
            if column not in metric_names:
                metric_names.append(column)
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=[*STIMULUS_COLUMNS, *metric_names])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def report_result_tables(*, report: StudyReport | None) -> str | None:
    """The three result tables of a ready report (``results.json``), as analysis formats them."""
    if report is None or report.status != StudyReport.Status.READY or not report.out_dir:
        return None
    try:
        results = json.loads((Path(report.out_dir) / "results.json").read_text())
        from analysis import format_result_tables

        return format_result_tables(results)
    except (OSError, ValueError, ImportError):
        return None  # a report written before results.json existed: the HTML report has it all


# The automatic metrics worth a glance per condition; the export has all of them.
SUMMARY_METRICS = (
    "n_words",
    "aut_fluency",
    "aut_originality",
    "dat_score",
    "dat_valid",
    "group_mean_pairwise_similarity",
    "group_share_pairs_similar",
    "group_vendi_score",
    "group_distinct_2",
    "cc_valid",
    "cc_utility",
    "cc_novelty",
    "cc_creativity",
)


def automatic_metrics_by_condition(*, study: Study) -> list[dict[str, Any]]:
    """Mean automatic metrics per (deployment, condition): the pre-rating look at mode collapse.

    Group metrics (``group_*``: similarity across a condition's samples of one item) are
    averaged over items; per-stimulus metrics over stimuli. Metrics that no stimulus of a
    condition has (a DAT metric on the AUT) are left out of its row.
    """
    frame = export_stimuli_frame(study=study)
    if frame.empty:
        return []
    present = [name for name in SUMMARY_METRICS if name in frame.columns]
    per_item = frame.groupby(["deployment", "condition", "item"], sort=True)[present].agg(
        lambda column: column.astype(float).mean()
    )
    means = per_item.groupby(level=["deployment", "condition"]).mean()
    counts = frame.groupby(["deployment", "condition"]).size()
    rows = []
    for (deployment, condition), row in means.iterrows():
        metrics = {name: float(value) for name, value in row.items() if value == value}  # NaN: not applicable
        rows.append(
            {
                "deployment": deployment,
                "condition": condition,
                "n_stimuli": int(counts[(deployment, condition)]),
                "metrics": metrics,
                "values": [metrics.get(name) for name in SUMMARY_METRICS],  # in SUMMARY_METRICS order, for tables
            }
        )
    return rows
