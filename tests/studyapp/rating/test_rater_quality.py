"""Issue 13, raters: definitions, speeding, early attention checks, an ending code for each way
out (the partial-completion code after a time-out), the consent page's time estimate, pilots."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from studyapp.rating.models import Participant, Rating
from studyapp.rating.quality import (
    MIN_MEASURED_PAGES,
    PARTIAL_FLAG,
    SPEEDING_FLAG,
    study_rater_quality,
    study_time_estimate,
)
from studyapp.studies.spec import DEFAULT_DEFINITIONS, SpecError, spec_parse
from studyapp.studies.study_loading import study_load
from tests.conftest import REPO_ROOT
from tests.studyapp.rating.helpers import Bot, build_rating_study, text_of

DEMO = REPO_ROOT / "studies" / "demo.yaml"
PAPER = REPO_ROOT / "studies" / "creativityneuro.yaml"
CHECK = {"position": 1, "text": "Attention check: please move the slider all the way to the right.", "expected": 100}


# --- The spec -------------------------------------------------------------------------------


def test_spec_gives_definitions_codes_timing_and_pilot() -> None:
    spec = spec_parse(PAPER.read_text())
    assert {d["key"]: d["definition"] for d in spec.dimensions} == DEFAULT_DEFINITIONS
    study = spec.study
    assert (study["prolific_completion_code"], study["prolific_screen_out_code"]) == ("CNEURO720", "CNEUROSCR")
    assert (study["prolific_no_consent_code"], study["prolific_timed_out_code"]) == ("CNEURONOC", "CNEUROPART")
    assert (study["min_seconds_per_page"], study["expected_seconds_per_page"], study["pilot_mode"]) == (8, 50, False)

    own = DEMO.read_text().replace(
        "    question: How original is this response?",
        "    question: How original is this response?\n    definition: Not seen before.",
    )
    spec = spec_parse(own + "pilot: true\n")
    assert spec.dimensions[0]["definition"] == "Not seen before."
    assert spec.study["pilot_mode"] is True


@pytest.mark.parametrize(
    ("addition", "message"),
    [
        ("pilot: yes please\n", "pilot: expected true or false"),
        ("prolific: {partial_code: X}\n", "prolific.partial_code: unknown field"),
    ],
)
def test_spec_problems_name_their_path(addition: str, message: str) -> None:
    text = DEMO.read_text()
    if addition.startswith("prolific"):
        text = text[: text.index("prolific:")]
    with pytest.raises(SpecError) as raised:
        spec_parse(text + addition)
    assert any(problem.startswith(message) for problem in raised.value.problems), raised.value.problems


def test_a_screen_out_after_most_of_the_work_is_refused() -> None:
    text = PAPER.read_text().replace("    - position: 5\n", "    - position: 8\n")
    with pytest.raises(SpecError) as raised:
        spec_parse(text)
    assert any("comes after 8 of 10 rating pages" in p for p in raised.value.problems), raised.value.problems
    # Without a screen-out the same late check is only a flag, and allowed.
    spec_parse(text.replace("  screen_out_after: 2\n", ""))


@pytest.mark.django_db
def test_loaded_spec_stores_definitions_and_endings() -> None:
    study, _ = study_load(content=DEMO.read_text())
    assert study.prolific_no_consent_code == "DEMO0003" and study.prolific_timed_out_code == "DEMO0004"
    assert study.dimensions.get(key="surprise").definition == DEFAULT_DEFINITIONS["surprise"]


# --- Pages --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_definitions_in_the_instructions_and_on_every_rating_page() -> None:
    built = build_rating_study(attention_checks=[CHECK])
    for dimension in built.dimensions:
        dimension.definition = f"Meaning of {dimension.key}."
        dimension.save()
    bot = Bot(Client(), built.study.slug, "5f0000000000000000013001")
    seen: dict[str, list[str]] = {}
    bot.on_response = lambda r: seen.setdefault(bot.step_name(r), []).append(text_of(r)) if r.status_code == 200 else 0
    bot.walk()
    assert "What the scales mean" in seen["instructions"][0]
    pages = seen["practice"] + seen["rate"]
    assert len(seen["rate"]) == 5  # four stimuli and the attention check
    for body in pages:
        assert "What do the scales mean?" in body
        assert all(f"Meaning of {d.key}." in body for d in built.dimensions)


@pytest.mark.django_db
def test_a_page_faster_than_the_minimum_flags_the_rater_and_is_kept() -> None:
    built = build_rating_study(min_seconds_per_page=30)
    bot = Bot(Client(), built.study.slug, "5f0000000000000000013002")
    assert bot.step_name(bot.walk()) == "done"
    participant = Participant.objects.get(prolific_pid=bot.pid)
    assert SPEEDING_FLAG in participant.flags
    assert Rating.objects.filter(participant=participant).count() == 4 * 3
    quality = study_rater_quality(study=built.study)
    assert (quality.pages, quality.speeding_pages, quality.speeding_raters) == (4, 4, 1)
    assert quality.median_seconds_per_page is not None and quality.median_seconds_per_page < 30

    relaxed = build_rating_study(min_seconds_per_page=0)
    bot = Bot(Client(), relaxed.study.slug, "5f0000000000000000013003")
    bot.walk()
    assert SPEEDING_FLAG not in Participant.objects.get(prolific_pid=bot.pid).flags


def _time_out(built, bot: Bot, *, pages: int):
    page = bot.walk(stop_after_pages=pages)
    Participant.objects.filter(prolific_pid=bot.pid).update(last_seen_at=timezone.now() - timedelta(minutes=31))
    nxt = Bot(Client(), built.study.slug, bot.pid[:-3] + "999")
    nxt.walk(stop_after_pages=0)  # claims the silent rater's slot
    return page


@pytest.mark.django_db
def test_a_rater_timed_out_after_real_work_gets_the_partial_code_and_their_work_stays_flagged() -> None:
    built = build_rating_study(raters=1, per_rater=4, n_items=2, prolific_timed_out_code="PART1AL")
    bot = Bot(Client(), built.study.slug, "5f0000000000000000013010")
    page = _time_out(built, bot, pages=2)
    participant = Participant.objects.get(prolific_pid=bot.pid)
    assert participant.step == Participant.Step.TIMED_OUT and PARTIAL_FLAG in participant.flags
    assert Rating.objects.filter(participant=participant).count() == 2 * 3
    ended = text_of(bot.follow(bot.get(page.request["PATH_INFO"])))
    assert "PART1AL" in ended and "https://app.prolific.com/submissions/complete?cc=PART1AL" in ended
    assert "return the study" not in ended
    assert study_rater_quality(study=built.study).partial_raters == 1


@pytest.mark.django_db
def test_a_rater_timed_out_before_any_rating_is_asked_to_return() -> None:
    built = build_rating_study(raters=1, per_rater=4, n_items=2, prolific_timed_out_code="PART1AL")
    bot = Bot(Client(), built.study.slug, "5f0000000000000000013020")
    page = _time_out(built, bot, pages=0)
    participant = Participant.objects.get(prolific_pid=bot.pid)
    assert participant.step == Participant.Step.TIMED_OUT and PARTIAL_FLAG not in participant.flags
    ended = text_of(bot.follow(bot.get(page.request["PATH_INFO"])))
    assert "PART1AL" not in ended and "return the study" in ended


@pytest.mark.django_db
def test_declining_consent_gives_the_no_consent_code_and_its_redirect() -> None:
    built = build_rating_study(prolific_no_consent_code="N0C0NSENT")
    bot = Bot(Client(), built.study.slug, "5f0000000000000000013030")
    consent = bot.follow(bot.enter())
    ended = text_of(bot.follow(bot.post(consent.request["PATH_INFO"], {"choice": "decline"})))
    assert "https://app.prolific.com/submissions/complete?cc=N0C0NSENT" in ended
    assert "No ratings were recorded" in ended


@pytest.mark.django_db
def test_the_consent_page_estimate_follows_the_design_then_the_measured_median() -> None:
    built = build_rating_study(attention_checks=[CHECK], expected_seconds_per_page=60, raters=6, per_rater=4)
    # 4 stimuli + 1 check + 3 pages' worth of consent, instructions, practice and debrief, at 60 s: 8 minutes.
    estimate = study_time_estimate(study=built.study)
    assert (estimate.minutes, estimate.measured) == (8, False)
    first = Bot(Client(), built.study.slug, "5f0000000000000000013040")
    assert "This study takes about 8 minutes." in text_of(first.follow(first.enter()))

    for n in range(6):
        Bot(Client(), built.study.slug, f"5f00000000000000000131{n:02d}").walk()
    assert Rating.objects.values("participant", "page_index").distinct().count() == 6 * 4 >= MIN_MEASURED_PAGES
    Rating.objects.update(seconds_on_page=15.0)
    # Measured pages take over: (4 + 1 + 3) pages x 15 s = 2 minutes.
    estimate = study_time_estimate(study=built.study)
    assert (estimate.minutes, estimate.seconds_per_page, estimate.measured) == (2, 15.0, True)
    # The first rater, still on the consent page, sees the new estimate on a reload.
    assert "This study takes about 2 minutes." in text_of(first.follow(first.enter()))


@pytest.mark.django_db
def test_errors_and_end_labels_are_tied_to_their_inputs() -> None:
    built = build_rating_study()
    bot = Bot(Client(), built.study.slug, "5f0000000000000000013060")
    page = bot.walk(stop_after_pages=0)
    data = bot.fill(page.content.decode())
    missing = next(name for name in data if name.startswith("score-"))
    data[missing] = ""
    response = bot.post(page.request["PATH_INFO"], data)
    assert response.status_code == 400
    body = response.content.decode()
    slider = body[body.index(f'id="{missing}-slider"') :].split(">", 1)[0]
    assert f'aria-describedby="{missing}-ends {missing}-errors"' in slider and 'aria-invalid="true"' in slider
    assert f'aria-labelledby="{missing}-legend"' in slider
    assert f'<ul class="errorlist" id="{missing}-errors">' in body
    assert '<progress max="4" value="0" aria-labelledby="progress-label">' in body
