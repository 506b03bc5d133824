"""Study specs: the shipped ones load; a broken one lists every problem and loads nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studyapp.studies.models import Condition, Deployment, Item, RatingDimension, Study
from studyapp.studies.spec import SpecError, spec_parse
from studyapp.studies.study_loading import StudyLoadError, study_load, study_load_file
from tests.conftest import REPO_ROOT
from tests.factories import ResearcherFactory, StimulusFactory

DEMO = REPO_ROOT / "studies" / "demo.yaml"
PAPER = REPO_ROOT / "studies" / "creativityneuro.yaml"

BROKEN = """
spec_version: "1"
slug: broken
title: Broken
samples_per_item: 0
decoding: {temperature: -1, top_p: 2, beam_width: 4}
models:
  - key: m1
    source: embedded
  - key: m1
    source: embedded
conditions:
  - {key: base, model: m1, method: base}
  - {key: weight, model: m2, method: wieght}
  - {key: steer, model: m1, method: weight, params: {rho: 3, alpah: 1.0}}
  - {key: prompted, model: m1, method: prompt}
tasks:
  - key: aut
    items: [brick, spatula]
  - key: mine
    items: [{key: one, text: first}]
deployments:
  - {slug: d1, model: m1, task: aut, conditions: [base, steer]}
  - {slug: d2, model: m1, task: autt, conditions: [base, weigth]}
dimensions:
  - {key: originality, question: How original is it, scale: likert_9}
attention_checks:
  items:
    - {position: 2, text: Move the slider right}
