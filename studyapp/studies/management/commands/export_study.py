"""``manage.py export_study SLUG --out DIR``: ratings, stimuli and participants as CSV and Parquet."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from studyapp.studies.exports import export_write
from studyapp.studies.models import Study


class Command(BaseCommand):
    help = (
        "Write a study's ratings (long format), stimuli and participants as CSV and Parquet; "
        "see 'The export' in README.md."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--out", default="var/exports", help="output folder (default: var/exports)")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["slug"]).first()
        if study is None:
            known = ", ".join(Study.objects.order_by("slug").values_list("slug", flat=True)) or "none"
            raise CommandError(f"no study {options['slug']!r} (studies: {known})", returncode=2)
        try:
            paths = export_write(study=study, out_dir=options["out"])
        except OSError as error:
            raise CommandError(f"cannot write to {options['out']}: {error.strerror or error}", returncode=2) from None
        for path in paths.values():
            self.stdout.write(str(path))
