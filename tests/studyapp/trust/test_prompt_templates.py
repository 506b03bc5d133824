"""Prompt templates substitute plain {item} only (issue 21, item 6): `{item:>5000000}` made every
rater page 5 MB (a width of 1e9 allocates a gigabyte per render)."""

from __future__ import annotations

import html

import pytest
from django.test import Client
from django.urls import reverse

from generation.task_families import TaskFamily as LibraryTaskFamily
from studyapp.rating.selectors import stimulus_display_prompt
from studyapp.studies.models import Stimulus, TaskFamily
from studyapp.studies.spec import SpecError
from studyapp.studies.study_loading import study_load
from tests.conftest import REPO_ROOT
from tests.factories import panel_user
from tests.studyapp.rating.helpers import Bot, build_rating_study

pytestmark = pytest.mark.django_db
WIDE = "{item:>5000000}"


def test_a_template_that_formats_its_item_is_a_listed_spec_error() -> None:
    demo = (REPO_ROOT / "studies" / "demo.yaml").read_text()
    spec = demo.replace("  - key: aut\n", f"  - key: aut\n    template: 'List uses for {WIDE}, {{item!r}}.'\n", 1)
    assert WIDE in spec
    with pytest.raises(SpecError) as refused:
        study_load(content=spec)
    assert any(
        p.startswith(f"tasks[0].template: '{WIDE}': only plain {{item}} is replaced") for p in refused.value.problems
    )


def test_a_rating_page_never_formats_the_template(client) -> None:
    """A template stored before the check (or by hand) renders as the text it is."""
    built = build_rating_study()
    TaskFamily.objects.filter(study=built.study).update(template=f"Uses for a {WIDE} and a {{item}}?")
    bot = Bot(Client(), built.study.slug, "5f0000000000000000001600")
    page = bot.walk(stop_after_pages=0)
    assert bot.step_name(page) == "rate"
    assert len(page.content) < 100_000, len(page.content)
    assert f"Uses for a {WIDE} and a thing number" in html.unescape(page.content.decode())


def test_the_admin_refuses_a_template_that_formats_its_item(client) -> None:
    built = build_rating_study()
    task = TaskFamily.objects.get(study=built.study)
    client.force_login(panel_user(username="researcher", study=built.study))
    url = reverse("admin:studies_taskfamily_change", args=[task.pk])
    data = {
        "study": built.study.pk,
        "key": task.key,
        "template": "Uses for {item:>1000000000}",
        "parser": "",
        "description": "",
        "items-TOTAL_FORMS": "0",
        "items-INITIAL_FORMS": "0",
    }
    page = client.post(url, data)
    assert page.status_code == 200 and "only plain {item} is replaced" in html.unescape(page.content.decode())
    task.refresh_from_db()
    assert task.template == "What is an unusual use for a {item}?"


@pytest.mark.parametrize("template", ["What is an unusual use for a {item}?", "Name uses.", "{{item}} and {item}"])
def test_raters_read_the_prompt_as_the_model_was_given_it(template) -> None:
    """One substitution for the model and the rater (generation.task_families.template_render)."""
    built = build_rating_study()
    TaskFamily.objects.filter(study=built.study).update(template=template)
    stimulus = Stimulus.objects.select_related("item__task").first()
    family = LibraryTaskFamily(name="aut", template=template, items=())
    assert stimulus_display_prompt(stimulus=stimulus) == family.render(stimulus.item.text)
