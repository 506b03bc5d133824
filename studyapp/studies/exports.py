"""Stage 4, the export: ratings and stimuli as long-format tables (README.md, "The export").

The frames are what the export pages, ``manage.py export_study`` and the report read;
each is built in a fixed number of queries whatever the size of the design.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.db.models import Count

from analysis.csv_cells import frame_csv_write
from studyapp.rating.models import AttentionCheckResponse, Participant, Rating
from studyapp.rating.prolific_ops import RETURNED_FLAG
from studyapp.rating.quality import PARTIAL_FLAG, SPEEDING_FLAG, page_speeding
from studyapp.rating.selectors import participant_ending_code, study_attention_checks, study_debrief_questions
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
    "held_back",
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
    "withdrawn",
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
    "generation_round",
    "finished",
    "ends_mid_word",
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
            "held_back",
            "created_at",
            "slot__index",
            "participant__step",
            "participant__attention_failures",
            "participant__flags",
            "participant__simulated",
            "pilot",
            "withdrawn",
        )
    )
    records = []
    # A speeding page (quality.page_speeding) is marked on each of its rows.
    for (
        rater, deployment, condition, condition_key, method, model, task, item, stimulus, text_id, sample_index,
        dimension, score, scale, page_index, dimension_position, seconds, held_back, rated_at, slot, step, failures,
        flags, simulated, pilot, withdrawn,
    ) in rows:  # fmt: skip
        low, high = SCALE_RANGES.get(scale, (None, None))
        records.append(
            (
                rater, deployment, condition or method, condition_key, method, model, task, item, stimulus, text_id,
                sample_index, dimension, score, scale, low, high, page_index, dimension_position, seconds, held_back,
                rated_at, slot, step, step == Participant.Step.COMPLETE, failures, failures > 0, flags_text(flags),
                simulated, page_speeding(study=study, seconds_on_page=seconds, held_back=held_back), pilot, withdrawn,
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
        Stimulus.objects.current()
        .filter(deployment__study=study)
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
    """The same rule as the slot builder (``rating.slots.rated_stimuli``), on rows already read,
    each deployment with its own rated samples per item."""
    by_deployment: dict[int, list[Stimulus]] = {}
    for s in stimuli:
        if not s.deployment.automatic_only:
            by_deployment.setdefault(s.deployment_id, []).append(s)
    rated: set[int] = set()
    for rows in by_deployment.values():
        deployment = rows[0].deployment
        deployment.study = study
        rated |= rated_stimulus_ids(
            rows=(
                SampleRow(
                    s.pk,
                    s.item.task.key,
                    s.item.key,
                    deployment.generated_samples_per_item,
                    s.sample_index,
                    s.replaces_id,
                    s.excluded_at is not None,
                )
                for s in rows
            ),
            study_seed=study.seed,
            n_rated=deployment.rated_samples,
        )
    return rated


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
        "generation_round": s.generation_round,
        "finished": s.finished,
        "ends_mid_word": s.ends_mid_word,
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


# The participants table's fixed columns (README.md, "Launching a study on Prolific", step 7);
# then one ``check_<n>_response`` / ``check_<n>_passed`` pair per attention check and one
# ``debrief_<key>`` column per debrief question. ``rater`` is the ratings table's ``rater``: the join key.
PARTICIPANT_COLUMNS = [
    "rater",
    "prolific_pid",
    "prolific_study_id",
    "prolific_session_id",
    "deployment",
    "step",
    "started_at",
    *(f"{step}_at" for step in Participant.Step.values if step != Participant.Step.CONSENT),
    "last_seen_at",
    "pages_rated",
    "ratings",
    "pilot",
    "simulated",
    "speeding",
    "partial",
    "returned",
    "withdrawn",
    "withdrawal_reason",
    "attention_failures",
    "flags",
    "completion_code",
]


def export_participants_frame(*, study: Study):
    """One row per participation: Prolific ids, steps and their times, flags, attention-check
    and debrief answers, the code given. Three queries whatever the study's size."""
    import pandas as pd

    # The deployment each kept from their slot (a released slot no longer names its rater).
    participants = list(
        Participant.objects.filter(study=study).select_related("deployment").order_by("started_at", "pk")
    )
    counts: dict[int, tuple[int, int]] = {
        participant_id: (n_ratings, n_pages)
        for participant_id, n_ratings, n_pages in Rating.objects.filter(participant__study=study)
        .values("participant_id")
        .annotate(ratings=Count("pk"), pages=Count("page_index", distinct=True))
        .values_list("participant_id", "ratings", "pages")
    }
    answers: dict[tuple[int, int], tuple[str, bool]] = {
        (participant_id, index): (response, passed)
        for participant_id, index, response, passed in AttentionCheckResponse.objects.filter(
            participant__study=study
        ).values_list("participant_id", "check_index", "response", "passed")
    }
    checks = [check.index for check in study_attention_checks(study=study)]
    questions = {question.key: question.kind for question in study_debrief_questions(study=study)}
    for participant in participants:
        for key in participant.debrief or {}:
            questions.setdefault(str(key), "text")  # answered under a question since removed
    records = [
        _participant_record(
            p, study=study, deployment=p.deployment.slug if p.deployment else "", counts=counts.get(p.pk, (0, 0)),
            checks={index: answers.get((p.pk, index), (None, None)) for index in checks}, questions=questions,
        )
        for p in participants
    ]  # fmt: skip
    check_columns = [f"check_{index + 1}_{part}" for index in checks for part in ("response", "passed")]
    frame = pd.DataFrame.from_records(
        records, columns=[*PARTICIPANT_COLUMNS, *check_columns, *(f"debrief_{key}" for key in questions)]
    )
    for column in (c for c in PARTICIPANT_COLUMNS if c.endswith("_at")):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for key, kind in questions.items():
        if kind == "number":  # a float column even when nobody answered (Parquet keeps the type)
            frame[f"debrief_{key}"] = pd.to_numeric(frame[f"debrief_{key}"]).astype(float)
    return frame


