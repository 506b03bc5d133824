"""``manage.py prolific review SLUG`` and ``manage.py prolific bonuses SLUG --csv FILE``.

``review``: lists the study's submissions on Prolific, approves the completed ones, asks
those who declined (or found the study full) to return, rejects screened-out ones only with
``--reject-failed-checks``, and frees at once the slots of raters who returned. ``bonuses``:
pays the bonuses of a ``participant_id,amount`` CSV. ``--dry-run`` prints what would happen
and changes nothing, here or on Prolific. The token is read from PROLIFIC_API_TOKEN.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from studyapp.rating.prolific_api import ProlificClient, ProlificError, bonuses_parse
from studyapp.rating.prolific_ops import prolific_plan, prolific_plan_apply
from studyapp.studies.models import Study


class Command(BaseCommand):
    help = "Review a study's Prolific submissions, or pay bonuses from a CSV (see README, 'Launching on Prolific')."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        review = sub.add_parser("review", help="approve, ask to return, reject, free slots")
        review.add_argument("slug")
        review.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
        review.add_argument(
            "--reject-failed-checks", action="store_true", help="reject screened-out submissions (FAILED_CHECK)"
        )
        bonuses = sub.add_parser("bonuses", help="pay bonuses from a participant_id,amount CSV")
        bonuses.add_argument("slug")
        bonuses.add_argument("--csv", required=True, type=Path)
        bonuses.add_argument("--dry-run", action="store_true", help="print the bonuses; pay nothing")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["slug"]).first()
        if study is None:
            raise CommandError(f"no study {options['slug']!r}", returncode=2)
        if not study.prolific_study_id:
            raise CommandError(f"study {study.slug!r} has no prolific.study_id in its spec", returncode=2)
        try:
            if options["action"] == "bonuses":
                self._bonuses(study, options["csv"], dry_run=options["dry_run"])
            else:
                self._review(study, dry_run=options["dry_run"], reject=options["reject_failed_checks"])
        except ProlificError as error:
            raise CommandError(f"Prolific: {error}", returncode=2) from None

    def _review(self, study: Study, *, dry_run: bool, reject: bool) -> None:
        client = ProlificClient.from_env()
        plan = prolific_plan(
            study=study, submissions=client.study_submissions(study.prolific_study_id), reject_failed_checks=reject
        )
        prefix = "would " if dry_run else ""
        for line in plan.lines():
            self.stdout.write(prefix + line)
        if not dry_run:
            prolific_plan_apply(plan=plan, client=client)

    def _bonuses(self, study: Study, path: Path, *, dry_run: bool) -> None:
        try:
            bonuses = bonuses_parse(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}", returncode=2) from None
        except ValueError as error:
            raise CommandError(f"{path}: {error}", returncode=2) from None
        total = sum(bonus.amount for bonus in bonuses)
        if dry_run:
            for bonus in bonuses:
                self.stdout.write(f"would pay {bonus.participant} {bonus.amount}")
            self.stdout.write(f"would pay {len(bonuses)} bonuses, {total} in the study's currency (before fees)")
            return
        client = ProlificClient.from_env()
        payment = client.bonuses_set_up(study.prolific_study_id, bonuses)
        client.bonuses_pay(str(payment["id"]))
        self.stdout.write(
            f"paid {len(bonuses)} bonuses: {payment.get('amount')} plus fees {payment.get('fees')} "
            f"= {payment.get('total_amount')} (bulk payment {payment['id']})"
        )
