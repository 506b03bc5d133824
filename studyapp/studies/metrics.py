"""Automatic metrics: per-stimulus scores and per-(condition, item) diversity, computed by
``analysis`` after each generation job, and their per-condition summary on the dashboard.

``analysis`` is imported inside the functions that compute, never at module level: the
web process imports this module for the summary.
"""

from __future__ import annotations

import logging
import math
import statistics
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from studyapp.studies.models import DiversityMetric, GenerationJob, Stimulus, Study
from studyapp.studies.study_loading import json_safe

logger = logging.getLogger(__name__)


def metrics_compute(*, job_id: int) -> int:
    """Per-stimulus metrics and per-(condition, item) diversity for one job, via analysis/.

    Recomputing overwrites: safe to run again after a retry added stimuli. A failure (say, a
    missing embedding model) is stored on the job and shown in the panel; the stimuli stay.
    """
    try:
        n = _job_metrics_store(job_id=job_id)
    except Exception as error:  # shown on the dashboard; generation itself succeeded
        logger.exception("metrics of job %s failed", job_id)
        GenerationJob.objects.filter(pk=job_id).update(metrics_error=f"{type(error).__name__}: {error}"[:4000])
        return 0
    GenerationJob.objects.filter(pk=job_id).update(metrics_computed_at=timezone.now(), metrics_error="")
    return n


def _job_metrics_store(*, job_id: int) -> int:
    import pandas as pd

    from analysis.metrics import diversity_by_group, stimulus_metrics

    job = GenerationJob.objects.select_related("deployment__task").get(pk=job_id)
    stimuli = list(
        Stimulus.objects.current().filter(job=job).select_related("item").order_by("item__key", "sample_index")
    )
    if not stimuli:
        return 0
    frame = pd.DataFrame(
        {
            "text": [s.text for s in stimuli],
            "task": job.deployment.task.key,
            "item": [s.item.key for s in stimuli],
            # AUT originality is the distance of each use from the object: its text ("a brick"), not its key.
            "item_text": [s.item.text for s in stimuli],
            "deployment": job.deployment_id,
            "condition": job.condition_id,
        },
        index=[s.pk for s in stimuli],
    )
    per_stimulus = stimulus_metrics(frame, text_col="text", task_col="task", item_text_col="item_text")
    for stimulus in stimuli:
        stimulus.metrics = (
            _clean_metrics(per_stimulus.loc[stimulus.pk].to_dict()) if stimulus.pk in per_stimulus.index else {}
        )
    Stimulus.objects.bulk_update(stimuli, ["metrics"], batch_size=500)

    # One job is one (deployment, condition): its groups never pool models or deployments.
    group_cols = ("deployment", "condition", "item")
    diversity = diversity_by_group(frame, group_cols=group_cols, text_col="text")
    diversity = diversity.reset_index() if not set(group_cols) <= set(diversity.columns) else diversity
    items = {s.item.key: s.item for s in stimuli}
    counts = frame.groupby("item").size().to_dict()
    for row in diversity.to_dict("records"):
        item = items.get(str(row.pop("item")))
        row.pop("condition", None)
        row.pop("deployment", None)
        if item is None:
            continue
        DiversityMetric.objects.update_or_create(
            deployment_id=job.deployment_id,
            condition_id=job.condition_id,
            item=item,
            defaults={"n_samples": int(counts.get(item.key, 0)), "metrics": _clean_metrics(row)},
        )
    return len(stimuli)


def _clean_metrics(values: dict) -> dict:
    """JSON-safe metrics: NaN becomes None (JSON has no NaN), numpy scalars become Python ones."""
    clean = {}
    for key, value in values.items():
        if hasattr(value, "item") and not isinstance(value, list | dict | str):
            value = value.item()
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            value = None
        clean[str(key)] = value
    return json_safe(clean)


