"""The declared page sequence is the flow the rater walks, and every step has exactly one page."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from studyapp.rating.models import Participant
from studyapp.rating.page_sequence import (
    CONTINUE_PAGES,
    ENDINGS,
    IN_PROGRESS,
    PAGE_SEQUENCE,
    step_after,
    step_url_name,
)
from tests.studyapp.rating.helpers import Bot, build_rating_study

Step = Participant.Step


def test_every_step_is_a_page_of_the_sequence_or_an_ending_never_both():
    sequence = [page.step for page in PAGE_SEQUENCE]
    assert len(set(sequence)) == len(sequence)
    assert set(sequence) | ENDINGS == set(Step.values)
    assert not set(sequence) & ENDINGS
    assert set(sequence) - {Step.COMPLETE} == IN_PROGRESS
    assert {Step.INSTRUCTIONS, Step.PRACTICE} == CONTINUE_PAGES
    assert [step_after(step) for step in sequence[:-1]] == sequence[1:]
    with pytest.raises(KeyError):
        step_after(Step.COMPLETE)


@pytest.mark.django_db
def test_the_bot_walks_the_declared_sequence_in_order():
    built = build_rating_study()
    bot = Bot(Client(), built.study.slug, "5f0000000000000000004000")
    done = bot.walk()
    walked = list(dict.fromkeys([*bot.log, bot.step_name(done)]))
    declared = [reverse(page.url_name, args=[built.study.slug]).rstrip("/").split("/")[-1] for page in PAGE_SEQUENCE]
    assert walked == declared


@pytest.mark.django_db
@pytest.mark.parametrize("step", [*(page.step for page in PAGE_SEQUENCE), *sorted(ENDINGS)])
def test_a_rater_on_each_step_is_shown_that_steps_page(step):
    built = build_rating_study()
    bot = Bot(Client(), built.study.slug, "5f0000000000000000004001")
    bot.walk(stop_after_pages=1)  # a slot and a saved page, so every page has what it shows
    Participant.objects.filter(prolific_pid=bot.pid).update(step=step)
    url = reverse(step_url_name(step), args=[built.study.slug])
    response = bot.get(url)
    assert response.status_code == 200, (step, response.status_code)
    # Any other page of the flow sends the rater to this one.
    other = reverse("rating:instructions" if step != Step.INSTRUCTIONS else "rating:consent", args=[built.study.slug])
    assert bot.get(other)["Location"] == url
