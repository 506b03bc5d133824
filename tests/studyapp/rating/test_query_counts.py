"""The rating page and its POST cost the same number of queries whatever the design's size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.studyapp.rating.helpers import Bot, build_rating_study

pytestmark = pytest.mark.django_db

SMALL = {"n_items": 4, "raters": 4, "per_rater": 4}
LARGE = {
    "n_items": 30,
    "samples": 2,
    "raters": 30,
    "per_rater": 20,
    "n_deployments": 3,
    "dimension_keys": ("originality", "surprise", "creativity", "usefulness", "fluency", "humour"),
    "attention_checks": [{"position": p, "text": "Check", "expected": 100} for p in (2, 9, 15)],
}


def _measure(design: dict, pid: str) -> dict[str, int]:
    built = build_rating_study(**design)
    bot = Bot(Client(), built.study.slug, pid)
    page = bot.walk(stop_after_pages=1)  # one page saved: a typical mid-study request
    url = page.request["PATH_INFO"]
    with CaptureQueriesContext(connection) as get_queries:
        page = bot.get(url)
    assert page.status_code == 200 and 'name="stimulus"' in page.content.decode()
    data = bot.fill(page.content.decode())
    with CaptureQueriesContext(connection) as post_queries:
        response = bot.post(url, data)
    assert response.status_code == 303
    return {"get": len(get_queries), "post": len(post_queries)}


def test_rating_page_and_post_queries_do_not_grow_with_the_design():
    small = _measure(SMALL, "5f0000000000000000003000")
    large = _measure(LARGE, "5f0000000000000000003001")
    assert small == large
    # GET: session, participant with study, slot with its planned stimuli, dimensions,
    # answered pages (one UNION), touch
    assert small["get"] <= 6
    # POST: session, participant with study, dimensions; then in one transaction (a savepoint
    # here, inside the test's): the slot with its planned stimuli, read with its row lock in
    # one query, answered pages, the page's ratings (one INSERT). The plan is read once, under
    # the lock, not also before it; the touch is left to the GET the POST redirects to.
    assert small["post"] <= 8


def test_the_last_page_costs_the_same_as_any_other():
    counts = []
    for n, design in enumerate([SMALL, {**SMALL, "n_items": 10, "raters": 10, "per_rater": 8}]):
        built = build_rating_study(**design)
        bot = Bot(Client(), built.study.slug, f"5f00000000000000000031{n:02d}")
        page = bot.walk(stop_after_pages=design["per_rater"] - 1)
        with CaptureQueriesContext(connection) as queries:
            response = bot.post(page.request["PATH_INFO"], bot.fill(page.content.decode()))
        assert response["Location"].endswith("/-/debrief/")
        counts.append(len(queries))
    assert counts[0] == counts[1]
