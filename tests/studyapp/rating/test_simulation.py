"""Simulated raters (``manage.py simulate_raters``) walk the real rater flow and are labelled as simulated."""

from __future__ import annotations

import statistics

import pytest
from django.core.management import CommandError, call_command

from studyapp.rating.models import AttentionCheckResponse, Participant, Rating, Slot
from studyapp.rating.selectors import participant_plan
from studyapp.rating.simulation import RaterModel, SimulationError, raters_simulate
from studyapp.studies.exports import export_ratings_frame
from studyapp.studies.models import Stimulus, new_opaque_token
from tests.factories import ParticipantFactory
from tests.studyapp.rating.helpers import build_rating_study

pytestmark = pytest.mark.django_db
CHECK = {"position": 2, "text": "Attention check: please move the slider all the way to the right.", "expected": 100}
CHOICE_CHECK = {
    "position": 3,
    "text": "Which animal is named: the cat sat.",
    "options": ["dog", "cat"],
    "expected": "cat",
}


def _slots(built) -> int:
    return Slot.objects.filter(deployment__study=built.study).count()


def test_simulated_raters_complete_the_flow_and_are_marked_simulated_in_db_and_export():
    built = build_rating_study(
        n_deployments=2, attention_checks=[CHECK, CHOICE_CHECK], debrief_questions=["How did you decide?"]
    )
    n = _slots(built)
    result = raters_simulate(
        study=built.study, n_raters=n, model=RaterModel(attention_failure_rate=0, abandon_rate=0, seed=3)
    )

    assert result.outcomes == {"complete": n}
    participants = Participant.objects.filter(study=built.study)
    assert participants.count() == n and not participants.filter(simulated=False).exists()
    assert not participants.filter(attention_failures__gt=0).exists()  # attentive raters pass both kinds of check
    assert AttentionCheckResponse.objects.filter(participant__study=built.study, passed=True).count() == 2 * n
    assert set(Slot.objects.filter(deployment__study=built.study).values_list("status", flat=True)) == {"complete"}
    per_rater = built.study.stimuli_per_rater * len(built.dimensions)
    assert result.ratings == Rating.objects.count() == n * per_rater
    frame = export_ratings_frame(study=built.study)
    assert "simulated" in frame.columns and frame["simulated"].all() and len(frame) == n * per_rater
    # The balanced design holds: every stimulus got the same number of ratings.
    assert frame.groupby(["stimulus", "dimension"]).size().nunique() == 1


def test_the_preference_for_the_steered_arm_shows_in_the_scores():
    built = build_rating_study(raters=8, per_rater=4, n_items=4, samples=2)
    raters_simulate(
        study=built.study,
        n_raters=_slots(built),
        model=RaterModel(preference=30, noise_sd=5, attention_failure_rate=0, abandon_rate=0, seed=1),
    )
    frame = export_ratings_frame(study=built.study)
    means = frame.groupby("method")["score"].mean()
    assert means["activation"] - means["base"] > 20
    # Every score is on the slider's scale.
    assert frame["score"].between(0, 100).all()


def test_abandoning_raters_leave_only_the_pages_they_reached():
    built = build_rating_study(attention_checks=[CHECK], debrief_questions=["How did you decide?"])
    result = raters_simulate(
        study=built.study, n_raters=_slots(built), model=RaterModel(abandon_rate=1, attention_failure_rate=0, seed=5)
    )

    assert result.abandoned == _slots(built) and result.outcomes == {"rating": _slots(built)}
    for participant in Participant.objects.filter(study=built.study):
        plan = participant_plan(participant=participant)
        # What a person who closed the tab leaves: the pages before the one they left on, nothing after.
        assert plan.done == set(range(len(plan.done)))
        assert len(plan.done) < len(plan.pages)
        assert participant.completed_at is None and participant.debrief == {}
        rated_pages = [page for page in plan.pages if page.index in plan.done and page.stimulus is not None]
        assert Rating.objects.filter(participant=participant).count() == len(rated_pages) * len(built.dimensions)
        assert participant.simulated
    assert set(Slot.objects.filter(deployment__study=built.study).values_list("status", flat=True)) == {"active"}


def test_inattentive_raters_fail_the_checks_and_are_screened_out_like_real_ones():
    built = build_rating_study(attention_checks=[CHECK, CHOICE_CHECK], attention_screen_out_after=2)
    result = raters_simulate(
        study=built.study, n_raters=2, model=RaterModel(attention_failure_rate=1, abandon_rate=0, seed=2)
    )
    assert result.inattentive == 2 and result.outcomes == {"screened_out": 2}
    assert set(Participant.objects.values_list("attention_failures", flat=True)) == {2}
    frame = export_ratings_frame(study=built.study)
    assert frame["attention_failed"].all() and frame["simulated"].all()


def test_the_same_seed_resumes_the_same_raters_and_adds_nothing():
    built = build_rating_study(raters=8)
    model = RaterModel(attention_failure_rate=0, abandon_rate=0.5, seed=9)
    first = raters_simulate(study=built.study, n_raters=_slots(built), model=model)
    assert first.outcomes["complete"] and first.outcomes["rating"]  # some finished, some left mid-way
    scores = sorted(Rating.objects.values_list("score", flat=True))
    again = raters_simulate(study=built.study, n_raters=_slots(built), model=model)
    # Those who finished stay finished; those who left do not come back.
    assert again.outcomes == first.outcomes
    assert sorted(Rating.objects.values_list("score", flat=True)) == scores
    assert Participant.objects.count() == _slots(built)
    assert statistics.pstdev(scores) > 0  # scores vary: noise, leniency and text effects are drawn


