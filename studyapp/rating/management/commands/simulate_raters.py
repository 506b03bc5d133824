"""``manage.py simulate_raters --study SLUG --raters N``: simulated raters through the real rater flow."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from studyapp.rating.simulation import RaterModel, SimulatedRaterStuck, SimulationError, raters_simulate
from studyapp.studies.models import Study


class Command(BaseCommand):
    help = (
        "Walk N simulated raters through the study's rater pages over HTTP (Django's test client, CSRF on), "
        "scoring from a known model; their participations and ratings are marked simulated."
    )

    def add_arguments(self, parser) -> None:
        defaults = RaterModel()
        parser.add_argument("--study", required=True, help="the study's slug")
        parser.add_argument("--raters", type=int, required=True, help="how many simulated raters")
        parser.add_argument(
            "--preference",
            type=float,
            default=defaults.preference,
            help="points (of 100) added to every steered (non-base) stimulus (default %(default)s)",
        )
        parser.add_argument("--noise", type=float, default=defaults.noise_sd, help="rating noise SD in points")
        parser.add_argument("--rater-sd", type=float, default=defaults.rater_sd, help="rater leniency SD in points")
        parser.add_argument("--text-sd", type=float, default=defaults.text_sd, help="text quality SD in points")
        parser.add_argument(
            "--attention-failures",
            type=float,
            default=defaults.attention_failure_rate,
            help="share of raters who do not read: they fail the attention checks and score at random",
        )
        parser.add_argument(
            "--abandon", type=float, default=defaults.abandon_rate, help="share of raters who leave mid-way"
        )
        parser.add_argument("--seed", type=int, default=0, help="the same seed gives (and resumes) the same raters")
        parser.add_argument(
            "--allow-real-participants",
            action="store_true",
            help="simulate even though real raters took part (their slots are shared)",
        )

    def handle(self, *args, **options) -> None:
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"no study with slug {options['study']!r}", returncode=2)
        try:
            model = RaterModel(
                preference=options["preference"],
                noise_sd=options["noise"],
                rater_sd=options["rater_sd"],
                text_sd=options["text_sd"],
                attention_failure_rate=options["attention_failures"],
                abandon_rate=options["abandon"],
                seed=options["seed"],
            )
            result = raters_simulate(
                study=study,
                n_raters=options["raters"],
                model=model,
                allow_real=options["allow_real_participants"],
            )
        except SimulatedRaterStuck as error:
            # Not the user's input: the study's pages stopped a rater (exit 1, the rater's slot is freed).
            raise CommandError(str(error), returncode=1) from None
        except SimulationError as error:
            raise CommandError(str(error), returncode=2) from None
        outcomes = ", ".join(f"{n} {step}" for step, n in sorted(result.outcomes.items()))
        self.stdout.write(
            f"{options['raters']} simulated raters on {study.slug!r}: {outcomes}; {result.ratings} ratings stored "
            f"({result.inattentive} inattentive, {result.abandoned} left mid-way; all marked simulated)."
        )
