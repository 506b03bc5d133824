"""Hostile input, property-based (hypothesis): every rater form, the entry URL and the spec
loader answer arbitrary text, unicode, huge bodies and forged, replayed or foreign tokens with
a 4xx and a clear message (or a listed spec error), never a 500, never a stored row."""

from __future__ import annotations

import pytest
import yaml
from django.core import signing
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studyapp.rating.forms import PAGE_SALT, ScoresForm
from studyapp.rating.models import AttentionCheckResponse, Participant, Rating
from studyapp.rating.selectors import participant_plan
from studyapp.studies.models import Study
from studyapp.studies.spec import SpecError
from studyapp.studies.study_loading import StudyLoadError, study_load
from tests.conftest import REPO_ROOT
from tests.studyapp.rating.helpers import Bot, build_rating_study

pytestmark = pytest.mark.django_db
EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
# Arbitrary text, unicode of every category (surrogates are not encodable in a URL or a form),
# NUL bytes and control characters included.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
HUGE = st.integers(min_value=10_000, max_value=3_000_000).map(lambda n: "9" * n)
ANY_VALUE = st.one_of(TEXT, HUGE, st.integers().map(str), st.floats(allow_nan=True).map(str))


def _client() -> Client:
    return Client(raise_request_exception=False)


def _counts() -> tuple[int, int, int]:
    return Participant.objects.count(), Rating.objects.count(), AttentionCheckResponse.objects.count()


def _clear_4xx(response) -> None:
    assert 400 <= response.status_code < 500, response.status_code
    body = response.content.decode(errors="replace")
    assert "<h1>" in body or "errorlist" in body, body[:300]  # a page that says what is wrong


@pytest.fixture
def rater_on_page():
    """A rater on their second rating page; another rater of the same study with their own tokens."""
    built = build_rating_study(attention_checks=[{"position": 2, "text": "Check", "expected": 100}])
    bots = []
    for pid in ("5f00000000000000000d0001", "5f00000000000000000d0002"):
        bot = Bot(_client(), built.study.slug, pid)
        page = bot.walk(stop_after_pages=1)
        bots.append((bot, page, bot.fill(page.content.decode())))
    me, other = bots
    participant = Participant.objects.get(prolific_pid=me[0].pid)
    return {"study": built.study, "me": me, "other": other, "participant": participant}


@EXAMPLES
@given(pid=ANY_VALUE, study_id=ANY_VALUE, session_id=ANY_VALUE, slug=TEXT)
def test_entry_url_with_arbitrary_parameters(pid, study_id, session_id, slug) -> None:
    study = Study.objects.filter(slug="hostile-entry").first() or build_rating_study(slug="hostile-entry").study
    query = {"PROLIFIC_PID": pid, "STUDY_ID": study_id, "SESSION_ID": session_id}
    for path in (f"/r/{study.slug}/", f"/r/{slug}/", f"/r/{study.slug}/{slug}/"):
        before = _counts()
        response = _client().get(path, query)
        assert response.status_code < 500
        if response.status_code >= 400:
            _clear_4xx(response)
            assert _counts() == before


@EXAMPLES
@given(data=st.data())
def test_rating_page_post_with_arbitrary_forged_or_foreign_fields(rater_on_page, data) -> None:
    bot, page, good = rater_on_page["me"]
    _, _, foreign = rater_on_page["other"]
    plan = participant_plan(participant=rater_on_page["participant"])
    token = rater_on_page["participant"].token
    forged_tickets = st.sampled_from(
        [
            signing.dumps({"r": token, "i": 99, "t": 0}, salt=PAGE_SALT),  # a page not in the plan
            signing.dumps({"r": token, "i": min(plan.done), "t": 0}, salt=PAGE_SALT),  # replay of a saved page
            signing.dumps({"r": token, "i": 0, "t": 0}, salt="another-salt"),  # wrong key
            foreign["page"],  # another rater's ticket
            good["page"][:-3] + "AAA",  # tampered signature
        ]
    )
    fields = {
        "page": data.draw(st.one_of(forged_tickets, ANY_VALUE, st.just(good["page"]))),
        "stimulus": data.draw(st.one_of(st.just(foreign["stimulus"]), ANY_VALUE, st.just(good["stimulus"]))),
    }
    for name in good:
        if name.startswith("score-"):
            fields[name] = data.draw(st.one_of(ANY_VALUE, st.just(good[name])))
    fields.update(data.draw(st.dictionaries(TEXT, ANY_VALUE, max_size=3)))
    dimensions = list(rater_on_page["participant"].study.dimensions.all())
    answers_current_page = fields.get("page") == good["page"] and fields.get("stimulus") == good["stimulus"]
    if answers_current_page and ScoresForm(fields, dimensions=dimensions).is_valid():
        # A well-formed answer to the current page (e.g. "0.0", which is the integer 0) is
        # not bad input; this test is about bad input only.
        fields["page"] = foreign["page"]
    before = _counts()
    response = bot.client.post(page.request["PATH_INFO"], fields)
    assert response.status_code in (303, 400, 409), response.status_code
    assert _counts() == before
    if response.status_code != 303:
        _clear_4xx(response)


