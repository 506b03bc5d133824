"""``manage.py load_study FILE``: check a study spec and load it, all or nothing."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from studyapp.studies.spec import SpecError
from studyapp.studies.study_loading import StudyLoadError, spec_file_parse, study_load_file


class Command(BaseCommand):
    help = "Load a study from a YAML spec. Every problem is listed with its path; nothing is half-loaded."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="the study spec, e.g. studies/demo.yaml")
        parser.add_argument(
            "--researcher", action="append", default=[], metavar="USERNAME", help="give this user access (repeatable)"
        )
        parser.add_argument(
            "--tokens-per-second",
            type=float,
            default=None,
            help="generation throughput per GPU for the plan's GPU-hours (default: measured by earlier jobs)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="check the spec and print its conditions and deployments (a factorial block expanded); write nothing",
        )

    def handle(self, *args, **options) -> None:
        rate = options["tokens_per_second"]
        if rate is not None and not rate > 0:
            raise CommandError("--tokens-per-second must be a positive number", returncode=2)
        try:
            if options["dry_run"]:
                self._dry_run(options["file"])
                return
            study, changed = study_load_file(path=options["file"], researchers=options["researcher"])
        except SpecError as error:
            # One line for the summary (CommandError), the problems listed before it.
            for problem in error.problems:
                self.stderr.write(f"  {problem}")
            raise CommandError(
                f"{error.source}: {len(error.problems)} problem(s) in the spec; nothing was loaded", returncode=2
            ) from None
        except StudyLoadError as error:
            raise CommandError(str(error), returncode=2) from None
        # Workers may run on another machine, so a model missing here is a warning, not an error.
        for model in study.language_models.exclude(source="embedded").order_by("key"):
            if not Path(model.source).expanduser().exists():
                self.stderr.write(
                    f"warning: model {model.key!r}: {model.source} does not exist on this machine "
                    "(fine if the generation workers have it; edit the source in the spec or the admin otherwise)"
                )
        verb = "loaded" if changed else "unchanged (same spec already loaded)"
        self.stdout.write(
            f"{study.slug}: {verb}; spec version {study.spec_version}, sha256 {study.spec_sha256[:12]}, "
            f"{study.deployments.count()} deployments"
        )
        if changed and study.generation_round > 1:
            self.stdout.write(
                f"decoding changed: generation round {study.generation_round} of the same study is queued "
                "(every text generated again with the new settings; the earlier rounds' texts are kept with theirs)"
            )
        from studyapp.studies.plan import format_plan, study_plan

        self.stdout.write("generation plan:\n" + format_plan(study_plan(study=study, tokens_per_second=rate)))

    def _dry_run(self, file: str) -> None:
        """The checked spec's design, with nothing written (``SpecError`` as for a load)."""
        from studyapp.studies.plan import format_design

        spec = spec_file_parse(file)
        self.stdout.write(
            f"{file}: valid (spec version {spec.version}, sha256 {spec.sha256[:12]}); dry run, nothing loaded"
        )
        self.stdout.write(format_design(spec))
