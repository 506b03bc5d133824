"""``manage.py demo``: the demo study end to end on this machine, with the embedded model.

Loads ``studies/demo.yaml`` (reusing the study when it is already loaded), generates its
stimuli in this process, computes their metrics, builds the rater slots, opens the study
and prints where to look. Runs again in seconds: finished jobs are not run twice.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from studyapp.celery import app
from studyapp.studies.models import GenerationJob, Study
from studyapp.studies.selectors import automatic_metrics_by_condition
from studyapp.studies.services import StudyLoadError, generation_start, slots_build, study_load_file
from studyapp.studies.spec import SpecError

DEMO_SPEC = settings.BASE_DIR / "studies" / "demo.yaml"


class Command(BaseCommand):
    help = "Load the demo study, generate its stimuli with the embedded model, and print where to look."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the web server listens")
        parser.add_argument("--spec", default=str(DEMO_SPEC), help="the study spec (default: studies/demo.yaml)")

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
        slots = slots_build(study=study)
        Study.objects.filter(pk=study.pk).update(is_open=True)
        self._print_where_to_look(study, slots, options["base_url"].rstrip("/"))

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

    def _print_where_to_look(self, study: Study, slots: dict[str, int] | str, base: str) -> None:
        rater = (
            reverse("rating:entry", args=[study.slug]) + "?PROLIFIC_PID=demo-rater-1&STUDY_ID=demo&SESSION_ID=demo-1"
        )
        slot_line = ", ".join(f"{slug}: {n} slots" for slug, n in slots.items()) if isinstance(slots, dict) else slots
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
