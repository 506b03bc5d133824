"""The notebooks, one per question a reader asks, each executed on the demo's export.

Each runs as ``jupyter execute notebooks/X.ipynb`` runs it (``tests.notebooks``): the kernel
starts in notebooks/ with no PYTHONPATH, so ``import analysis`` proves the installed package.
The rated effects, mode collapse and DAT notebooks must reproduce the demo report's tables
(its ``results.json``), computed by the platform from the same study.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from django.core.management import call_command
from django.test import override_settings

from analysis.combinatorial_findings import findings
from analysis.mixed import prepare_ratings
from studyapp.studies.models import StudyReport
from tests.analysis.test_combinatorial_findings import _tables as constructed_run_tables
from tests.conftest import REPO_ROOT
from tests.notebooks import NOTEBOOKS, execute_notebook
from tests.studyapp.studies.test_demo import demo_spec

# The demo's export is built in the database (the fixture); the tests only read its files.
on_the_demos_export = pytest.mark.django_db
QUESTIONS = ("rated_effects.ipynb", "mode_collapse.ipynb", "dat.ipynb", "combinatorial.ipynb")


@dataclass(frozen=True)
class DemoExport:
    folder: Path
    results: dict[str, Any]  # the demo report's results.json

    def table(self, name: str, fmt: str) -> Path:
        return self.folder / f"demo-{name}.{fmt}"


@pytest.fixture(scope="module")
def demo_export(django_db_setup, django_db_blocker, tiny_model_dir, tmp_path_factory) -> DemoExport:
    """``manage.py demo`` on the demo's shape with the tiny model (test_demo's), then
    ``manage.py export_study demo``: built once for this module's notebooks. The commands run in
    autocommit, as in a transactional test, and the database is flushed afterwards as after one."""
    root = tmp_path_factory.mktemp("demo")
    spec = root / "demo.yaml"
    spec.write_text(demo_spec(tiny_model_dir))
    with django_db_blocker.unblock(), override_settings(ARTIFACT_DIR=root / "artifacts", VAR_DIR=root / "var"):
        try:
            call_command("demo", "--spec", str(spec), stdout=io.StringIO())
            call_command("export_study", "demo", "--out", str(root / "export"), stdout=io.StringIO())
            report = StudyReport.objects.get(study__slug="demo", status=StudyReport.Status.READY)
            results = json.loads((Path(report.out_dir) / "results.json").read_text())
        finally:
            call_command("flush", interactive=False, verbosity=0)
    return DemoExport(root / "export", results)


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where two JSON tables differ: numbers by more than float32 noise allows (the texts are
    embedded in float32, here in another process: differences of 4e-6 relative were seen), anything
    else at all. NaN and null are the same missing value."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if ours.keys() != theirs.keys():
            return [f"{path}: keys {sorted(ours)} != {sorted(theirs)}"]
        return [d for key in ours for d in differences(ours[key], theirs[key], f"{path}.{key}")]
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return [f"{path}: {len(ours)} items != {len(theirs)}"]
        return [d for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    missing = [x is None or (isinstance(x, float) and math.isnan(x)) for x in (ours, theirs)]
    if all(missing):
        return []
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (ours, theirs))
    if numbers and not any(missing) and math.isclose(ours, theirs, rel_tol=1e-5, abs_tol=1e-6):
        return []
    return [] if ours == theirs else [f"{path}: {ours!r} != {theirs!r}"]


def test_one_notebook_per_question_committed_without_outputs() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(QUESTIONS)
    for name in QUESTIONS:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code), name
        assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# "), name


@on_the_demos_export
def test_rated_effects_notebook_gives_the_reports_main_table(demo_export, tmp_path, monkeypatch) -> None:
    ratings = demo_export.table("ratings", "parquet")
    execute_notebook(
        "rated_effects.ipynb",
        monkeypatch,
        ANALYSIS_RATINGS=ratings,
        ANALYSIS_PARTICIPANTS=demo_export.table("participants", "csv"),
        ANALYSIS_OUT=tmp_path,
    )
    columns = ["dimension", "term", "estimate", "ci_low", "ci_high", "p", "p_holm", "d_z"]
    from_notebook = pd.read_csv(tmp_path / "notebook_main_table.csv")[columns]
    from_report = pd.DataFrame(demo_export.results["effects"]["rows"])[columns]
    assert len(from_report) == 3  # weight vs base on each of the three dimensions
    pd.testing.assert_frame_equal(from_notebook, from_report, check_dtype=False, rtol=1e-9)
    participants = pd.read_csv(tmp_path / "notebook_participants.csv")
    assert len(participants) == 8 and (participants["ratings_analysed"] > 0).all()
    assert participants["ratings_analysed"].sum() == len(prepare_ratings(pd.read_parquet(ratings)))


@on_the_demos_export
def test_mode_collapse_notebook_gives_the_reports_table(demo_export, tmp_path, monkeypatch) -> None:
    # The CSV export: its spreadsheet marks are removed on reading, so the texts are the report's.
    execute_notebook(
        "mode_collapse.ipynb", monkeypatch, ANALYSIS_STIMULI=demo_export.table("stimuli", "csv"), ANALYSIS_OUT=tmp_path
    )
    from_notebook = json.loads((tmp_path / "notebook_mode_collapse.json").read_text())
    assert {row["condition"] for row in from_notebook["pooled"]} == {"weight"}
    assert differences(from_notebook, demo_export.results["diversity"]) == []


@on_the_demos_export
def test_dat_notebook_gives_the_reports_table(demo_export, tmp_path, monkeypatch) -> None:
    execute_notebook(
        "dat.ipynb", monkeypatch, ANALYSIS_STIMULI=demo_export.table("stimuli", "parquet"), ANALYSIS_OUT=tmp_path
    )
    from_notebook = json.loads((tmp_path / "notebook_dat.json").read_text())
    assert [(row["model"], row["condition"], row["n"]) for row in from_notebook["rows"]] == [
        ("tiny", "base", 4),
        ("tiny", "weight", 4),
    ]
    assert "GloVe 840B" in from_notebook["norms"]  # MiniLM scores: no percentiles, and the table says why
    assert differences(from_notebook, demo_export.results["dat"]) == []


def test_combinatorial_notebook_reads_the_committed_findings_or_computes_a_runs(tmp_path, monkeypatch) -> None:
    execute_notebook("combinatorial.ipynb", monkeypatch, ANALYSIS_OUT=tmp_path)
    committed = pd.read_csv(Path(REPO_ROOT) / "docs" / "combinatorial" / "best_architectures.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "notebook_best_architectures.csv"), committed)

    # A run folder whose answer is known: depth 2 far ahead of 1 and 4.
    models, prompts = constructed_run_tables(lambda depth, seed, prompt, rng: 5.0 if depth == 2 else 1.0)
    run = tmp_path / "run"
    run.mkdir()
    models.to_csv(run / "scaling.csv", index=False)
    prompts.to_csv(run / "prompt_scores.csv", index=False)
    execute_notebook("combinatorial.ipynb", monkeypatch, ANALYSIS_CC_RUN=run, ANALYSIS_OUT=tmp_path)
    best = pd.read_csv(tmp_path / "notebook_best_architectures.csv")
    assert best.loc[0, "depth"] == 2 and bool(best.loc[0, "clear"])
    expected = findings(models, prompts, temperature=0.7, n_boot=1000, seed=0)["best_architectures"]
    expected.to_csv(tmp_path / "expected.csv", index=False)  # through CSV too: "" reads back as missing
    pd.testing.assert_frame_equal(best, pd.read_csv(tmp_path / "expected.csv"), rtol=1e-9)
