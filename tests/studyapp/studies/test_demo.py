"""``manage.py demo``: load, generate in-process, build slots, print where to look; idempotent."""

from __future__ import annotations

import hashlib
from unittest.mock import Mock

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.management import call_command

from studyapp.rating.models import Participant, Rating, Slot
from studyapp.studies.management.commands import demo
from studyapp.studies.models import GenerationJob, Stimulus, Study
from tests.studyapp.studies.conftest import tiny_spec

DEMO_YAML = django_settings.BASE_DIR / "studies" / "demo.yaml"


def demo_spec(model_dir) -> str:
    """The demo's shape with the tiny model: one rated AUT deployment (4 samples per item, 2 of them
    rated) and an automatic-only DAT deployment over both conditions."""
    spec = tiny_spec(model_dir, slug="demo", conditions=("base", "weight"), samples=4, raters=8)
    # 4 stimuli per rater: ratings z-scored within a rater need more than one per condition.
    spec = spec.replace("raters: {per_deployment:", "raters: {samples_per_item: 2, per_deployment:")
    spec = spec.replace("stimuli_per_rater: 2}", "stimuli_per_rater: 4}")
    spec = spec.replace("tasks:\n  - key: aut\n", "tasks:\n  - key: dat\n    items: [comma]\n  - key: aut\n")
    return spec + (
        "  - {slug: dat, model: tiny, task: dat, conditions: [base, weight],\n"
        "     samples_per_item: 4, automatic_only: true}\n"
    )


def _table(out: str, title: str, following: str) -> list[list[str]]:
    """The rows of one printed table (header line excluded) as split cells."""
    block = out.split(title, 1)[1].split(following, 1)[0]
    lines = [line.split() for line in block.splitlines()[2:] if line.strip() and not line.strip().startswith("warning")]
    return [cells for cells in lines if cells]


# Transactional, as the command runs in autocommit: jobs are queued on commit, at once.
@pytest.mark.django_db(transaction=True)
def test_demo_command_runs_end_to_end_and_again(tiny_model_dir, tmp_path, settings, capsys) -> None:
    # The shipped demo's shape with the tiny model in place of the embedded one: same flow, seconds not minutes.
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    settings.VAR_DIR = tmp_path / "var"
    spec = tmp_path / "demo.yaml"
    spec.write_text(demo_spec(tiny_model_dir))

    call_command("demo", "--spec", str(spec))
    out = capsys.readouterr().out
    study = Study.objects.get(slug="demo")
    assert study.is_open
    assert set(GenerationJob.objects.values_list("status", flat=True)) == {"succeeded"}
    # AUT: 2 items x 4 samples x 2 conditions; DAT: 1 item x 4 samples x 2 conditions.
    assert Stimulus.objects.count() == 16 + 8
    assert not Stimulus.objects.filter(metrics={}).exists()
    # Slots only for the rated deployment; its 2 x 2 rated stimuli per condition, 8 raters.
    assert Slot.objects.filter(deployment__study=study).count() == 8
    assert not Slot.objects.filter(deployment__automatic_only=True).exists()
    for text in ("/panel/demo/", "/admin/", "/r/demo/?PROLIFIC_PID=", "createsuperuser"):
        assert text in out
    # The automatic metrics, one line per (deployment, condition) under the table's header.
    assert "Automatic metrics per condition" in out
    table = out.split("Automatic metrics per condition", 1)[1].split("Simulating", 1)[0]
    assert "similarity" in table
    assert sum(1 for line in table.splitlines() if line.strip().split()[1:2] in (["base"], ["weight"])) == 4

    # Simulated raters went through the rater pages; everything they left is marked simulated.
    participants = Participant.objects.filter(study=study)
    assert participants.exists() and not participants.filter(simulated=False).exists()
    assert Rating.objects.filter(stimulus__deployment__study=study).exists()
    assert "marked simulated" in out

    # The three result tables, with a row for each condition.
    assert "SIMULATED" in out.split("1. Rated effects", 1)[0]
    effects = _table(out, "1. Rated effects", "models (")
    assert {(cells[0], cells[1]) for cells in effects} == {
        (dimension, "weight") for dimension in ("originality", "surprise", "creativity")
    }
    # Each dimension's model is named under the table: the design's maximal structure, simplified where singular.
    models = out.split("models (", 1)[1].split("2. Mode collapse", 1)[0]
    for dimension in ("originality", "surprise", "creativity"):
        assert f"{dimension}: score ~ condition + " in models
    diversity = _table(out, "2. Mode collapse", "3. DAT per model")
    assert {cells[0] for cells in diversity} == {"weight"} and len(diversity) >= 3
    dat = _table(out, "3. DAT per model and condition", "norms:")
    assert {(cells[0], cells[1]) for cells in dat} == {("tiny", "base"), ("tiny", "weight")}
    report = study.reports.get()
    assert f"The report: {report.out_dir}" in out and (tmp_path / "var" / "reports").is_dir()

    call_command("demo", "--spec", str(spec))
    again = capsys.readouterr().out
    assert "already loaded" in again and "Writing the analysis report" not in again
    assert Study.objects.count() == 1 and Stimulus.objects.count() == 24
    assert Slot.objects.filter(deployment__study=study).count() == 8
    assert study.reports.count() == 1 and "3. DAT per model and condition" in again
    assert Participant.objects.filter(study=study).count() == participants.count()


class _StopBeforeGenerating(Exception):
    pass


@pytest.mark.django_db
def test_demo_spec_is_the_default(monkeypatch, capsys) -> None:
    # Without --spec the command builds the study of studies/demo.yaml; stopped before the
    # (minutes-long) generation with the embedded model, which the test above runs.
    started = Mock(side_effect=_StopBeforeGenerating)
    monkeypatch.setattr(demo, "generation_start", started)
    with pytest.raises(_StopBeforeGenerating):
        call_command("demo")
    shipped = DEMO_YAML.read_bytes()
    study = Study.objects.get()
    assert started.call_args.kwargs == {"study": study}
    assert f"Study 'demo' loaded from {DEMO_YAML}." in capsys.readouterr().out
    assert study.spec_sha256 == hashlib.sha256(shipped).hexdigest()
    assert study.slug == "demo" and study.spec == yaml.safe_load(shipped)
    deployments = yaml.safe_load(shipped)["deployments"]
    assert sorted(study.deployments.values_list("slug", flat=True)) == sorted(d["slug"] for d in deployments)
