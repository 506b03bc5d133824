"""The spec's factorial form: models x tasks x methods, expanded into the explicit form.

The paper's spec (studies/creativityneuro.yaml) is written with it; its explicit form, as
it was written out by hand before (tests/studyapp/studies/data/creativityneuro_explicit.yaml),
must load to the same study.
"""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.forms.models import model_to_dict

from studyapp.studies.models import Study
from studyapp.studies.spec import SpecError, spec_parse
from studyapp.studies.study_loading import study_load
from tests.conftest import REPO_ROOT

PAPER = REPO_ROOT / "studies" / "creativityneuro.yaml"
EXPLICIT = REPO_ROOT / "tests" / "studyapp" / "studies" / "data" / "creativityneuro_explicit.yaml"
SHARED_PARAMS = "    weight: {rho: 0.1, alpha: 1.0, prompt_set: dat}\n"
NO_PER_MODEL = "  per_model: {}\n"


def test_the_paper_spec_is_short_and_factorial() -> None:
    text = PAPER.read_text()
    assert len(text.splitlines()) <= 100
    written = yaml.safe_load(text)
    assert "factorial" in written and "deployments" not in written and "conditions" not in written
    assert len(EXPLICIT.read_text().splitlines()) > 300  # what it replaces


def _by(entries: list[dict], key: str) -> dict[str, dict]:
    return {entry[key]: entry for entry in entries}


def test_both_forms_parse_to_the_same_spec() -> None:
    factorial, explicit = spec_parse(PAPER.read_bytes()), spec_parse(EXPLICIT.read_bytes())
    for part in ("study", "models", "tasks", "dimensions", "attention_checks"):
        assert getattr(factorial, part) == getattr(explicit, part), part
    assert factorial.conditions == explicit.conditions  # the same order too: per model, base first
    assert _by(factorial.deployments, "slug") == _by(explicit.deployments, "slug")
    assert len(factorial.conditions) == 18 and len(factorial.deployments) == 30
    # The file as written is what the study stores: the factorial block, not its expansion.
    assert "factorial" in factorial.raw and "deployments" not in factorial.raw


def _study_as_loaded(study: Study) -> dict:
    """Everything the database holds about a study's definition, keyed by name (no ids)."""
    own = model_to_dict(study, exclude=["id", "slug", "spec", "spec_sha256", "researchers"])
    conditions = {c.key: (c.model.key, c.label, c.method, c.params, c.artifact_path) for c in study.conditions.all()}
    models = {m.key: (m.source, m.backend, m.device, m.dtype) for m in study.language_models.all()}
    tasks = {
        t.key: (t.template, t.system_prompt, t.parser, t.description, [(i.key, i.text) for i in t.items.all()])
        for t in study.task_families.all()
    }
    deployments = {
        d.slug: {
            **model_to_dict(d, exclude=["id", "study", "model", "task", "conditions"]),
            "model": d.model.key,
            "task": d.task.key,
            "conditions": sorted(c.key for c in d.conditions.all()),
        }
        for d in study.deployments.all()
    }
    dimensions = [model_to_dict(d, exclude=["id", "study"]) for d in study.dimensions.order_by("position")]
    return {
        "study": own,
        "models": models,
        "conditions": conditions,
        "tasks": tasks,
        "deployments": deployments,
        "dimensions": dimensions,
    }


@pytest.mark.django_db
def test_both_forms_load_to_the_same_study() -> None:
    factorial, _ = study_load(content=PAPER.read_bytes())
    explicit_text = EXPLICIT.read_text().replace("slug: creativityneuro\n", "slug: creativityneuro-explicit\n", 1)
    explicit, _ = study_load(content=explicit_text)
    assert explicit.slug == "creativityneuro-explicit" and factorial.spec_sha256 != explicit.spec_sha256
    loaded, by_hand = _study_as_loaded(factorial), _study_as_loaded(explicit)
    for part in loaded:
        assert loaded[part] == by_hand[part], part
    assert len(loaded["deployments"]) == 30 and len(loaded["conditions"]) == 18
    assert sum(len(items) for *_, items in loaded["tasks"].values()) == 12
    rated = [d for d in loaded["deployments"].values() if not d["automatic_only"]]
    assert len(rated) == 24 and loaded["study"]["raters_per_deployment"] * len(rated) == 720


def _rows(output: str) -> set[tuple[str, ...]]:
    """The table rows of ``--dry-run``'s output, each as its columns."""
    return {tuple(line.split()) for line in output.splitlines() if line.startswith("  ")}