def metrics_start(*, study: Study) -> int:
    """Queue metrics for every succeeded job of a study (after an analysis/ upgrade, say)."""
    from studyapp.studies.tasks import metrics_compute_task

    job_ids = list(
        GenerationJob.objects.filter(deployment__study=study, status=GenerationJob.Status.SUCCEEDED).values_list(
            "pk", flat=True
        )
    )
    for job_id in job_ids:
        transaction.on_commit(partial(metrics_compute_task.delay, job_id))
    return len(job_ids)


# --- The per-condition summary ------------------------------------------------------------

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
GROUP_PREFIX = "group_"  # a diversity metric's name in the summary and the export

# (deployment slug, condition as the export names it) -> item id -> metric -> values
_SummaryValues = dict[tuple[str, str], dict[int, dict[str, list[float]]]]


def automatic_metrics_by_condition(*, study: Study) -> list[dict[str, Any]]:
    """Mean automatic metrics per (deployment, condition): the pre-rating look at mode collapse.

    Group metrics (``group_*``: similarity across a condition's samples of one item) are
    averaged over items; per-stimulus metrics first per item, then over items. Metrics that
    no stimulus of a condition has (a DAT metric on the AUT) are left out of its row. Two
    queries, reading only the stored metrics (not the texts).
    """
    values: _SummaryValues = {}
    counts: dict[tuple[str, str], int] = {}
    for deployment, label, method, item_id, metrics in (
        Stimulus.objects.current()
        .filter(deployment__study=study)
        .values_list("deployment__slug", "condition__label", "condition__method", "item_id", "metrics")
    ):
        group = (deployment, label or method)
        counts[group] = counts.get(group, 0) + 1
        _summary_collect(values.setdefault(group, {}).setdefault(item_id, {}), metrics, prefix="")
    for deployment, label, method, item_id, metrics in DiversityMetric.objects.filter(
        deployment__study=study
    ).values_list("deployment__slug", "condition__label", "condition__method", "item_id", "metrics"):
        per_item = values.get((deployment, label or method), {}).get(item_id)
        if per_item is not None:  # a group of samples the summary counts
            _summary_collect(per_item, metrics, prefix=GROUP_PREFIX)
    rows = []
    for (deployment, condition), by_item in sorted(values.items()):
        metrics = _summary_means(by_item)
        rows.append(
            {
                "deployment": deployment,
                "condition": condition,
                "n_stimuli": counts[(deployment, condition)],
                "metrics": metrics,
                "values": [metrics.get(name) for name in SUMMARY_METRICS],  # in SUMMARY_METRICS order, for tables
            }
        )
    return rows


def _summary_collect(into: dict[str, list[float]], metrics: dict | None, *, prefix: str) -> None:
    for name, value in (metrics or {}).items():
        column = prefix + name
        # None (and NaN) is "not applicable"; booleans (dat_valid) count as 0/1.
        if column in SUMMARY_METRICS and isinstance(value, int | float) and not math.isnan(value):
            into.setdefault(column, []).append(float(value))


def _summary_means(by_item: dict[int, dict[str, list[float]]]) -> dict[str, float]:
    item_means: dict[str, list[float]] = {}
    for metrics in by_item.values():
        for name, item_values in metrics.items():
            item_means.setdefault(name, []).append(statistics.fmean(item_values))
    return {name: statistics.fmean(item_means[name]) for name in SUMMARY_METRICS if name in item_means}


def summary_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The dashboard's table of :func:`automatic_metrics_by_condition` rows: the columns of
    :data:`SUMMARY_METRICS` that some row has (one empty in every row, the ``cc_*`` metrics of
    a study without the combinatorial task say, is left out), and the rows, each with its
    values in those columns as ``shown``."""
    columns = [name for name in SUMMARY_METRICS if any(name in row["metrics"] for row in rows)]
    return columns, [{**row, "shown": [row["metrics"].get(name) for name in columns]} for row in rows]
