"""Builders for rating tests and an oTree-style bot that walks a rater through the flow by HTTP."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

from studyapp.rating.slots import slots_build
from studyapp.studies.spec import debrief_questions_stored
from tests.factories import (
    ConditionFactory,
    DeploymentFactory,
    GenerationJobFactory,
    ItemFactory,
    LanguageModelFactory,
    RatingDimensionFactory,
    StimulusFactory,
    StudyFactory,
    TaskFamilyFactory,
)

DIMENSIONS = ("originality", "surprise", "creativity")


@dataclass
class RatingStudy:
    study: object
    deployments: list = field(default_factory=list)
    conditions: list = field(default_factory=list)
    models: list = field(default_factory=list)
    dimensions: list = field(default_factory=list)


def build_rating_study(
    *,
    n_deployments: int = 1,
    n_items: int = 4,
    samples: int = 1,
    raters: int = 4,
    per_rater: int = 4,
    methods: tuple[str, ...] = ("base", "activation"),
    scales: tuple[str, ...] | None = None,
    build_slots: bool = True,
    dimension_keys: tuple[str, ...] = DIMENSIONS,
    **study_fields,
) -> RatingStudy:
    """A study whose names are deliberately revealing, so the blinding crawl has something to find."""
    # Bots answer at once: speeding flags only where a test asks for a minimum time.
    study_fields.setdefault("min_seconds_per_page", 0)
    # Stored as the spec loader stores them.
    study_fields["debrief_questions"] = debrief_questions_stored(study_fields.get("debrief_questions", []))
    study = StudyFactory(raters_per_deployment=raters, stimuli_per_rater=per_rater, **study_fields)
    built = RatingStudy(study=study)
    for position, key in enumerate(dimension_keys):
        scale = scales[position % len(scales)] if scales else "slider_0_100"
        built.dimensions.append(RatingDimensionFactory(study=study, key=key, position=position, scale=scale))
    task = TaskFamilyFactory(study=study, key="aut", template="What is an unusual use for a {item}?")
    items = [ItemFactory(task=task, key=f"obj{i}", text=f"thing number {i}") for i in range(n_items)]
    for d in range(n_deployments):
        model = LanguageModelFactory(study=study, key=f"smollm2-135m-d{d}", source="embedded")
        built.models.append(model)
        # The small designs of these tests put one item under both conditions before each rater
        # (the loader refuses that unless allowed: tests/studyapp/rating/test_per_deployment_design.py).
        deployment = DeploymentFactory(
            study=study, slug=f"smollm2-aut-activation-d{d}", model=model, task=task, allow_paired_items=True
        )
        for method in methods:
            condition = ConditionFactory(study=study, model=model, key=f"{method}-cond-d{d}", method=method)
            deployment.conditions.add(condition)
            built.conditions.append(condition)
            job = GenerationJobFactory(deployment=deployment, condition=condition)
            for item in items:
                for s in range(samples):
                    StimulusFactory(
                        job=job, item=item, sample_index=s, text=f"Response {item.key}/{s} under test, line two."
                    )
        built.deployments.append(deployment)
    if build_slots:
        slots_build(study=study)
    return built


def prolific_query(pid: str, **overrides) -> str:
    params = {"PROLIFIC_PID": pid, "STUDY_ID": "prolific-study-1", "SESSION_ID": f"sess-{pid}"}
    params.update(overrides)
    return urlencode({k: v for k, v in params.items() if v is not None})


class _FormParser(HTMLParser):
    """The first POST form of a page: its inputs as (name, type, value, checked)."""

    def __init__(self):
        super().__init__()
        self.in_form = False
        self.seen = False
        self.inputs: list[dict] = []
        self.buttons: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "").lower() == "post" and not self.seen:
            self.in_form = self.seen = True
        elif self.in_form and tag in {"input", "textarea"}:
            self.inputs.append({"tag": tag, **attrs})
        elif self.in_form and tag == "button":
            self.buttons.append(attrs)

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False


def parse_form(html: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(html)
    return parser


@dataclass
class Bot:
    """Walks one rater through the flow with Django's test client, like an oTree bot.

    ``answer`` chooses each score; every response passes through ``on_response`` so a
    test can inspect everything the rater receives.
    """

    client: object
    study_slug: str
    pid: str
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    on_response: object = None
    attention_answer: str | None = None
    log: list = field(default_factory=list)

    def _seen(self, response):
        if self.on_response:
            self.on_response(response)
        return response

    def get(self, url):
        return self._seen(self.client.get(url))

    def post(self, url, data):
        return self._seen(self.client.post(url, data))

    def enter(self, path: str | None = None, **overrides):
        path = path or f"/r/{self.study_slug}/"
        return self.get(f"{path}?{prolific_query(self.pid, **overrides)}")

    def follow(self, response, limit: int = 10):
        for _ in range(limit):
            if response.status_code not in (301, 302, 303):
                return response
            response = self.get(response["Location"])
        raise AssertionError("redirect loop")

    def step_name(self, response) -> str:
        return urlsplit(response.request["PATH_INFO"]).path.rstrip("/").split("/")[-1]

    def fill(self, html: str) -> dict:
        form = parse_form(html)
        data: dict[str, str] = {}
        radios: dict[str, list[str]] = {}
        for field_ in form.inputs:
            name, kind = field_.get("name"), field_.get("type", "text")
            if field_["tag"] == "textarea" and name:
                data[name] = "I read each one carefully."
            elif not name:
                continue
            elif kind == "radio":
                radios.setdefault(name, []).append(field_["value"])
            elif name == "response" and kind == "hidden" and self.attention_answer is not None:
                data[name] = self.attention_answer
            elif name == "response" and kind == "hidden":
                data[name] = "100"
            elif name.startswith("score-") and kind == "hidden":
                data[name] = str(self.rng.randint(0, 100))
            elif kind == "hidden":
                data[name] = field_.get("value", "")
        for name, values in radios.items():
            own = name == "response" and self.attention_answer
            data[name] = self.attention_answer if own else self.rng.choice(values)
        return data

    def act(self, response):
        """Answer the page the response shows; returns the next (followed) response."""
        step = self.step_name(response)
        url = response.request["PATH_INFO"]
        self.log.append(step)
        if step == "consent":
            return self.follow(self.post(url, {"choice": "agree"}))
        if step in {"instructions"}:
            return self.follow(self.post(url, {}))
        if step in {"practice", "rate", "debrief"}:
            return self.follow(self.post(url, self.fill(response.content.decode())))
        raise AssertionError(f"bot does not know what to do on {step}")

    def walk(self, *, stop_after_pages: int | None = None, path: str | None = None):
        response = self.follow(self.enter(path))
        rated = 0
        while self.step_name(response) not in {"done", "ended"}:
            assert response.status_code == 200, (response.status_code, response.content[:500])
            if self.step_name(response) == "rate":
                if stop_after_pages is not None and rated >= stop_after_pages:
                    return response
                rated += 1
            response = self.act(response)
        return response


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def wait_for_progress(page, prefix: str) -> None:
    """Wait (Playwright) until the rater page's progress line starts with ``prefix``, e.g. "Page 2 of 4".

    ``?.``: while the next page loads, the page still on screen may have no progress line, and
    a predicate that throws fails the wait at once instead of waiting on.
    """
    page.wait_for_function("(prefix) => document.querySelector('.progress')?.innerText.startsWith(prefix)", arg=prefix)


PANEL_PASSWORD = "a-long-test-password"


def researcher_client(study):
    """A test client logged in as a staff researcher of ``study`` (the researcher panel's persona)."""
    from django.test import Client

    from tests.factories import ResearcherFactory

    researcher = ResearcherFactory()
    study.researchers.add(researcher)
    client = Client()
    client.force_login(researcher)
    return client


def panel_password(user):
    """Give ``user`` the password :func:`panel_login` types (before the browser starts: Playwright's
    event loop forbids database writes in the test's thread)."""
    user.set_password(PANEL_PASSWORD)
    user.save()
    return user


def panel_login(page, base_url: str, *, username: str, next_path: str) -> None:
    """Log a user with :func:`panel_password` in through the admin's login form in a Playwright
    page, which then opens ``next_path``."""
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PANEL_PASSWORD)
    page.click("input[type=submit]")
