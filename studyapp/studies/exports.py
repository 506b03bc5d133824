"""Stage 4, the export: ratings and stimuli as long-format tables (README.md, "The export").

The frames are what the export pages, ``manage.py export_study`` and the report read;
each is built in a fixed number of queries whatever the size of the design.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analysis.csv_cells import frame_csv_write
from studyapp.rating.models import Participant, Rating
from studyapp.studies.design import SampleRow, rated_stimulus_ids
from studyapp.studies.metrics import GROUP_PREFIX
from studyapp.studies.models import DiversityMetric, Stimulus, Study
from studyapp.studies.vocabulary import SCALE_RANGES

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
                slot, step, step == Participant.Step.COMPLETE, failures, failures > 0, flags_text(flags), simulated,
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

    stimuli = list(
        Stimulus.objects.filter(deployment__study=study)
        .select_related("deployment", "condition__model", "item__task", "replaces")
        .order_by("deployment__slug", "condition__key", "item__key", "sample_index")
    )
    rated_ids = _rated_ids(study=study, stimuli=stimuli)
    diversity = {
        (row.deployment_id, row.condition_id, row.item_id): row.metrics
        for row in DiversityMetric.objects.filter(deployment__study=study)
    }
    records = []
    metric_names: list[str] = []
    for s in stimuli:
        record = _stimulus_record(s, rated=s.pk in rated_ids)
        group_metrics = diversity.get((s.deployment_id, s.condition_id, s.item_id))
        for column, value in _metric_columns(record, s.metrics, group_metrics):
            record[column] = value
            if column not in metric_names:
                metric_names.append(column)
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=[*STIMULUS_COLUMNS, *metric_names])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def _rated_ids(*, study: Study, stimuli: list[Stimulus]) -> set[int]:
    """The same rule as the slot builder (``rating.slots.rated_stimuli``), on rows already read."""
    return rated_stimulus_ids(
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


def _stimulus_record(s: Stimulus, *, rated: bool) -> dict[str, Any]:
    """The fixed columns of one stimulus (``STIMULUS_COLUMNS``)."""
    return {
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
        "rated": rated,
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


def _metric_columns(record: dict[str, Any], metrics: dict | None, group_metrics: dict | None):
    """(column, value) of a stimulus' metrics, then of its group's diversity metrics (``group_*``).

    Metrics keep analysis/' names; one that collides with a fixed column gets a prefix.
    """
    for name, value in (metrics or {}).items():
        yield (name if name not in record else f"metric_{name}"), value
    for name, value in (group_metrics or {}).items():
        yield GROUP_PREFIX + name, value


def flags_text(flags: Any) -> str:
    """A rater's flags as one export cell ("speeding;partial")."""
    if not flags:
        return ""
    if isinstance(flags, list | tuple):
        return ";".join(str(flag) for flag in flags)
    if isinstance(flags, dict):
        return ";".join(f"{k}={v}" for k, v in flags.items())
    return str(flags)


def export_write(*, study: Study, out_dir: str | Path) -> dict[str, Path]:
    """Write ratings and stimuli as CSV and Parquet into ``out_dir`` (documented in README.md, "The export")."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in (("ratings", export_ratings_frame(study=study)), ("stimuli", export_stimuli_frame(study=study))):
        for fmt in ("csv", "parquet"):
            path = out_dir / f"{study.slug}-{name}.{fmt}"
            staging = path.with_name(f".{path.name}.tmp")
            export_frame_write(frame, fmt=fmt, target=staging)
            staging.replace(path)  # atomic: a reader never sees half a file
            paths[f"{name}_{fmt}"] = path
    return paths


def export_frame_write(frame, *, fmt: str, target: Any) -> None:
    """The one place an export table becomes a file (``target``: a path or a binary buffer).

    CSV: text cells a spreadsheet would run as a formula are marked (OWASP's rule,
    ``analysis.csv_cells``; ``python -m analysis`` reads them back exactly). Parquet: exact.
    """
    if fmt == "csv":
        frame_csv_write(frame, target)
    else:
        frame.to_parquet(target, index=False)