@pytest.mark.django_db
def test_dry_run_prints_the_expanded_design_and_writes_nothing() -> None:
    out = io.StringIO()
    call_command("load_study", str(PAPER), "--dry-run", stdout=out)
    printed = out.getvalue()
    assert Study.objects.count() == 0
    assert "dry run, nothing loaded" in printed.splitlines()[0]
    assert "conditions (18):" in printed
    assert "deployments (30: 24 rated by 720 raters, 6 automatic only):" in printed
    rows = _rows(printed)
    assert ("llama31-8b-weight", "llama31-8b", "weight", "rho=0.1", "alpha=1.0", "prompt_set=dat") in rows
    assert ("qwen25-14b-task-task-activation", "qwen25-14b", "task_task", "base,", "activation", "5", "x", "24",
            "(3", "rated)", "30", "x", "10", "stimuli") in rows  # fmt: skip
    assert ("phi35-mini-dat", "phi35-mini", "dat", "base,", "weight,", "activation", "2", "x", "100", "automatic",
            "only") in rows  # fmt: skip
    # The explicit form prints the same design.
    explicit = io.StringIO()
    call_command("load_study", str(EXPLICIT), "--dry-run", stdout=explicit)
    assert _rows(explicit.getvalue()) == rows and len(rows) == 18 + 30 + 2


def test_dry_run_of_a_broken_spec_lists_its_problems_and_exits_2(tmp_path, capsys) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(PAPER.read_text().replace("versus_base: [aut, task_task]", "versus_base: [aut, taks_task]"))
    with pytest.raises(CommandError) as raised:
        call_command("load_study", str(spec), "--dry-run")
    assert raised.value.returncode == 2
    assert "factorial.versus_base[1]: unknown task 'taks_task' (did you mean 'task_task'?)" in capsys.readouterr().err


def test_per_model_params_replace_the_shared_ones_for_that_model() -> None:
    own = "  per_model:\n    llama31-8b: {weight: {rho: 0.2, alpha: 2.0, prompt_set: openended, layers: all}}\n"
    spec = spec_parse(PAPER.read_text().replace(NO_PER_MODEL, own))
    params = {c["key"]: c["params"] for c in spec.conditions}
    assert params["llama31-8b-weight"] == {"rho": 0.2, "alpha": 2.0, "prompt_set": "openended", "layers": "all"}
    assert params["llama32-1b-weight"] == {"rho": 0.1, "alpha": 1.0, "prompt_set": "dat"}
    assert params["llama31-8b-activation"] == {"coeff": 3.0}


def test_a_subset_of_models_and_task_entries_with_their_own_fields() -> None:
    text = PAPER.read_text().replace("  methods:\n", "  models: [llama32-1b, qwen25-14b]\n  methods:\n")
    text = text.replace(
        "versus_base: [aut, task_task]", "versus_base: [aut, {task: task_task, raters: {per_deployment: 60}}]"
    )
    spec = spec_parse(text)
    assert sorted({c["model"] for c in spec.conditions}) == ["llama32-1b", "qwen25-14b"]
    assert len(spec.deployments) == 2 * (2 * 2 + 1)
    per_deployment = {d["slug"]: d["raters"]["raters_per_deployment"] for d in spec.deployments}
    assert per_deployment["qwen25-14b-task-task-weight"] == 60 and per_deployment["qwen25-14b-aut-weight"] is None


def test_explicit_entries_go_with_the_factorial_ones() -> None:
    """A condition and deployment of one's own beside the block; the deployment uses an expanded base."""
    own = (
        "conditions:\n  - {key: llama32-1b-bold, model: llama32-1b, method: prompt, params: {instruction: Be bold.}}\n"
        "deployments:\n  - {slug: llama32-1b-aut-bold, model: llama32-1b, task: aut,"
        " conditions: [llama32-1b-base, llama32-1b-bold]}\n"
    )
    spec = spec_parse(PAPER.read_text() + own)
    assert len(spec.conditions) == 19 and spec.conditions[0]["key"] == "llama32-1b-bold"
    assert spec.deployments[0] == {**spec.deployments[0], "conditions": ["llama32-1b-base", "llama32-1b-bold"]}
    assert len(spec.deployments) == 31


