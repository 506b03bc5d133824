"""``manage.py demo``: load, generate in-process, build slots, print where to look; idempotent."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from studyapp.rating.models import Slot
from studyapp.studies.models import GenerationJob, Stimulus, Study
from tests.studyapp.studies.conftest import tiny_spec


# Transactional, as the command runs in autocommit: jobs are queued on commit, at once.
@pytest.mark.django_db(transaction=True)
def test_demo_command_runs_end_to_end_and_again(tiny_model_dir, tmp_path, settings, capsys) -> None:
    # The shipped demo spec with the tiny model in place of the embedded one: same flow, seconds not minutes.
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    spec = tmp_path / "demo.yaml"
    spec.write_text(tiny_spec(tiny_model_dir, slug="demo", conditions=("base", "weight")))

    call_command("demo", "--spec", str(spec))
    out = capsys.readouterr().out
    study = Study.objects.get(slug="demo")
    assert study.is_open
    assert set(GenerationJob.objects.values_list("status", flat=True)) == {"succeeded"}
    assert Stimulus.objects.count() == 8
    assert not Stimulus.objects.filter(metrics={}).exists()
    assert Slot.objects.filter(deployment__study=study).count() == 4
    for text in ("/panel/demo/", "/admin/", "/r/demo/?PROLIFIC_PID=", "createsuperuser"):
        assert text in out
    # The automatic metrics, one line per (deployment, condition) under the table's header.
    assert "Automatic metrics per condition" in out
    table = out.split("Automatic metrics per condition", 1)[1].split("The demo study is ready", 1)[0]
    assert "similarity" in table
    assert sum(1 for line in table.splitlines() if line.strip().split()[1:2] in (["base"], ["weight"])) == 2

    call_command("demo", "--spec", str(spec))
    out = capsys.readouterr().out
    assert "already loaded" in out
    assert Study.objects.count() == 1 and Stimulus.objects.count() == 8
    assert Slot.objects.filter(deployment__study=study).count() == 4


@pytest.mark.django_db
def test_demo_spec_is_the_default() -> None:
    from studyapp.studies.management.commands import demo

    assert demo.DEMO_SPEC.name == "demo.yaml" and demo.DEMO_SPEC.is_file()