"""


def test_demo_spec_parses_small() -> None:
    spec = spec_parse(DEMO.read_text())
    assert [m["source"] for m in spec.models] == ["embedded"]
    rated = [d for d in spec.deployments if not d["automatic_only"]]
    assert len(rated) == 2
    assert {c["method"] for c in spec.conditions} == {"base", "weight", "activation"}
    # The DAT is automatic only, over every condition: the demo's DAT table has a row for each.
    (dat,) = [d for d in spec.deployments if d["automatic_only"]]
    assert dat["task"] == "dat" and set(dat["conditions"]) == {c["key"] for c in spec.conditions}
    assert spec.study["rated_samples_per_item"] < spec.study["samples_per_item"]


def test_paper_spec_is_the_720_rater_design() -> None:
    full = spec_parse(PAPER.read_text())
    assert len(full.models) == 6
    rated = [d for d in full.deployments if not d["automatic_only"]]
    assert len(rated) == 24
    assert full.study["raters_per_deployment"] * len(rated) == 720
    # Many samples for the diversity metrics, a few of them rated.
    assert full.study["samples_per_item"] >= 20 and full.study["rated_samples_per_item"] == 3
    methods = {c["key"]: c["method"] for c in full.conditions}
    # The paper's DAT evaluation: every model and condition, automatic only, many samples.
    dat = [d for d in full.deployments if d["automatic_only"]]
    assert {d["task"] for d in dat} == {"dat"} and all(d["samples_per_item"] >= 50 for d in dat)
    assert {key for d in dat for key in d["conditions"]} == set(methods)
    spec = full
    spec.deployments = rated
    for deployment in spec.deployments:
        # Every deployment compares one steered condition with its model's base.
        assert sorted(methods[key] for key in deployment["conditions"]) in (["base", "weight"], ["activation", "base"])
    assert {(d["task"], methods[d["conditions"][1]]) for d in spec.deployments} == {
        ("aut", "weight"),
        ("aut", "activation"),
        ("task_task", "weight"),
        ("task_task", "activation"),
    }
    assert [d["key"] for d in spec.dimensions] == ["originality", "surprise", "creativity"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", [DEMO, PAPER], ids=["demo", "creativityneuro"])
def test_shipped_specs_load(path: Path) -> None:
    study, changed = study_load_file(path=path)
    assert changed
    spec = spec_parse(path.read_bytes())
    assert study.spec_version == "1"
    assert len(study.spec_sha256) == 64
    assert Deployment.objects.filter(study=study).count() == len(spec.deployments)
    assert Condition.objects.filter(study=study).count() == len(spec.conditions)
    assert RatingDimension.objects.filter(study=study).count() == 3
    assert Item.objects.filter(task__study=study).count() == sum(len(t["items"]) for t in spec.tasks)
    deployment = Deployment.objects.filter(study=study).order_by("slug").first()
    assert deployment.conditions.filter(method="base").count() == 1


@pytest.mark.django_db
def test_loading_the_same_spec_again_changes_nothing() -> None:
    first, _ = study_load_file(path=DEMO)
    again, changed = study_load_file(path=DEMO)
    assert not changed
    assert again.pk == first.pk
    assert Study.objects.count() == 1
    assert Condition.objects.count() == 3


def test_broken_spec_lists_every_problem_with_its_path() -> None:
    with pytest.raises(SpecError) as raised:
        spec_parse(BROKEN)
    problems = "\n".join(raised.value.problems)
    expected = [
        "samples_per_item: must be at least 1",
        "decoding.beam_width: unknown field",
        "decoding.temperature: must be at least 0",
        "decoding.top_p: must be in (0, 1]",
        "models[1].key: duplicate key 'm1'",
        "conditions[1].model: unknown model 'm2'",
        "conditions[1].method: unknown value 'wieght'",
        "conditions[2].params.alpah: unknown parameter for method 'weight'",
        "conditions[2].params.rho: keep ratio must be in (0, 1]",
        "conditions[3].params.instruction: required for method 'prompt'",
        "tasks[0].items[1]: unknown item 'spatula' of shipped task 'aut'",
        "tasks[1].template: required for a task that is not shipped",
        "deployments[1].task: unknown task 'autt' (did you mean 'aut'?)",
        "deployments[1].conditions[1]: unknown condition 'weigth' (did you mean 'weight'?)",
        "dimensions[0].scale: unknown value 'likert_9'",
        "attention_checks.items[0].expected: required field is missing",
    ]
    for fragment in expected:
        assert fragment in problems
    assert len(raised.value.problems) == len(expected)


def test_not_yaml_is_one_problem_with_a_line_number() -> None:
    with pytest.raises(SpecError) as raised:
        spec_parse("slug: [unclosed\ntitle: x\n")
    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith("line ")


def test_a_list_instead_of_a_mapping_is_a_problem_not_a_crash() -> None:
    with pytest.raises(SpecError) as raised:
        spec_parse("- just\n- a list\n")
    assert raised.value.problems == ["expected a mapping, got a list"]


@pytest.mark.django_db
def test_broken_spec_stores_nothing() -> None:
    with pytest.raises(SpecError):
        study_load(content=BROKEN)
    assert Study.objects.count() == 0


@pytest.mark.django_db
def test_load_study_command_exits_2_listing_problems(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(BROKEN)
    with pytest.raises(CommandError) as raised:
        call_command("load_study", str(spec))
    assert raised.value.returncode == 2
    assert "16 problem(s)" in str(raised.value)
    assert "deployments[1].conditions[1]: unknown condition 'weigth'" in capsys.readouterr().err
    assert Study.objects.count() == 0


@pytest.mark.django_db
def test_load_study_command_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("load_study", str(tmp_path / "nope.yaml"))
    assert raised.value.returncode == 2


@pytest.mark.django_db
def test_load_study_command_grants_access(capsys) -> None:
    researcher = ResearcherFactory(username="ada")
    call_command("load_study", str(DEMO), "--researcher", "ada")
    assert "demo: loaded" in capsys.readouterr().out
    assert list(Study.objects.get(slug="demo").researchers.all()) == [researcher]


@pytest.mark.django_db
def test_changed_spec_replaces_definition_until_stimuli_exist() -> None:
    study, _ = study_load_file(path=DEMO)
    changed = DEMO.read_text().replace("seed: 20260101", "seed: 1")
    study, did_change = study_load(content=changed)
    assert did_change
    assert study.seed == 1
    assert Deployment.objects.filter(study=study).count() == 3  # two rated, one automatic-only

    deployment = study.deployments.first()
    StimulusFactory(
        job__deployment=deployment,
        job__condition=deployment.conditions.first(),
        item=deployment.task.items.first(),
    )
    with pytest.raises(StudyLoadError):
        study_load(content=changed.replace("seed: 1", "seed: 2"))
    study.refresh_from_db()
    assert study.seed == 1


def test_condition_labels_default_to_the_method_and_must_differ_within_a_deployment() -> None:
    spec = spec_parse(PAPER.read_text())
    assert {c["label"] for c in spec.conditions} == {"base", "weight", "activation"}
    twice = DEMO.read_text().replace(
        "  - key: activation\n    model: smollm2\n    method: activation\n",
        "  - key: activation\n    label: base\n    model: smollm2\n    method: activation\n",
    )
    with pytest.raises(SpecError) as raised:
        spec_parse(twice)
    assert raised.value.problems == [
        "deployments[1].conditions[1]: two conditions labelled 'base'; give one of them another label",
        "deployments[2].conditions[2]: two conditions labelled 'base'; give one of them another label",
    ]


@pytest.mark.parametrize(
    ("raters", "per_rater", "message"),
    [
        (4, 5, "must be a multiple of the deployment's 2 conditions"),
        (4, 14, "asks for 7 stimuli per condition, but each condition has only 6"),
        (5, 6, "15 ratings per condition, not a multiple of its 6 stimuli"),
    ],
)
def test_spec_rejects_designs_that_cannot_be_balanced(raters: int, per_rater: int, message: str) -> None:
    text = DEMO.read_text().replace("per_deployment: 12", f"per_deployment: {raters}")
    text = text.replace("stimuli_per_rater: 6", f"stimuli_per_rater: {per_rater}")
    with pytest.raises(SpecError) as raised:
        spec_parse(text)
    assert any(message in problem for problem in raised.value.problems), raised.value.problems
    assert all(problem.startswith("deployments[") for problem in raised.value.problems)


@pytest.mark.django_db
def test_load_study_warns_about_model_folders_missing_here(capsys) -> None:
    call_command("load_study", str(PAPER))
    captured = capsys.readouterr()
    assert "creativityneuro: loaded" in captured.out
    assert "warning: model 'llama31-8b': /models/Llama-3.1-8B-Instruct does not exist" in captured.err


def test_a_study_with_the_cc_walk_task_loads() -> None:
    text = DEMO.read_text().replace(
        "- key: aut\n    items: [brick, paperclip, umbrella]", "- key: cc_walk\n    items: [kitchen, city, music]"
    )
    text = text.replace("task: aut", "task: cc_walk")
    spec = spec_parse(text)
    cc_task = next(task for task in spec.tasks if task["key"] == "cc_walk")
    assert cc_task["parser"] == "cc_walk"
    assert [item["key"] for item in cc_task["items"]] == ["kitchen", "city", "music"]
    assert all("Start:" in item["text"] for item in cc_task["items"])
    assert {d["task"] for d in spec.deployments} == {"cc_walk", "dat"}


def test_a_cc_walk_deployment_can_be_automatic_only() -> None:
    text = DEMO.read_text().replace("- key: dat\n    items: [comma, lines]", "- key: cc_walk\n    items: [kitchen]")
    text = text.replace("task: dat", "task: cc_walk")
    spec = spec_parse(text)
    (cc_deployment,) = [d for d in spec.deployments if d["task"] == "cc_walk"]
    assert cc_deployment["automatic_only"] is True


def test_a_nul_character_anywhere_is_a_listed_spec_problem() -> None:
    # PostgreSQL cannot store NUL in text or JSON: found by the hostile-input property test.
    text = DEMO.read_text().replace("practice:\n", 'practice:\n  "\\0": null\n', 1)
    text = text.replace("title: ", 'title: "\\0"\n# ', 1)
    with pytest.raises(SpecError) as raised:
        spec_parse(text)
    problems = "\n".join(raised.value.problems)
    assert "practice.\\x00: contains a NUL character" in problems
    assert "title: contains a NUL character" in problems


def test_a_non_finite_number_anywhere_is_a_listed_spec_problem() -> None:
    # JSON (and so the stored spec) has no Infinity or NaN: found by the hostile-input property test.
    text = DEMO.read_text().replace("slug: demo", "slug: .inf", 1)
    with pytest.raises(SpecError) as raised:
        spec_parse(text)
    assert any(problem.startswith("slug: inf is not a finite number") for problem in raised.value.problems)


def test_a_negative_screen_out_count_is_a_problem_not_a_crash() -> None:
    # Found by comparing the checker before and after its split on mutated specs: -3 indexed
    # the check positions from the end and raised IndexError (a 500 on upload).
    with pytest.raises(SpecError) as raised:
        spec_parse(DEMO.read_text().replace("screen_out_after: 2", "screen_out_after: -3"))
    assert raised.value.problems == ["attention_checks.screen_out_after: must be at least 1, got -3"]


def test_debrief_questions_are_checked_and_stored_in_one_form() -> None:
    text = DEMO.read_text()
    start = text.index("debrief_questions:")
    end = text.index("\n", text.index("question:", start))
    debrief = """debrief_questions:
  - How did you decide?
  - {key: device, question: "Which device did you use?", options: [phone, computer], required: true}"""
    spec = spec_parse(text[:start] + debrief + text[end:])
    assert spec.study["debrief_questions"] == [
        {"key": "q1", "question": "How did you decide?", "type": "text", "options": [], "required": False},
        {
            "key": "device",
            "question": "Which device did you use?",
            "type": "choice",
            "options": ["phone", "computer"],
            "required": True,
        },
    ]


def test_debrief_questions_in_another_spelling_or_half_made_are_listed_problems() -> None:
    text = DEMO.read_text()
    start = text.index("debrief_questions:")
    end = text.index("\n", text.index("question:", start))
    debrief = """debrief_questions:
  - {key: a, text: Spelled as the old docs said}
  - {key: a, question: Pick one, type: choice, options: [only]}
  - {question: "How old are you?", type: number, options: ["18", "99"]}"""
    with pytest.raises(SpecError) as raised:
        spec_parse(text[:start] + debrief + text[end:])
    problems = raised.value.problems
    assert any(p.startswith("debrief_questions[0].text: unknown field") for p in problems)
    assert "debrief_questions[0].question: required field is missing" in problems
    assert "debrief_questions[1].options: a choice question needs at least two options" in problems
    assert "debrief_questions[1].key: duplicate key 'a' (first at debrief_questions[0])" in problems
    assert "debrief_questions[2].options: options belong to a choice question, not a number one" in problems
