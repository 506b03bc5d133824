"""The practice page says where its typical ratings come from: where they were measured, when
the spec says so (``practice.typical_measured_in``), else that they are the researchers' own
estimate; never "raters in earlier studies" for a guess."""

from __future__ import annotations

import pytest
from django.test import Client

from studyapp.studies.spec import rater_pages_check
from tests.studyapp.rating.helpers import Bot, build_rating_study, text_of

pytestmark = pytest.mark.django_db
PILOT = "our pilot of November 2026 (24 raters)"


def _practice_page(practice: dict) -> str:
    """The practice page as a rater receives it (whitespace collapsed)."""
    built = build_rating_study(practice=practice)
    bot = Bot(Client(), built.study.slug, pid="5f0000000000000000030001")
    response = bot.follow(bot.enter())
    while bot.step_name(response) != "practice":
        response = bot.act(response)
    assert response.status_code == 200
    return text_of(response)


def test_typical_ratings_without_a_source_are_called_the_researchers_estimate() -> None:
    page = _practice_page({"typical": {"originality": 40, "surprise": 35}})
    assert "Originality</strong>: you gave <span data-yours></span>; the researchers expect about 40" in page
    assert "about 35 (their estimate, not measured from raters)" in page
    assert "Compare my answers with the researchers' estimates" in page
    assert (
        'data-higher="Higher than their estimate."' in page
        and 'data-close="Close to the researchers\' estimate."' in page
    )
    assert "the estimates are the researchers' guesses, not other raters' answers" in page
    for claim in ("earlier studies", "raters gave about", "Higher than most raters", "how others used the scales"):
        assert claim not in page


def test_measured_typical_ratings_say_where_they_were_measured() -> None:
    page = _practice_page({"typical": {"originality": 40}, "typical_measured_in": PILOT})
    assert f"raters gave about 40 (measured in {PILOT})." in page
    assert "Compare my answers with typical ratings" in page
    assert 'data-higher="Higher than most raters."' in page and "how others used the scales" in page
    assert "researchers" not in page and "estimate" not in page


def test_where_they_were_measured_is_text_in_the_spec_and_the_admin() -> None:
    def check(practice):
        return rater_pages_check(
            practice=practice, attention_checks=[], screen_out_after=None, debrief_questions=[], per_rater=2
        )

    problems, stored = check({"typical": {"originality": 40}, "typical_measured_in": PILOT})
    assert problems == {} and stored["practice"]["typical_measured_in"] == PILOT
    problems, _ = check({"typical": {"originality": 40}, "typical_measured_in": ["a pilot"]})
    assert problems == {"practice": ["practice.typical_measured_in: expected text, got a list"]}
