"""``manage.py prolific review SLUG``, ``prolific bonuses SLUG --csv FILE`` and
``prolific partial-bonuses SLUG --per-page AMOUNT --out FILE``.

``review``: lists the study's submissions on Prolific, approves the completed ones, asks
those who declined (or found the study full) to return, rejects screened-out ones only with
``--reject-failed-checks``, and frees at once the slots of raters who returned. ``bonuses``:
pays the bonuses of a ``participant_id,amount`` CSV, each to a participant of the study, and
records them in the bonus ledger; a participant the ledger lists already is refused unless
``--again``. ``partial-bonuses`` writes that CSV for the partial completions of the
participants table (nothing is paid). ``--dry-run`` prints what would happen and changes
nothing, here or on Prolific. The token is read from PROLIFIC_API_TOKEN.
"""

from __future__ import annotations

from argparse import ArgumentTypeError
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from studyapp.rating.prolific_api import ProlificClient, ProlificError, bonuses_parse
from studyapp.rating.prolific_ops import (
    BonusRefused,
    bonuses_check,
    bonuses_pay,
    partial_bonuses,
    prolific_plan,
    prolific_plan_apply,
)
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
        bonuses.add_argument(
            "--again", action="store_true", help="pay participants the bonus ledger lists already (a second bonus)"
        )
        partial = sub.add_parser(
            "partial-bonuses", help="write the partial-completion bonus CSV from the participants table"
        )
        partial.add_argument("slug")
        partial.add_argument("--per-page", required=True, type=_amount, help="bonus per rated page, e.g. 0.15")
        partial.add_argument("--out", required=True, type=Path, help="the participant_id,amount CSV to write")

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["slug"]).first()
        if study is None:
            raise CommandError(f"no study {options['slug']!r}", returncode=2)
        if options["action"] == "partial-bonuses":
            self._partial_bonuses(study, per_page=options["per_page"], out=options["out"])
            return
        if not study.prolific_study_id:
            raise CommandError(f"study {study.slug!r} has no prolific.study_id in its spec", returncode=2)
        try:
            if options["action"] == "bonuses":
                self._bonuses(study, options["csv"], dry_run=options["dry_run"], again=options["again"])
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

    def _bonuses(self, study: Study, path: Path, *, dry_run: bool, again: bool) -> None:
        try:
            bonuses = bonuses_parse(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}", returncode=2) from None
        except ValueError as error:
            raise CommandError(f"{path}: {error}", returncode=2) from None
        try:
            participants = bonuses_check(study=study, bonuses=bonuses, again=again)
        except BonusRefused as error:
            raise CommandError(f"{path}: nothing paid: {error}", returncode=2) from None
        total = sum(bonus.amount for bonus in bonuses)
        if dry_run:
            for bonus in bonuses:
                self.stdout.write(f"would pay {bonus.participant} {bonus.amount}")
            self.stdout.write(f"would pay {len(bonuses)} bonuses, {total} in the study's currency (before fees)")
            return
        client = ProlificClient.from_env()
        payment = bonuses_pay(study=study, bonuses=bonuses, participants=participants, client=client)
        self.stdout.write(
            f"paid {len(bonuses)} bonuses: {payment.get('amount')} plus fees {payment.get('fees')} "
            f"= {payment.get('total_amount')} (bulk payment {payment['id']})"
        )

    def _partial_bonuses(self, study: Study, *, per_page: Decimal, out: Path) -> None:
        bonuses = partial_bonuses(study=study, per_page=per_page)
        lines = ["participant_id,amount", *(f"{bonus.participant},{bonus.amount}" for bonus in bonuses)]
        try:
            out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        except OSError as error:
            raise CommandError(f"cannot write {out}: {error.strerror or error}", returncode=2) from None
        total = sum((bonus.amount for bonus in bonuses), Decimal(0))
        self.stdout.write(
            f"{out}: {len(bonuses)} partial-completion bonuses, {total} in the study's currency "
            f"({per_page} per rated page; participants the bonus ledger lists already are left out). "
            f"Pay them with: manage.py prolific bonuses {study.slug} --csv {out}"
        )


def _amount(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ArgumentTypeError(f"{text!r} is not an amount") from None
    if not amount.is_finite() or amount <= 0:
        raise ArgumentTypeError("the amount per page must be above 0")
    return amount
