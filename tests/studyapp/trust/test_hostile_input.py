"""Hostile input, property-based (hypothesis): every rater form, the entry URL, the spec
loader, the admin's spec upload and the admin's JSON fields answer arbitrary text, unicode,
huge bodies and forged, replayed or foreign tokens with a 4xx and a clear message (or a
listed spec error, or a form error), never a 500, never a stored row or a half-stored one."""

from __future__ import annotations

import hashlib
import html
import json
from html.parser import HTMLParser

import pytest
import yaml
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studyapp.rating.forms import PAGE_SALT, ScoresForm
from studyapp.rating.models import AttentionCheckResponse, Participant, Rating
from studyapp.rating.selectors import participant_plan
from studyapp.studies.models import Condition, Deployment, Item, LanguageModel, RatingDimension, Study, TaskFamily
from studyapp.studies.spec import SpecError
from studyapp.studies.study_loading import StudyLoadError, study_load
from tests.conftest import REPO_ROOT
from tests.factories import ConditionFactory, LanguageModelFactory, StudyFactory, panel_user
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


# --- The admin: spec upload and JSON fields (issue 21) ------------------------------------


class _AdminForm(HTMLParser):
    """What a browser would submit from the admin's change form (``<form id="…_form">``)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.data: dict[str, list[str]] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs) -> None:
        a = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = a.get("id", "").endswith("_form")
        elif not self.inside or not a.get("name"):
            if tag == "option" and self.inside and self._select and "selected" in a:
                self.data.setdefault(self._select, []).append(a.get("value", ""))
        elif tag == "input" and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") not in ("checkbox", "radio") or "checked" in a:
                self.data.setdefault(a["name"], []).append(a.get("value", "on"))
        elif tag == "select":
            self._select = a["name"]
            self.data.setdefault(a["name"], [])
        elif tag == "textarea":
            self._textarea = a["name"]
            self.data[a["name"]] = [""]

    def handle_data(self, data) -> None:
        if self._textarea:
            self.data[self._textarea][0] += data

    def handle_endtag(self, tag) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            value = self.data[self._textarea][0]
            self.data[self._textarea][0] = value[1:] if value.startswith("\n") else value  # as browsers read it
            self._textarea = None


def admin_form_data(client: Client, url: str) -> dict[str, list[str]]:
    page = client.get(url)
    assert page.status_code == 200
    parser = _AdminForm()
    parser.feed(page.content.decode())
    data = {name: [html.unescape(value) for value in values] for name, values in parser.data.items()}
    return {name: values[0] if len(values) == 1 else values for name, values in data.items()}  # type: ignore[misc]


@pytest.fixture
def admin_researcher():
    user = panel_user(username="hostile-researcher")
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return user, client


def _study_rows() -> tuple[int, ...]:
    return tuple(
        model.objects.count()
        for model in (Study, LanguageModel, Condition, TaskFamily, Item, RatingDimension, Deployment)
    )


@EXAMPLES
@given(
    content=st.one_of(
        st.binary(max_size=400),
        TEXT,
        YAML_VALUES.map(lambda v: yaml.safe_dump(v)),
        st.builds(lambda path, value: yaml.safe_dump(_replace(DEMO, path, value), allow_unicode=True),
                  st.sampled_from(DEMO_PATHS), YAML_VALUES),
    )
)  # fmt: skip
def test_admin_spec_upload_with_arbitrary_content(admin_researcher, content) -> None:
    _, client = admin_researcher
    raw = content if isinstance(content, bytes) else content.encode("utf-8", errors="surrogatepass")
    before = _study_rows()
    response = client.post(reverse("admin:studies_study_load_spec"), {"spec": SimpleUploadedFile("h.yaml", raw)})
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 200:  # the page lists the problems, and nothing was written
        assert "errorlist" in response.content.decode()
        assert _study_rows() == before
    else:  # loaded whole: the study holds exactly this file
        assert Study.objects.filter(spec_sha256=hashlib.sha256(raw).hexdigest()).exists()


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)),
    max_leaves=12,
)
JSON_TEXT = st.one_of(
    JSON_VALUES.map(json.dumps),  # NaN and Infinity included, as json.dumps writes them
    TEXT,
    HUGE,
    st.integers(min_value=1, max_value=200_000).map(lambda n: "[" * n),
)
STUDY_JSON_FIELDS = ("decoding", "practice", "attention_checks", "debrief_questions")


@pytest.fixture
def editable_study(admin_researcher):
    """A study without stimuli: its JSON fields and its condition's parameters are editable."""
    user, _ = admin_researcher
    study = StudyFactory(slug="hostile-admin")
    study.researchers.add(user)
    condition = ConditionFactory(study=study, model=LanguageModelFactory(study=study), key="editable", params={})
    return study, condition


def _json_of(model, field: str):
    return json.dumps(model.__class__.objects.values_list(field, flat=True).get(pk=model.pk), sort_keys=True)


@EXAMPLES
@given(field=st.sampled_from([*STUDY_JSON_FIELDS, "params"]), text=JSON_TEXT)
def test_admin_json_fields_with_arbitrary_values(admin_researcher, editable_study, field, text) -> None:
    """Whatever the admin's JSON fields are sent: no 500, and a save is whole or nothing."""
    _, client = admin_researcher
    study, condition = editable_study
    row = condition if field == "params" else study
    opts = row._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk])
    data = admin_form_data(client, url)
    assert field in data
    watched = ("params",) if field == "params" else STUDY_JSON_FIELDS
    before = {name: _json_of(row, name) for name in watched}
    rows_before = _study_rows()
    response = client.post(url, {**data, field: text})
    assert response.status_code in (200, 302, 400), response.status_code
    assert _study_rows() == rows_before
    after = {name: _json_of(row, name) for name in watched}
    if response.status_code == 302:  # saved: this field holds what was sent, the others are as they were
        assert after[field] == json.dumps(json.loads(text), sort_keys=True)
        assert {k: v for k, v in after.items() if k != field} == {k: v for k, v in before.items() if k != field}
    else:  # refused: the form says why (or the 400 page), nothing changed
        assert after == before
        body = response.content.decode()
        assert "errorlist" in body or "<h1>" in body, body[:300]
    assert client.get(url).status_code == 200  # and the page still opens