def _problems(old: str, new: str, *, appended: str = "") -> list[str]:
    text = PAPER.read_text()
    assert old in text
    with pytest.raises(SpecError) as raised:
        spec_parse(text.replace(old, new) + appended)
    return raised.value.problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (NO_PER_MODEL, "  per_model: {llama31-8: {weight: {rho: 0.2}}}\n",
         "factorial.per_model.llama31-8: unknown model 'llama31-8' (did you mean 'llama31-8b'?) "
         "(the keys of `models`)"),
        (NO_PER_MODEL, "  per_model: {llama31-8b: {weigth: {rho: 0.2}}}\n",
         "factorial.per_model.llama31-8b.weigth: 'weigth' is not one of factorial.methods (weight, activation)"),
        (NO_PER_MODEL, "  models: [llama32-1b]\n  per_model: {qwen25-14b: {weight: {rho: 0.2}}}\n",
         "factorial.per_model.qwen25-14b: model 'qwen25-14b' is not in factorial.models (llama32-1b)"),
        (SHARED_PARAMS, SHARED_PARAMS + "    base: {}\n",
         "factorial.methods.base: every model's base condition is made for you: leave base out of methods"),
        (SHARED_PARAMS, SHARED_PARAMS + "    temprature: {temperature: 1.2}\n",
         "factorial.methods.temprature: unknown method 'temprature' (did you mean 'temperature'?) "
         "(expected one of: weight, activation, prompt, temperature)"),
        ("  methods:\n", "  models: [llama32-1b, llama-3b]\n  methods:\n",
         "factorial.models[1]: unknown model 'llama-3b' (did you mean 'llama32-3b'?) (the keys of `models`)"),
        ("  versus_base: [aut, task_task]\n  all_conditions:\n    - {task: dat, samples_per_item: 100, automatic_only: "
         "true}\n", "  versus_base: []\n",
         "factorial: the cross product is empty: give tasks in versus_base or all_conditions"),
        ("    weight: {rho: 0.1, alpha: 1.0, prompt_set: dat}\n    activation: {coeff: 3.0}\n", "    {}\n",
         "factorial.methods: versus_base compares each method with base: give at least one method"),
        ("[aut, task_task]", "[aut, task_task, aut]",
         "factorial.versus_base[2]: task 'aut' is listed twice (first at factorial.versus_base[0])"),
    ],
)  # fmt: skip
def test_factorial_problems_are_said_in_the_block(old: str, new: str, expected: str) -> None:
    assert expected in _problems(old, new)


def test_a_name_both_forms_give_is_a_problem_said_once() -> None:
    own = (
        "conditions:\n  - {key: llama32-1b-weight, model: llama32-1b, method: weight, params: {rho: 0.2}}\n"
        "deployments:\n  - {slug: llama32-1b-dat, model: llama32-1b, task: dat, conditions: [llama32-1b-base],"
        " automatic_only: true}\n"
    )
    assert _problems("seed: 2607", "seed: 2607", appended=own) == [
        "conditions[0].key: 'llama32-1b-weight' is also a condition the factorial block makes "
        "(factorial.methods.weight): rename it, or leave it out of the factorial block",
        "deployments[0].slug: 'llama32-1b-dat' is also a deployment the factorial block makes "
        "(factorial.all_conditions[0]): rename it, or leave it out of the factorial block",
    ]


def test_a_problem_in_an_expanded_entry_is_said_at_its_origin_once() -> None:
    """The checks of the explicit form find it; it is said where the block gives the value,
    naming the expanded entries, not once per model at an index the file does not have."""
    problems = _problems(SHARED_PARAMS, "    weight: {rho: 3, alpah: 1.0, prompt_set: dat}\n")
    assert problems == [
        "factorial.methods.weight.alpah: unknown parameter for method 'weight' (known: alpha, layers, "
        "module_patterns, prompt_file, prompt_set, ranking, rho) (expanded conditions 'llama32-1b-weight', "
        "'llama32-3b-weight', 'llama31-8b-weight' and 3 more)",
        "factorial.methods.weight.rho: keep ratio must be in (0, 1], got 3 (expanded conditions "
        "'llama32-1b-weight', 'llama32-3b-weight', 'llama31-8b-weight' and 3 more)",
    ]
    own = "  per_model: {phi35-mini: {activation: [3.0]}}\n"
    assert _problems(NO_PER_MODEL, own) == [
        "factorial.per_model.phi35-mini.activation: expected a mapping, got a list "
        "(expanded condition 'phi35-mini-activation')"
    ]
    # A deployment field given in a task entry: said at that field; the rater arithmetic at the entry.
    problems = _problems("- {task: dat, samples_per_item: 100, automatic_only: true}", "- {task: dat, raters: {}}")
    assert problems == [
        "factorial.all_conditions[0]: raters.stimuli_per_rater (10) must be a multiple of the deployment's "
        "3 conditions, so every rater sees each condition equally often (expanded deployments "
        "'llama32-1b-dat', 'llama32-3b-dat', 'llama31-8b-dat' and 3 more)"
    ]
    problems = _problems("[aut, task_task]", "[aut, {task: task_task, automatic_only: maybe}]")
    assert problems[0].startswith("factorial.versus_base[1].automatic_only: expected true or false (expanded ")


def test_the_explicit_paper_spec_still_loads_on_its_own() -> None:
    spec = spec_parse(EXPLICIT.read_bytes())
    assert "factorial" not in spec.raw and len(spec.raw["deployments"]) == 30
