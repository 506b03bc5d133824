"""Stage 4, the report: ``analysis.write_report`` run by a worker on the study's export.

The report page and the dashboard show the latest ready report's result tables.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from studyapp.studies.exports import export_ratings_frame, export_stimuli_frame
from studyapp.studies.models import Study, StudyReport

logger = logging.getLogger(__name__)


def report_request(*, study: Study, user=None) -> StudyReport:
    """Record a report request and build it in a worker once the request is committed."""
    from studyapp.studies.tasks import report_build_task

    report = StudyReport.objects.create(study=study, requested_by=user)
    transaction.on_commit(lambda: report_build_task.delay(report.pk))
    return report


def report_build(*, report_id: int) -> StudyReport:
    """Export the study and run analysis.write_report on it; the body of ``report_build_task``."""
    report = StudyReport.objects.select_related("study").get(pk=report_id)
    if report.status == StudyReport.Status.READY:
        return report
    out_dir = Path(settings.VAR_DIR) / "reports" / report.study.slug / str(report.pk)
    StudyReport.objects.filter(pk=report.pk).update(status=StudyReport.Status.RUNNING, out_dir=str(out_dir))
    try:
        from analysis.report import write_report

        ratings = export_ratings_frame(study=report.study)
        stimuli = export_stimuli_frame(study=report.study)
        out_dir.mkdir(parents=True, exist_ok=True)
        study = report.study
        html = Path(write_report(ratings, stimuli, out_dir, study=f"{study.title} ({study.slug})"))
        StudyReport.objects.filter(pk=report.pk).update(
            status=StudyReport.Status.READY,
            html_name=str(html.relative_to(out_dir)) if html.is_relative_to(out_dir) else html.name,
            n_ratings=len(ratings),  # collected; results.json's summary says how many were analysed
            finished_at=timezone.now(),
        )
    except Exception as error:  # shown on the report page instead of a traceback
        logger.exception("report %s failed", report.pk)
        StudyReport.objects.filter(pk=report.pk).update(
            status=StudyReport.Status.FAILED,
            error_message=f"{type(error).__name__}: {error}"[:4000],
            finished_at=timezone.now(),
        )
    report.refresh_from_db()
    return report


def latest_ready_report(*, study: Study) -> StudyReport | None:
    return study.reports.filter(status=StudyReport.Status.READY).first()


def report_results(*, report: StudyReport | None) -> dict | None:
    """A ready report's ``results.json``, or None (not ready, or written before results.json existed)."""
    if report is None or report.status != StudyReport.Status.READY or not report.out_dir:
        return None
    try:
        results = json.loads((Path(report.out_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) else None


def report_result_tables(*, results: dict | None) -> str | None:
    """A ready report's result tables (``results.json`` via :func:`report_results`), as analysis formats them."""
    if results is None:
        return None  # a report written before results.json existed: the HTML report has it all
    try:
        from analysis import format_result_tables

        return format_result_tables(results)
    except (ImportError, KeyError, TypeError, ValueError):
        return None


def report_summary(*, results: dict | None) -> dict | None:
    """The report's opening summary (study, ratings analysed of collected, findings, limits), if it has one."""
    summary = (results or {}).get("summary")
    return summary if isinstance(summary, dict) and isinstance(summary.get("data"), dict) else None