@EXAMPLES
@given(step=st.sampled_from(["consent", "instructions", "practice", "rate", "debrief", "done", "ended", "alive"]),
       fields=st.dictionaries(st.one_of(TEXT, st.sampled_from(["choice", "response", "page", "debrief-q1"])),
                              ANY_VALUE, max_size=5))  # fmt: skip
def test_every_rater_form_with_arbitrary_fields(rater_on_page, step, fields) -> None:
    bot, _, _ = rater_on_page["me"]
    before = _counts()
    response = bot.client.post(f"/r/{rater_on_page['study'].slug}/-/{step}/", fields)
    assert response.status_code in (204, 303, 400, 405, 409), response.status_code
    assert _counts() == before
    if response.status_code in (400, 409):
        _clear_4xx(response)


@EXAMPLES
@given(answer=ANY_VALUE)
def test_consent_and_debrief_with_arbitrary_answers_from_a_fresh_rater(answer) -> None:
    study = Study.objects.filter(slug="hostile-consent").first() or build_rating_study(slug="hostile-consent").study
    client = _client()
    client.get(f"/r/{study.slug}/", {"PROLIFIC_PID": "hostile", "STUDY_ID": "s", "SESSION_ID": "x"})
    before = Participant.objects.filter(prolific_pid="hostile").values_list("step", "consented_at").get()
    response = client.post(f"/r/{study.slug}/-/consent/", {"choice": answer})
    assert response.status_code == 400
    _clear_4xx(response)
    assert Participant.objects.filter(prolific_pid="hostile").values_list("step", "consented_at").get() == before


def test_a_body_over_the_upload_limit_is_a_400_page(rater_on_page) -> None:
    bot, page, good = rater_on_page["me"]
    before = _counts()
    response = bot.client.post(page.request["PATH_INFO"], {**good, "padding": "x" * 3_000_000})
    _clear_4xx(response)
    assert response.status_code == 400 and _counts() == before


DEMO = yaml.safe_load((REPO_ROOT / "studies" / "demo.yaml").read_text())
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)),
    max_leaves=12,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


DEMO_PATHS = [path for path in _paths(DEMO) if path]


def _replace(value, path, new):
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _load_is_all_or_nothing(content) -> None:
    before = Study.objects.count()
    try:
        study_load(content=content, source="hostile.yaml")
    except (SpecError, StudyLoadError) as error:
        problems = getattr(error, "problems", [str(error)])
        assert problems and all(isinstance(p, str) and p for p in problems)
        assert Study.objects.count() == before


@EXAMPLES
@given(path=st.sampled_from(DEMO_PATHS), value=YAML_VALUES)
def test_spec_loader_with_any_field_of_the_demo_replaced(path, value) -> None:
    _load_is_all_or_nothing(yaml.safe_dump(_replace(DEMO, path, value), allow_unicode=True))


@EXAMPLES
@given(content=st.one_of(st.binary(max_size=400), TEXT, YAML_VALUES.map(lambda v: yaml.safe_dump(v))))
def test_spec_loader_with_arbitrary_bytes_text_and_documents(content) -> None:
    _load_is_all_or_nothing(content)
