"""Server paths in specs (issue 21, item 4): a model source, a prompt file and an artifact path
must lie under their roots (MODEL_ROOTS, DATA_ROOTS, ARTIFACT_DIR/<study>), checked at spec
load, admin save and job start before anything is opened; a refusal names the roots and says
nothing of what lies at the path, nor whether anything does."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from django.urls import reverse

from studyapp.studies.generation_jobs import generation_start
from studyapp.studies.models import Condition, GenerationJob, LanguageModel, Study
from studyapp.studies.spec import SpecError
from studyapp.studies.study_loading import study_load
from tests.conftest import REPO_ROOT
from tests.factories import panel_user
from tests.studyapp.studies.conftest import tiny_model_dir, tiny_spec  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db
SETTINGS_FILE = REPO_ROOT / "studyapp" / "settings.py"
A_LINE_OF_SETTINGS = "BASE_DIR = Path(__file__)"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder under the suite's MODEL_ROOTS; the checks never open it."""
    return tmp_path / "models" / "tiny"


def _problems(spec: str) -> list[str]:
    with pytest.raises(SpecError) as refused:
        study_load(content=spec, source="paths.yaml")
    assert not Study.objects.exists()
    return refused.value.problems


def _with_condition(model_dir: Path, extra: str) -> str:
    """The tiny spec whose weight condition carries ``extra`` (YAML flow fields)."""
    spec = tiny_spec(model_dir)
    weight = "  - {key: weight, model: tiny, method: weight, params: {rho: 0.1, alpha: 1.0, prompt_set: dat}}"
    assert weight in spec
    return spec.replace(weight, weight[:-1] + f", {extra}}}")


def test_a_model_source_outside_model_roots_is_refused_without_touching_it(model_dir, settings) -> None:
    for outside in ("/proc/self/status", str(SETTINGS_FILE), "/root/.ssh/no-such-key", "/models/../etc"):
        spec = tiny_spec(model_dir).replace(f'source: "{model_dir}"', f'source: "{outside}"')
        (problem,) = _problems(spec)
        roots = ", ".join(str(root) for root in settings.MODEL_ROOTS)
        assert problem == f"models[0].source: it must be an absolute path under MODEL_ROOTS ({roots})"


def test_the_words_are_the_same_whether_a_file_outside_exists_or_not(model_dir) -> None:
    """No existence oracle: /etc/passwd and /etc/no-such-file get the same sentence."""
    said = [
        _problems(_with_condition(model_dir, f"params: {{prompt_set: dat, prompt_file: {path}}}"))
        for path in ("/etc/passwd", "/etc/no-such-file")
    ]
    assert [p.replace("passwd", "X").replace("no-such-file", "X") for p in said[0]] == [
        p.replace("passwd", "X").replace("no-such-file", "X") for p in said[1]
    ]
    assert "DATA_ROOTS" in said[0][0] and "exist" not in said[0][0]


def test_a_prompt_file_and_another_studys_artifacts_are_refused_at_load(model_dir, settings, tmp_path) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    theirs = tmp_path / "artifacts" / "another-team" / "weight-0123456789ab"
    theirs.mkdir(parents=True)
    extra = f"params: {{rho: 0.1, prompt_set: dat, prompt_file: {SETTINGS_FILE}}}, artifact_path: {theirs}"
    problems = _problems(_with_condition(model_dir, extra))
    assert problems == [
        f"conditions[1].params.prompt_file: it must be an absolute path under DATA_ROOTS "
        f"({', '.join(str(root) for root in settings.DATA_ROOTS)})",
        f"conditions[1].artifact_path: it must be an absolute path under ARTIFACT_DIR/<study> "
        f"({tmp_path / 'artifacts' / 'tiny'})",
    ]
    own = tmp_path / "artifacts" / "tiny" / "weight-0123456789ab"
    study, _ = study_load(content=_with_condition(model_dir, f"artifact_path: {own}"))
    assert study.conditions.get(key="weight").artifact_path == str(own)


