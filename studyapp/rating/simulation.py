"""Simulated raters that walk the real rater flow over HTTP (``manage.py simulate_raters``).

Each simulated rater is a Django test client with CSRF checks on: it opens the study's
Prolific link, consents, reads the instructions, answers the practice page, rates every
page it is given and answers the debrief, exactly as a browser would; the views, forms,
services and slot claims are the production ones. Only two things are not what a person
does: the participation is marked ``simulated`` right after entry (and stays so in the
export), and the rater's scores come from a known model instead of judgement:

    score = 50 + rater leniency + text effect + preference x [steered] + noise   (0-100 points)

clipped and rounded to the dimension's scale (Likert scales get the same model rescaled).
The text effect is keyed by what the text is (condition, item, sample, round), so a base
text copied into two deployments looks equally good in both. An inattentive rater fails
every attention check and scores at random; an abandoning rater stops on a random rating
page and leaves the tab open (their slot times out as a real one would). Everything is
seeded, and each score's draws are keyed by the rater and what is rated, never by the
random tokens of an install or the page order they shuffle: a seed gives the same scores
in every run.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.test import Client
from django.urls import reverse

from studyapp.rating import services
from studyapp.rating.forms import page_ticket_load
from studyapp.rating.models import Participant, Rating
from studyapp.rating.page_sequence import IN_PROGRESS
from studyapp.rating.quality import study_rating_pages
from studyapp.rating.selectors import study_attention_checks
from studyapp.studies.models import RatingDimension, Stimulus, Study


class SimulationError(ValueError):
    """The simulation cannot run on this study (closed, real raters present, ...)."""


class SimulatedRaterStuck(SimulationError):
    """A simulated rater could not go on: a page refused its answer or answered with an error.

    The message names the rater, the page and the reason; the rater's slot has been freed.
    """


# What a stuck rater's page is called in a message, by the last part of its URL.
PAGE_NAMES = {"rate": "rating", "consent": "consent", "instructions": "instructions", "practice": "practice",
              "debrief": "debrief"}  # fmt: skip
STUCK_FLAG = "simulation_stuck"


@dataclass(frozen=True)
class RaterModel:
    """How simulated raters score; points are on the 0-100 scale."""

    preference: float = 8.0  # added to every non-base (steered) condition
    noise_sd: float = 15.0
    rater_sd: float = 8.0
    text_sd: float = 6.0
    attention_failure_rate: float = 0.05  # share of raters who do not read (fail checks, score at random)
    abandon_rate: float = 0.05  # share of raters who leave on a random rating page
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("attention_failure_rate", "abandon_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise SimulationError(f"{name.replace('_', '-')} must be between 0 and 1")
        for name in ("noise_sd", "rater_sd", "text_sd"):
            if getattr(self, name) < 0:
                raise SimulationError(f"{name.replace('_', '-')} must be at least 0")


@dataclass
class SimulationResult:
    outcomes: Counter = field(default_factory=Counter)  # final step of each rater: complete, rating, ...
    ratings: int = 0
    inattentive: int = 0
    abandoned: int = 0


class _Form(HTMLParser):
    """The first POST form of a page: its inputs (name, type, value) and radio options."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = self.seen = False
        self.values: dict[str, str] = {}
        self.radios: dict[str, list[str]] = {}
        self.textareas: list[str] = []
        self.numbers: list[str] = []
        self.selects: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        if tag == "form" and a.get("method", "").lower() == "post" and not self.seen:
            self.inside = self.seen = True
        elif not self.inside or (not a.get("name") and tag != "option"):
            return
        elif tag == "input" and a.get("type") == "radio":
            self.radios.setdefault(a["name"], []).append(a.get("value", ""))
        elif tag == "input" and a.get("type") == "number":
            self.numbers.append(a["name"])
        elif tag == "input" and a.get("type") not in ("submit", "button", "range"):
            self.values[a["name"]] = a.get("value", "")
        elif tag == "textarea":
            self.textareas.append(a["name"])
        elif tag == "select":
            self._select = a["name"]
            self.selects[a["name"]] = []
        elif tag == "option" and self._select and a.get("value"):
            self.selects[self._select].append(a["value"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None


def _form(html: str) -> _Form:
    parser = _Form()
    parser.feed(html)
    return parser


class _SimulatedRater:
    def __init__(self, *, study: Study, pid: str, index: int, model: RaterModel, rng: random.Random) -> None:
        self.study = study
        self.pid = pid
        self.model = model
        self.rng = rng
        # Each simulated rater has its own loopback address (the requests never leave the
        # process): the per-address entry limit is for people, and one host running the
        # whole simulation must not trip it.
        address = f"127.{(index >> 16) & 255}.{(index >> 8) & 255}.{(index & 255) + 1}"
        self.client = Client(enforce_csrf_checks=True, HTTP_HOST=_host(), REMOTE_ADDR=address)
        self.leniency = rng.gauss(0, model.rater_sd)
        self.inattentive = rng.random() < model.attention_failure_rate
        self.abandons = rng.random() < model.abandon_rate
        self.participant: Participant | None = None
        self.dimensions = {d.key: d for d in RatingDimension.objects.filter(study=study)}
        self.checks = study_attention_checks(study=study)

    def walk(self) -> str:
        """Walk the flow from the Prolific link to the end (or to where this rater leaves)."""
        returning = Participant.objects.filter(study=self.study, prolific_pid=self.pid).first()
        # One interrupted by a crash (not by its own leaving) comes back to a page in progress.
        if returning is not None and (self.abandons or returning.step not in IN_PROGRESS):
            return returning.step  # finished, or left for good: a second run changes nothing
        query = urlencode(
            {
                "PROLIFIC_PID": self.pid,
                "STUDY_ID": self.study.prolific_study_id or "simulated",
                "SESSION_ID": f"{self.pid}-session",
            }
        )
        response = self.client.get(f"{reverse('rating:entry', args=[self.study.slug])}?{query}", follow=True)
        self.participant = Participant.objects.filter(study=self.study, prolific_pid=self.pid).first()
        if self.participant is None:
            return "not_admitted"  # closed or full: the entry page said so, nothing was stored
        Participant.objects.filter(pk=self.participant.pk).update(simulated=True)
        stop_after = None
        for _ in range(1000):  # a bound, never reached: every step moves the rater on
            step = urlsplit(response.request["PATH_INFO"]).path.rstrip("/").rsplit("/", 1)[-1]
            if step in ("done", "ended"):
                break
            form = _form(response.content.decode())
            if response.status_code != 200:
                self._stuck(step, response.status_code, response.content.decode(), form)
            if step == "consent":
                data = {"choice": "agree"}
            elif step == "rate":
                if self.abandons and stop_after is None:
                    n_pages = study_rating_pages(study=self.study)
                    stop_after = self.rng.randrange(max(1, n_pages))
                if stop_after is not None and stop_after <= 0:
                    break  # gone: the tab stays open, the slot times out
                stop_after = None if stop_after is None else stop_after - 1
                data = self._rate(form)
            else:  # instructions, practice, debrief
                data = self._answer(form)
            data["csrfmiddlewaretoken"] = form.values.get("csrfmiddlewaretoken", "")
            response = self.client.post(response.request["PATH_INFO"], data, follow=True)
        self.participant.refresh_from_db(fields=["step"])
        return self.participant.step

    def _stuck(self, step: str, status: int, html: str, form: _Form) -> None:
        """Free this rater's slot and stop: a rater that cannot go on must not hold a slot."""
        assert self.participant is not None  # noqa: S101 (narrows the type: set by walk() before any page)
        page = PAGE_NAMES.get(step, step)
        if step == "rate" and "stimulus" not in form.values:
            page = "attention-check"
        services.participant_slot_release(participant=self.participant, flag=STUCK_FLAG)
        raise SimulatedRaterStuck(
            f"simulated rater {self.pid} could not go on at the {page} page (HTTP {status}: "
            f"{_page_problem(html)}); its slot was freed"
        )

    def _answer(self, form: _Form) -> dict[str, str]:
        data = dict(form.values)
        for name in form.textareas:
            data[name] = "I went by how unusual each answer was."
        for name in form.numbers:
            data[name] = "3"
        for name, options in {**form.radios, **form.selects}.items():
            data[name] = self.rng.choice(options)  # a Likert scale's answer among its own points
        for name in form.values:
            if name.startswith("score-"):  # a slider's hidden field
                data[name] = str(self.rng.randint(30, 70))
        return data

    def _rate(self, form: _Form) -> dict[str, str]:
        data = dict(form.values)
        if "stimulus" not in data:
            return self._attention(form, data)
        stimulus = Stimulus.objects.select_related("condition", "item__task").get(token=data["stimulus"])
        steered = stimulus.condition.method != "base"
        text = _text_key(stimulus)
        # Every draw is keyed by what is rated, never by the order of the pages or of the scales
        # (both shuffled from the participant's random token): the same seed gives the same
        # scores in every run and install. Seeded simulation noise, never a secret.
        text_effect = random.Random(f"{self.model.seed}:text:{text}").gauss(0, self.model.text_sd)  # noqa: S311
        for name in [*data, *form.radios]:
            if not name.startswith("score-"):
                continue
            dimension = self.dimensions[name.removeprefix("score-")]
            draw = random.Random(f"{self.model.seed}:{self.pid}:{text}:{dimension.key}")  # noqa: S311
            if self.inattentive:
                points = draw.uniform(0, 100)
            else:
                points = (
                    50
                    + self.leniency
                    + text_effect
                    + (self.model.preference if steered else 0.0)
                    + draw.gauss(0, self.model.noise_sd)
                )
            low, high = dimension.scale_range
            score = low + (high - low) * min(max(points, 0.0), 100.0) / 100
            data[name] = str(round(score))
        return data

    def _attention(self, form: _Form, data: dict[str, str]) -> dict[str, str]:
        assert self.participant is not None  # noqa: S101 (narrows the type: set by walk() before any page)
        ticket = page_ticket_load(value=data.get("page", ""), rater_token=self.participant.token)
        check = next((c for c in self.checks if ticket is not None and c.index == ticket.check_index), None)
        options = form.radios.get("response", [])
        if check is None:
            data["response"] = options[0] if options else "50"
        elif options:
            wrong = [option for option in options if option.casefold() != check.expected.casefold()]
            data["response"] = self.rng.choice(wrong) if self.inattentive and wrong else check.expected
        else:
            expected = float(check.expected)
            far = 0.0 if expected >= 50 else 100.0
            data["response"] = str(int(far if self.inattentive else expected))
        return data


def _page_problem(html: str) -> str:
    """What a page says is wrong: its form errors, or its heading and first paragraph."""
    errors = [_text(item) for block in re.findall(r'<ul class="errorlist"[^>]*>(.*?)</ul>', html, re.S)
              for item in re.findall(r"<li>(.*?)</li>", block, re.S)]  # fmt: skip
    if errors:
        return "; ".join(errors)
    heading = re.search(r"<h1>(.*?)</h1>\s*<p>(.*?)</p>", html, re.S)
    return f"{_text(heading.group(1))}: {_text(heading.group(2))}" if heading else "no message on the page"


def _text(fragment: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _host() -> str:
    if "testserver" in settings.ALLOWED_HOSTS or "*" in settings.ALLOWED_HOSTS:
        return "testserver"
    allowed = [host for host in settings.ALLOWED_HOSTS if host and not host.startswith(".")]
    if not allowed:
        raise SimulationError("ALLOWED_HOSTS names no host the simulated raters could use")
    return allowed[0]


def _text_key(stimulus: Stimulus) -> str:
    """What a text is, stable across runs and installs (its tokens are random): twin copies of one
    text in two deployments share it, as they share ``text_id``."""
    item = stimulus.item
    return f"{stimulus.condition.key}:{item.task.key}:{item.key}:{stimulus.sample_index}:{stimulus.generation_round}"


def simulated_pid(*, seed: int, index: int) -> str:
    return f"SIMULATED-{seed}-{index}"


def raters_simulate(*, study: Study, n_raters: int, model: RaterModel, allow_real: bool = False) -> SimulationResult:
    """Drive ``n_raters`` simulated raters through the study's rater flow; returns what happened.

    Seeded: the same seed gives the same raters, so running again resumes them (finished
    ones are left as they are) rather than adding new ones.
    """
    if n_raters < 1:
        raise SimulationError("--raters must be at least 1")
    if getattr(settings, "SECURE_SSL_REDIRECT", False):
        raise SimulationError("simulated raters are for development copies of a study, not a production server")
    if not study.is_open:
        raise SimulationError(f"study {study.slug!r} is closed: open it (the demo does) before simulating raters")
    real = Participant.objects.filter(study=study, simulated=False)
    pids = [simulated_pid(seed=model.seed, index=index) for index in range(n_raters)]
    if real.filter(prolific_pid__in=pids).exists():
        raise SimulationError("a real participant has a simulated rater's Prolific ID; choose another --seed")
    if real.exists() and not allow_real:
        raise SimulationError(
            f"study {study.slug!r} has real participants: simulated raters would take their slots and mix into "
            "the data (pass --allow-real-participants to do it anyway, e.g. on a copy)"
        )
    result = SimulationResult()
    for index, pid in enumerate(pids):
        rater = _SimulatedRater(
            study=study,
            pid=pid,
            index=index,
            model=model,
            rng=random.Random(f"{model.seed}:{index}"),  # noqa: S311 (seeded simulation, not a secret)
        )
        try:
            result.outcomes[rater.walk()] += 1
        except SimulatedRaterStuck as stuck:
            walked = ", ".join(f"{n} {step}" for step, n in sorted(result.outcomes.items())) or "none"
            raise SimulatedRaterStuck(f"{stuck} (raters walked before it: {walked})") from None
        result.inattentive += rater.inattentive
        result.abandoned += rater.abandons
    result.ratings = Rating.objects.filter(participant__study=study, participant__prolific_pid__in=pids).count()
    return result
