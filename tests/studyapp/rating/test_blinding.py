"""Nothing a rater receives reveals the condition, the model, the method or a database id."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import signing
from django.db import connection
from django.test import Client
from django.utils import timezone

from studyapp.rating.forms import PAGE_SALT
from studyapp.rating.models import AttentionCheckResponse, DeploymentLink, Participant, Rating, Slot, SlotStimulus
from studyapp.rating.selectors import deployment_entry_path
from studyapp.studies.models import (
    Condition,
    Deployment,
    GenerationJob,
    Item,
    LanguageModel,
    RatingDimension,
    Stimulus,
    Study,
    TaskFamily,
)
from studyapp.studies.vocabulary import METHOD_DESCRIPTIONS
from tests.studyapp.rating.helpers import Bot, build_rating_study

pytestmark = pytest.mark.django_db
ID_MODELS = [
    Study, LanguageModel, Condition, TaskFamily, Item, RatingDimension, Deployment, GenerationJob, Stimulus,
    Participant, Slot, SlotStimulus, Rating, AttentionCheckResponse, DeploymentLink,
]  # fmt: skip


@pytest.fixture
def distinctive_ids():
    """Start every id sequence at its own 7-digit range, so that an id found in a page is unmistakable."""
    with connection.cursor() as cursor:
        for n, model in enumerate(ID_MODELS):
            table = model._meta.db_table
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)", [table, 7_310_000 + n * 10_000 + 1]
            )


class Crawl:
    def __init__(self):
        self.responses = []

    def __call__(self, response):
        self.responses.append(response)

    def received(self, response) -> str:
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        cookies = "\n".join(f"{morsel.key}={morsel.value}; {morsel.output()}" for morsel in response.cookies.values())
        body = b"" if getattr(response, "streaming", False) else response.content
        return f"{response.status_code}\n{headers}\n{cookies}\n{body.decode(errors='replace')}"


def _forbidden_words(study) -> set[str]:
    words = set()
    for condition in Condition.objects.filter(study=study):
        words |= {condition.key, condition.method, condition.get_method_display()}
    for model in LanguageModel.objects.filter(study=study):
        words |= {model.key, model.source}
    for deployment in Deployment.objects.filter(study=study):
        words.add(deployment.slug)
    for stimulus in Stimulus.objects.filter(deployment__study=study):
        words |= {stimulus.model_source, stimulus.model_sha256}
    words |= set(METHOD_DESCRIPTIONS) | set(METHOD_DESCRIPTIONS.values())
    # Method names a condition key could be built from, and the paper's own words for them.
    words |= {"steered", "steering", "unsteered", "CreativityNeuro", "smollm2"}
    return {w for w in words if w}


def _ids(study) -> set[str]:
    ids = set()
    for model in ID_MODELS:
        ids |= {str(pk) for pk in model.objects.values_list("pk", flat=True)}
    return ids


def test_every_rater_facing_response_is_blind(distinctive_ids):
    check = {"position": 1, "text": "Attention check: move the slider fully right.", "expected": 100}
    built = build_rating_study(
        n_deployments=2, attention_checks=[check], attention_screen_out_after=2, debrief_questions=["Any comments?"]
    )
    study = built.study
    # Stimuli whose stored prompt names the condition, as a "prompt" baseline's would.
    Stimulus.objects.filter(deployment__study=study).update(prompt="Be creative (activation steering): list uses")
    crawl = Crawl()

    # A full walk through each deployment, pinned and unpinned; a resume; a decline; study full; timeouts.
    for n, path in enumerate([None, deployment_entry_path(deployment=built.deployments[1])]):
        bot = Bot(Client(), study.slug, f"5f00000000000000000010{n:02d}", on_response=crawl)
        bot.walk(path=path)
        bot.follow(bot.enter(path))
    resumer = Bot(Client(), study.slug, "5f0000000000000000001100", on_response=crawl)
    page = resumer.walk(stop_after_pages=1)
    resumer.get(page.request["PATH_INFO"])
    resumer.post(page.request["PATH_INFO"], {"page": "bogus", "stimulus": "nope"})
    resumer.post(page.request["PATH_INFO"], {**resumer.fill(page.content.decode()), "score-originality": "1000"})
    decliner = Bot(Client(), study.slug, "5f0000000000000000001200", on_response=crawl)
    consent = decliner.follow(decliner.enter())
    decliner.follow(decliner.post(consent.request["PATH_INFO"], {"choice": "decline"}))
    Participant.objects.filter(prolific_pid=resumer.pid).update(last_seen_at=timezone.now() - timedelta(hours=2))
    for n in range(6):
        Bot(Client(), study.slug, f"5f00000000000000000013{n:02d}", on_response=crawl).walk()
    resumer.follow(resumer.enter())
    client = Client()
    for url in [
        f"/r/{study.slug}/",
        f"/r/{study.slug}/-/rate/",
        f"/r/{study.slug}/{built.deployments[0].slug}x/?PROLIFIC_PID=a&STUDY_ID=b&SESSION_ID=c",
        f"/r/nope-{study.slug}/?PROLIFIC_PID=a&STUDY_ID=b&SESSION_ID=c",
        "/r/x/-/nothing/",
    ]:
        crawl(client.get(url))

    assert len(crawl.responses) > 60
    forbidden = _forbidden_words(study)
    ids = _ids(study)
    assert {"activation", "base", "smollm2-aut-activation-d0"} <= forbidden and len(ids) > 100
    for response in crawl.responses:
        received = crawl.received(response)
        found = [w for w in forbidden if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", received, re.IGNORECASE)]
        assert not found, (response.request["PATH_INFO"], found)
        leaked_ids = set(re.findall(r"(?<![\w-])\d{7}(?![\w-])", received)) & ids
        assert not leaked_ids, (response.request["PATH_INFO"], leaked_ids)
        for ticket in re.findall(r'name="page" value="([^"]+)"', received):
            assert set(signing.loads(ticket, salt=PAGE_SALT)) <= {"r", "i", "t", "c"}
    # The crawl saw the pages it should have: ratings, checks, debrief, completion, the ends.
    seen = {r.request["PATH_INFO"].rstrip("/").rsplit("/", 1)[-1] for r in crawl.responses}
    assert {"consent", "instructions", "practice", "rate", "debrief", "done", "ended"} <= seen
    assert Rating.objects.filter(participant__study=study).exists()


def test_the_rater_sees_the_item_prompt_not_the_conditions_prompt():
    built = build_rating_study()
    Stimulus.objects.update(prompt="You are a creative genius. What is an unusual use for a thing?")
    bot = Bot(Client(), built.study.slug, "5f0000000000000000001400")
    page = bot.walk(stop_after_pages=0).content.decode()
    assert "What is an unusual use for a thing number" in page
    assert "creative genius" not in page
