"""``manage.py demo``: the demo study end to end on this machine, with the embedded model.

Loads ``studies/demo.yaml`` (reusing the study when it is already loaded), generates its
stimuli in this process, computes their metrics, builds the rater slots, opens the study,
walks simulated raters through the real rater flow (``simulate_raters``), writes the
analysis report, prints the three result tables and where to look. Runs again in seconds:
finished jobs are not run twice, finished simulated raters are not walked again, and the
report is reused while the ratings are the same.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from studyapp.celery import app
from studyapp.rating.models import Rating
from studyapp.rating.services import SlotPlanError
from studyapp.rating.simulation import RaterModel, SimulationError, raters_simulate
from studyapp.rating.slots import slots_build
from studyapp.studies.generation_jobs import generation_start
from studyapp.studies.metrics import automatic_metrics_by_condition
from studyapp.studies.models import GenerationJob, Study, StudyReport
from studyapp.studies.reports import latest_ready_report, report_build
from studyapp.studies.spec import SpecError
from studyapp.studies.study_loading import StudyLoadError, study_load_file

DEMO_SPEC = settings.BASE_DIR / "studies" / "demo.yaml"


class Command(BaseCommand):
    help = "Load the demo study, generate its stimuli with the embedded model, and print where to look."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the web server listens")
        parser.add_argument("--spec", default=str(DEMO_SPEC), help="the study spec (default: studies/demo.yaml)")
        parser.add_argument(
            "--preference",
            type=float,
            default=RaterModel.preference,
            help="simulated raters' preference for the steered arm, in points of 100 (default %(default)s)",
        )

    def handle(self, *args, **options) -> None:
        try:
            study, changed = study_load_file(path=options["spec"])
        except (SpecError, StudyLoadError) as error:
            raise CommandError(str(error), returncode=2) from None
        self.stdout.write(f"Study {study.slug!r} {'loaded' if changed else 'already loaded'} from {options['spec']}.")

        # The demo runs every task in this process, broker or not: it must work with no services.
        previous = app.conf.task_always_eager
        app.conf.task_always_eager = True
        try:
            started = time.monotonic()
            self.stdout.write(
                "Generating stimuli with the embedded model (SmolLM2-135M) on this machine; "
                "on two CPU cores this takes a few minutes the first time..."
            )
            queued = generation_start(study=study)
            jobs = list(GenerationJob.objects.filter(deployment__study=study).select_related("deployment", "condition"))
        finally:
            app.conf.task_always_eager = previous
        for job in jobs:
            line = f"  {job}: {job.status} {job.done}/{job.total}"
            if job.tokens_per_second:
                line += f", {job.tokens_per_second:.1f} tokens/s"
            self.stdout.write(line + (f"\n    {job.error_message}" if job.error_message else ""))
        if queued:
            self.stdout.write(f"Generation took {time.monotonic() - started:.0f} s.")
        failed = [job for job in jobs if job.status != GenerationJob.Status.SUCCEEDED]
        if failed:
            raise CommandError(
                f"{len(failed)} generation job(s) did not succeed (messages above); fix and run `manage.py demo` again",
                returncode=1,
            )
        self._print_metrics(study)
        slots, slots_said = self._build_slots(study)
        Study.objects.filter(pk=study.pk).update(is_open=True)
        study.refresh_from_db()
        if slots:
            self._simulate_raters(study, sum(slots.values()), options["preference"])
            self._report(study)
        self._print_where_to_look(study, slots_said, options["base_url"].rstrip("/"))

    def _build_slots(self, study: Study) -> tuple[dict[str, int], str]:
        """Slots per rated deployment, and what to say about them (the planner's message if it refused)."""
        try:
            slots = {slug: len(built) for slug, built in slots_build(study=study).items()}
        except SlotPlanError as error:
            return {}, str(error)
        return slots, ", ".join(f"{slug}: {n} slots" for slug, n in slots.items())

    def _simulate_raters(self, study: Study, n_raters: int, preference: float) -> None:
        self.stdout.write(
            f"\nSimulating {n_raters} raters through the rater pages (preference for the steered arm: "
            f"{preference:g} points of 100; `manage.py simulate_raters --help` for the knobs)..."
        )
        try:
            result = raters_simulate(study=study, n_raters=n_raters, model=RaterModel(preference=preference))
        except SimulationError as error:
            self.stdout.write(f"  not simulated: {error}")
            return
        outcomes = ", ".join(f"{n} {step}" for step, n in sorted(result.outcomes.items()))
        self.stdout.write(f"  {outcomes}; {result.ratings} ratings, all marked simulated in the data and the export.")

    def _report(self, study: Study) -> None:
        """Write the analysis report (reusing the last one while the ratings are unchanged) and print its tables."""
        n_ratings = Rating.objects.filter(stimulus__deployment__study=study).count()
        report = latest_ready_report(study=study)
        if report is None or report.n_ratings != n_ratings or not (Path(report.out_dir) / "results.json").is_file():
            self.stdout.write("Writing the analysis report (mixed models, diversity, DAT)...")
            report = report_build(report_id=StudyReport.objects.create(study=study).pk)
        if report.status != StudyReport.Status.READY:
            self.stdout.write(f"  the report failed: {report.error_message}")
            return
        results_path = Path(report.out_dir) / "results.json"
        try:
            from analysis import format_result_tables

            results = json.loads(results_path.read_text())
            tables = format_result_tables(results)
        except (ImportError, OSError, ValueError) as error:
            self.stdout.write(f"  no result tables ({type(error).__name__}: {error})")
        else:
            self.stdout.write("\n" + tables.rstrip())
        self.stdout.write(
            f"\nThe report: {Path(report.out_dir) / report.html_name} (its tables as JSON: {results_path}); "
            "the simulated ratings are labelled as such there."
        )

    def _print_metrics(self, study: Study) -> None:
        """The automatic metrics per condition: what the demo has to show before any human rates."""
        columns = {
            "aut_fluency": "fluency",
            "aut_originality": "originality",
            "dat_score": "DAT",
            "group_mean_pairwise_similarity": "similarity",
            "group_vendi_score": "Vendi",
            "group_distinct_2": "distinct-2",
        }
        rows = automatic_metrics_by_condition(study=study)
        shown = [key for key in columns if any(key in row["metrics"] for row in rows)]
        self.stdout.write(
            "\nAutomatic metrics per condition (means; similarity, Vendi and distinct-2 across a condition's "
            "samples of one item, averaged over items; lower similarity = less mode collapse):"
        )
        header = f"  {'deployment':<18} {'condition':<12} {'n':>3} " + " ".join(f"{columns[k]:>11}" for k in shown)
        self.stdout.write(header)
        for row in rows:
            values = " ".join(f"{row['metrics'][k]:>11.3f}" if k in row["metrics"] else f"{'-':>11}" for k in shown)
            self.stdout.write(f"  {row['deployment']:<18} {row['condition']:<12} {row['n_stimuli']:>3} {values}")

    def _print_where_to_look(self, study: Study, slot_line: str, base: str) -> None:
        rater = (
            reverse("rating:entry", args=[study.slug]) + "?PROLIFIC_PID=demo-rater-1&STUDY_ID=demo&SESSION_ID=demo-1"
        )
        automatic = list(study.deployments.filter(automatic_only=True).values_list("slug", flat=True))
        if automatic:
            slot_line += f"; automatic only, no raters: {', '.join(automatic)}"
        self.stdout.write(
            f"""
The demo study is ready ({slot_line}).

  1. Start the web server:      .venv/bin/python manage.py runserver   (or `make serve`)
  2. Create a researcher login: .venv/bin/python manage.py createsuperuser
  3. Researcher dashboard:      {base}{reverse("studies:dashboard", args=[study.slug])}
     Admin (edit the study):    {base}{reverse("admin:index")}
  4. Rate as a participant:     {base}{rater}
     (change PROLIFIC_PID to rate again as someone else)
  5. Export the data:           .venv/bin/python manage.py export_study {study.slug} --out var/exports
"""
        )
