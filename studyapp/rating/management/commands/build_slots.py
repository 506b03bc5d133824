from django.core.management.base import BaseCommand, CommandError

from studyapp.rating.selectors import deployment_entry_path
from studyapp.rating.services import SlotPlanError
from studyapp.rating.slots import slots_build
from studyapp.studies.models import Deployment, Study


class Command(BaseCommand):
    help = "Build the balanced rating slots of every deployment of a study (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("study_slug")

    def handle(self, *args, study_slug: str, **options):
        study = Study.objects.filter(slug=study_slug).first()
        if study is None:
            raise CommandError(f"no study with slug {study_slug!r}")
        deployments = list(Deployment.objects.filter(study=study).select_related("study").order_by("slug"))
        if not deployments:
            raise CommandError(f"study {study_slug!r} has no deployments")
        try:
            built = slots_build(study=study, deployments=deployments)
        except SlotPlanError as error:
            raise CommandError(str(error)) from error
        for deployment in deployments:
            if deployment.automatic_only:
                self.stdout.write(f"{deployment.slug}: automatic only (no raters, no slots)")
                continue
            link = deployment_entry_path(deployment=deployment)
            self.stdout.write(f"{deployment.slug}: {len(built[deployment.slug])} slots; pinned rater link {link}")