def test_a_symbolic_link_inside_a_root_cannot_lead_out_of_it(model_dir, tmp_path) -> None:
    link = tmp_path / "prompts.yaml"  # tmp_path lies under the suite's DATA_ROOTS
    link.symlink_to(SETTINGS_FILE)
    (problem,) = _problems(_with_condition(model_dir, f"params: {{prompt_set: dat, prompt_file: {link}}}"))
    assert problem.endswith("it leads out of them through a symbolic link")


def test_relative_paths_are_refused(model_dir) -> None:
    spec = tiny_spec(model_dir).replace(f'source: "{model_dir}"', 'source: "studyapp"')
    (problem,) = _problems(spec)
    assert problem.endswith("relative paths are not used")


def test_the_shipped_specs_and_files_load_with_the_default_roots(settings) -> None:
    study, _ = study_load(content=(REPO_ROOT / "studies" / "creativityneuro.yaml").read_bytes())
    assert study.language_models.exclude(source="embedded").count() == 6  # /models/... by default
    shipped = REPO_ROOT / "generation" / "steering_prompts.yaml"
    demo = (REPO_ROOT / "studies" / "demo.yaml").read_text()
    demo = demo.replace("prompt_set: dat", f"prompt_set: dat, prompt_file: {shipped}", 1)
    assert str(shipped) in demo
    study_load(content=demo)


def _admin_change(client, obj, **changes):
    """POST the admin's change form of ``obj`` with its own values and ``changes``."""
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {name: "" if value is None else value for name, value in data.items()}
    if "params" in data and not isinstance(data["params"], str):
        data["params"] = json.dumps(data["params"])
    return client.post(url, {**data, **changes})


def test_the_admin_refuses_paths_outside_their_roots_and_stores_nothing(client, model_dir, settings) -> None:
    study, _ = study_load(content=tiny_spec(model_dir))
    client.force_login(panel_user(username="researcher", study=study))
    model = study.language_models.get()
    page = _admin_change(client, model, source="/proc/self/status")
    assert page.status_code == 200 and "MODEL_ROOTS" in html.unescape(page.content.decode())
    condition = study.conditions.get(key="weight")
    params = json.dumps({"rho": 0.1, "prompt_set": "dat", "prompt_file": "/root/.ssh/id_rsa"})
    page = _admin_change(client, condition, params=params, artifact_path="/var/lib/another-team/artifact")
    text = html.unescape(page.content.decode())
    assert page.status_code == 200 and "DATA_ROOTS" in text and "ARTIFACT_DIR/<study>" in text
    model.refresh_from_db()
    condition.refresh_from_db()
    assert model.source == str(model_dir) and "prompt_file" not in condition.params
    assert condition.artifact_path == ""


def test_a_job_refuses_a_path_outside_its_roots_before_opening_it(
    tiny_model_dir,  # noqa: F811 (the fixture)
    celery_eager,
    django_capture_on_commit_callbacks,
    settings,
    tmp_path,
) -> None:
    """A path stored before the check (or by hand) is refused when the job starts: the red team's
    dashboard showed a line of settings.py from such a prompt file."""
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study, _ = study_load(content=tiny_spec(tiny_model_dir))
    Condition.objects.filter(study=study, key="weight").update(
        params={"rho": 0.1, "prompt_set": "dat", "prompt_file": str(SETTINGS_FILE)}
    )
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study)
    job = GenerationJob.objects.get(condition__key="weight")
    assert job.status == "failed"
    assert job.error_message.startswith("PathRefused: prompt_file: it must be an absolute path under DATA_ROOTS")
    assert A_LINE_OF_SETTINGS not in job.error_message and "settings.py" not in re.sub(r"\(.*\)", "", job.error_message)
    assert not (tmp_path / "artifacts").exists()  # nothing was built from it
    assert GenerationJob.objects.get(condition__key="base").status == "succeeded"
    assert LanguageModel.objects.get(study=study).source == str(tiny_model_dir)
