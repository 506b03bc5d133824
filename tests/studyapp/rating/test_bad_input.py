"""Bad input gets a clear 4xx page or a form error, never a 500, and nothing is half-stored."""

from __future__ import annotations

import pytest
from django.core import signing
from django.test import Client

from studyapp.rating.forms import PAGE_SALT
from studyapp.rating.models import AttentionCheckResponse, Participant, Rating
from studyapp.rating.selectors import participant_plan
from studyapp.studies.models import Stimulus
from tests.studyapp.rating.helpers import Bot, build_rating_study, text_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_rating_page():
    """A rater on their second rating page (one page saved), and another study's stimulus."""
    built = build_rating_study(attention_checks=[{"position": 3, "text": "Check", "expected": 100}])
    other = build_rating_study()
    bot = Bot(Client(), built.study.slug, "5f0000000000000000002000")
    page = bot.walk(stop_after_pages=1)
    data = bot.fill(page.content.decode())
    participant = Participant.objects.get(prolific_pid=bot.pid)
    plan = participant_plan(participant=participant)
    not_mine = Stimulus.objects.filter(deployment=built.deployments[0]).exclude(
        pk__in=[p.stimulus.pk for p in plan.pages if p.stimulus]
    )
    return {
        "bot": bot,
        "url": page.request["PATH_INFO"],
        "data": data,
        "participant": participant,
        "plan": plan,
        "other_slot_token": not_mine.first().token if not_mine.exists() else None,
        "other_study_token": Stimulus.objects.filter(deployment=other.deployments[0]).first().token,
    }


def _ticket(token, index, check=None):
    payload = {"r": token, "i": index, "t": 0}
    if check is not None:
        payload["c"] = check
    return signing.dumps(payload, salt=PAGE_SALT)


def _saved_page_ticket(ctx):
    return _ticket(ctx["participant"].token, min(ctx["plan"].done))


BAD_POSTS = {
    "score above the scale": (lambda c: {**c["data"], "score-originality": "101"}, 400, "less than or equal to 100"),
    "score below the scale": (lambda c: {**c["data"], "score-surprise": "-1"}, 400, "greater than or equal to 0"),
    "score not a number": (lambda c: {**c["data"], "score-creativity": "lots"}, 400, "Enter a whole number"),
    "score as a float string": (lambda c: {**c["data"], "score-creativity": "1e9"}, 400, "Enter a whole number"),
    "slider not moved": (
        lambda c: {k: v for k, v in c["data"].items() if k != "score-originality"},
        400,
        "Please move the slider",
    ),
    "no scores at all": (lambda c: {k: v for k, v in c["data"].items() if not k.startswith("score-")}, 400, "move"),
    "no page ticket": (lambda c: {k: v for k, v in c["data"].items() if k != "page"}, 400, "out of date"),
    "forged page ticket": (lambda c: {**c["data"], "page": c["data"]["page"][:-3] + "abc"}, 400, "out of date"),
    "another rater's ticket": (lambda c: {**c["data"], "page": _ticket("someone-else", 1)}, 400, "out of date"),
    "ticket of a page beyond the plan": (
        lambda c: {**c["data"], "page": _ticket(c["participant"].token, 99)},
        400,
        "out of date",
    ),
    "ticket of a future page": (
        lambda c: {**c["data"], "page": _ticket(c["participant"].token, 2)},
        400,
        "out of date",
    ),
    "check ticket on a rating page": (
        lambda c: {**c["data"], "page": _ticket(c["participant"].token, 1, check=0)},
        400,
        "out of date",
    ),
    "made-up stimulus token": (lambda c: {**c["data"], "stimulus": "AAAAAAAAAAAAAAAA"}, 400, "out of date"),
    "stimulus of another rater's slot": (
        lambda c: {**c["data"], "stimulus": c["other_slot_token"]},
        400,
        "out of date",
    ),
    "stimulus of another study": (lambda c: {**c["data"], "stimulus": c["other_study_token"]}, 400, "out of date"),
    "overlong stimulus token": (lambda c: {**c["data"], "stimulus": "x" * 5000}, 400, "out of date"),
    "empty post": (lambda c: {}, 400, "out of date"),
}


@pytest.mark.parametrize("case", list(BAD_POSTS))
def test_bad_rating_posts_are_refused_and_store_nothing(on_rating_page, case):
    build, status, expected = BAD_POSTS[case]
    before = Rating.objects.count()
    response = on_rating_page["bot"].post(on_rating_page["url"], build(on_rating_page))
    assert response.status_code == status, text_of(response)[:2000]
    assert expected in text_of(response)
    assert Rating.objects.count() == before
    # The rater can still go on and finish.
    bot = on_rating_page["bot"]
    assert bot.step_name(bot.walk()) == "done"