def test_simulation_refuses_a_study_with_real_participants_or_closed():
    built = build_rating_study()
    ParticipantFactory(study=built.study)
    with pytest.raises(SimulationError, match="real participants"):
        raters_simulate(study=built.study, n_raters=1, model=RaterModel())
    assert not Participant.objects.filter(simulated=True).exists()
    closed = build_rating_study(is_open=False)
    with pytest.raises(SimulationError, match="closed"):
        raters_simulate(study=closed.study, n_raters=1, model=RaterModel())


def test_the_command_reports_what_happened_and_bad_input_exits_2(capsys):
    built = build_rating_study()
    call_command("simulate_raters", "--study", built.study.slug, "--raters", "2", "--abandon", "0", "--seed", "4")
    out = capsys.readouterr().out
    assert "2 complete" in out and "marked simulated" in out
    for argv in (
        ["--study", "nope", "--raters", "2"],
        ["--study", built.study.slug, "--raters", "0"],
        ["--study", built.study.slug, "--raters", "2", "--abandon", "1.5"],
    ):
        with pytest.raises(CommandError) as error:
            call_command("simulate_raters", *argv)
        assert error.value.returncode == 2


def test_every_scale_is_simulated_likert_practice_included(capsys):
    """Issue 20, point 2: a Likert dimension used to fail the practice page (a 30-70 number on a 1-7 scale)."""
    built = build_rating_study(scales=("likert_7", "slider_0_100", "likert_5"))
    n = _slots(built)
    call_command("simulate_raters", "--study", built.study.slug, "--raters", str(n), "--abandon", "0",
                 "--attention-failures", "0")  # fmt: skip
    assert f"{n} complete" in capsys.readouterr().out
    frame = export_ratings_frame(study=built.study)
    assert len(frame) == n * built.study.stimuli_per_rater * 3
    for scale, (low, high) in {"likert_7": (1, 7), "likert_5": (1, 5), "slider_0_100": (0, 100)}.items():
        scores = frame.loc[frame["scale"] == scale, "score"]
        assert len(scores) and scores.between(low, high).all()


def test_a_simulated_rater_that_cannot_go_on_stops_the_command_naming_the_page_and_holds_no_slot():
    # Stored before the admin checked it: a choice check whose expected answer is not among its
    # options. The simulated rater answers as instructed, and the page refuses the answer.
    broken = {"position": 1, "text": "Pick the animal named: horse.", "options": ["dog", "cat"], "expected": "horse"}
    built = build_rating_study(attention_checks=[broken])
    with pytest.raises(CommandError) as raised:
        call_command("simulate_raters", "--study", built.study.slug, "--raters", "3", "--abandon", "0",
                     "--attention-failures", "0")  # fmt: skip
    message = str(raised.value)
    assert raised.value.returncode == 1
    assert "SIMULATED-0-0" in message and "attention-check page" in message
    assert "Select a valid choice" in message and "its slot was freed" in message
    # It stopped at the first stuck rater, and left no slot held: a real rater gets one at once.
    assert Participant.objects.filter(study=built.study).count() == 1
    assert not Slot.objects.filter(deployment__study=built.study).exclude(status=Slot.Status.FREE).exists()
    assert Participant.objects.get().step == Participant.Step.TIMED_OUT


def test_the_same_seed_gives_the_same_scores_in_another_install():
    # Another install draws other random tokens: stimulus tokens and text ids, and participant
    # tokens (which shuffle each rater's pages and scales). The simulated scores must not move.
    built = build_rating_study(raters=8, n_items=4, samples=2)
    model = RaterModel(attention_failure_rate=0.2, abandon_rate=0, seed=5)

    def scores() -> dict[tuple[str, str, int, str], float]:
        raters_simulate(study=built.study, n_raters=_slots(built), model=model)
        return {
            (r.participant.prolific_pid, r.stimulus.condition.key, r.stimulus.item.key, r.stimulus.sample_index,
             r.dimension.key): r.score
            for r in Rating.objects.select_related("participant", "stimulus__condition", "stimulus__item", "dimension")
        }  # fmt: skip

    first = scores()
    pages_first = {p.prolific_pid: p.token for p in Participant.objects.all()}
    Rating.objects.all().delete()
    AttentionCheckResponse.objects.all().delete()
    Slot.objects.update(status=Slot.Status.FREE, participant=None, claimed_at=None, completed_at=None)
    Participant.objects.all().delete()
    for stimulus in Stimulus.objects.all():
        stimulus.token, stimulus.text_id = new_opaque_token(), new_opaque_token()
        stimulus.save(update_fields=["token", "text_id"])
    again = scores()
    assert {p.prolific_pid: p.token for p in Participant.objects.all()}.keys() == pages_first.keys()
    assert all(p.token != pages_first[p.prolific_pid] for p in Participant.objects.all())
    assert again == first and len(first) == _slots(built) * built.study.stimuli_per_rater * len(built.dimensions)