def _participant_record(
    p: Participant,
    *,
    study: Study,
    deployment: str,
    counts: tuple[int, int],
    checks: dict[int, tuple[str | None, bool | None]],
    questions: dict[str, str],
) -> dict[str, Any]:
    """One row of the participants table (``PARTICIPANT_COLUMNS``, then checks and debrief answers)."""
    flags = list(p.flags or [])
    times = p.step_times or {}
    n_ratings, n_pages = counts
    record: dict[str, Any] = {
        "rater": p.token,
        "prolific_pid": p.prolific_pid,
        "prolific_study_id": p.prolific_study_id,
        "prolific_session_id": p.prolific_session_id,
        "deployment": deployment,
        "step": p.step,
        "started_at": p.started_at,
        **{f"{step}_at": times.get(step) for step in Participant.Step.values if step != Participant.Step.CONSENT},
        "last_seen_at": p.last_seen_at,
        "pages_rated": n_pages,
        "ratings": n_ratings,
        "pilot": p.pilot,
        "simulated": p.simulated,
        "speeding": SPEEDING_FLAG in flags,
        "partial": PARTIAL_FLAG in flags,
        "returned": RETURNED_FLAG in flags,
        "withdrawn": p.withdrawn_at is not None,
        "withdrawal_reason": p.withdrawal_reason,
        "attention_failures": p.attention_failures,
        "flags": flags_text(flags),
        "completion_code": participant_ending_code(study=study, step=p.step, flags=flags),
    }
    for index, (response, passed) in checks.items():
        record[f"check_{index + 1}_response"] = response
        record[f"check_{index + 1}_passed"] = passed
    for key, kind in questions.items():
        record[f"debrief_{key}"] = _debrief_cell((p.debrief or {}).get(key), kind)
    return record


def _debrief_cell(value: Any, kind: str) -> Any:
    """A debrief answer in its question's column type: a number question's as a float, others as text."""
    if value is None or value == "":
        return None
    if kind == "number":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return str(value)


def flags_text(flags: Any) -> str:
    """A rater's flags as one export cell ("speeding;partial")."""
    if not flags:
        return ""
    if isinstance(flags, list | tuple):
        return ";".join(str(flag) for flag in flags)
    if isinstance(flags, dict):
        return ";".join(f"{k}={v}" for k, v in flags.items())
    return str(flags)


# The export's tables, by name: what the dashboard's export links and ``manage.py export_study`` give.
EXPORT_FRAMES = {
    "ratings": export_ratings_frame,
    "stimuli": export_stimuli_frame,
    "participants": export_participants_frame,
}
EXPORT_FORMATS = ("csv", "parquet")


def export_write(*, study: Study, out_dir: str | Path) -> dict[str, Path]:
    """Write every export table as CSV and Parquet into ``out_dir`` (documented in README.md, "The export")."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, build in EXPORT_FRAMES.items():
        frame = build(study=study)
        for fmt in EXPORT_FORMATS:
            path = out_dir / f"{study.slug}-{name}.{fmt}"
            staging = path.with_name(f".{path.name}.tmp")
            export_frame_write(frame, fmt=fmt, target=staging)
            staging.replace(path)  # atomic: a reader never sees half a file
            paths[f"{name}_{fmt}"] = path
    return paths


def export_frame_write(frame, *, fmt: str, target: Any) -> None:
    """The one place an export table becomes a file (``target``: a path or a binary buffer), for
    the dashboard's downloads and ``manage.py export_study`` alike.

    CSV: text cells a spreadsheet would run as a formula are marked (OWASP's rule,
    ``analysis.csv_cells``; ``python -m analysis`` reads them back exactly). Parquet: exact.
    """
    if fmt == "csv":
        frame_csv_write(frame, target)
    else:
        frame.to_parquet(target, index=False)