def test_a_replayed_saved_page_changes_nothing(on_rating_page):
    ctx = on_rating_page
    saved = {(r.stimulus_id, r.dimension_id): r.score for r in Rating.objects.all()}
    first_page = ctx["plan"].pages[min(ctx["plan"].done)]
    replay = {**ctx["data"], "page": _saved_page_ticket(ctx), "stimulus": first_page.stimulus.token}
    replay.update({k: "0" for k in replay if k.startswith("score-")})
    response = ctx["bot"].post(ctx["url"], replay)
    assert response.status_code == 303
    assert {(r.stimulus_id, r.dimension_id): r.score for r in Rating.objects.all()} == saved
    # A replay of a saved page with invalid data is harmless too.
    response = ctx["bot"].post(ctx["url"], {**replay, "score-originality": "500"})
    assert response.status_code == 303 and Rating.objects.count() == len(saved)


def test_bad_attention_check_answers_are_form_errors(on_rating_page):
    bot = on_rating_page["bot"]
    page = bot.walk(stop_after_pages=2)  # pages 1 and 2; the check comes after three rating pages
    assert "Check" in text_of(page)
    data = bot.fill(page.content.decode())
    for bad, message in [("", "Please move the slider"), ("150", "less than or equal to 100"), ("x", "whole number")]:
        response = bot.post(page.request["PATH_INFO"], {**data, "response": bad})
        assert response.status_code == 400 and message in text_of(response)
    assert not AttentionCheckResponse.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "expected"),
    [
        ("get", "/r/no-such-study/?PROLIFIC_PID=a&STUDY_ID=b&SESSION_ID=c", None, 404, "Study not found"),
        ("get", "/r/{study}/no-such-deployment/?PROLIFIC_PID=a&STUDY_ID=b&SESSION_ID=c", None, 404, "not found"),
        ("get", "/r/{study}/-/rate/", None, 403, "Please start from your study link"),
        ("post", "/r/{study}/-/rate/", {"page": "x"}, 403, "Please start from your study link"),
        ("get", "/r/no-such-study/-/rate/", None, 404, "Study not found"),
        ("get", "/r/{study}/-/nowhere/", None, 404, "Page not found"),
        ("get", "/r/{study}/-/preview/extra/", None, 404, "Page not found"),
        ("post", "/r/{study}/?PROLIFIC_PID=a&STUDY_ID=b&SESSION_ID=c", {}, 405, ""),
    ],
)
def test_wrong_addresses_get_friendly_pages(method, path, data, status, expected):
    built = build_rating_study()
    response = getattr(Client(), method)(path.format(study=built.study.slug), data or {})
    assert response.status_code == status
    assert expected in text_of(response)
    assert not Participant.objects.exists()


def test_a_rater_of_one_study_cannot_post_into_another():
    one, two = build_rating_study(), build_rating_study()
    bot = Bot(Client(), one.study.slug, "5f0000000000000000002100")
    page = bot.walk(stop_after_pages=0)
    data = bot.fill(page.content.decode())
    response = bot.post(f"/r/{two.study.slug}/-/rate/", data)
    assert response.status_code == 403 and not Rating.objects.exists()


def test_bad_consent_and_debrief_posts_are_form_errors():
    built = build_rating_study(
        debrief_questions=[{"key": "age", "question": "Your age?", "type": "number", "required": True}, "Comments?"]
    )
    bot = Bot(Client(), built.study.slug, "5f0000000000000000002200")
    consent = bot.follow(bot.enter())
    response = bot.post(consent.request["PATH_INFO"], {"choice": "maybe"})
    assert response.status_code == 400 and "Select a valid choice" in text_of(response)
    assert Participant.objects.get(prolific_pid=bot.pid).step == Participant.Step.CONSENT
    response = bot.follow(bot.post(consent.request["PATH_INFO"], {"choice": "agree"}))
    while bot.step_name(response) != "debrief":
        response = bot.act(response)
    url = response.request["PATH_INFO"]
    for bad in [{}, {"debrief-age": "old"}, {"debrief-age": "30", "debrief-q2": "x" * 3000}]:
        reply = bot.post(url, bad)
        assert reply.status_code == 400 and "errorlist" in reply.content.decode()
    assert Participant.objects.get(prolific_pid=bot.pid).step == Participant.Step.DEBRIEF
    done = bot.follow(bot.post(url, {"debrief-age": "30", "debrief-q2": "fine"}))
    assert bot.step_name(done) == "done"
    assert Participant.objects.get(prolific_pid=bot.pid).debrief == {"age": 30.0, "q2": "fine"}


def test_posting_a_page_of_an_earlier_step_just_sends_the_rater_on():
    built = build_rating_study()
    bot = Bot(Client(), built.study.slug, "5f0000000000000000002300")
    page = bot.walk(stop_after_pages=0)
    for step in ["consent", "instructions", "practice", "debrief"]:
        response = bot.post(f"/r/{built.study.slug}/-/{step}/", {"choice": "decline"})
        assert response.status_code == 303 and response["Location"].endswith("/-/rate/")
    assert Participant.objects.get(prolific_pid=bot.pid).step == Participant.Step.RATING
    assert bot.get(page.request["PATH_INFO"]).status_code == 200


def test_a_page_shown_again_with_errors_keeps_its_first_time_stamp(on_rating_page):
    ctx = on_rating_page
    response = ctx["bot"].post(ctx["url"], {**ctx["data"], "score-originality": "101"})
    assert response.status_code == 400
    assert f'name="page" value="{ctx["data"]["page"]}"' in response.content.decode()
