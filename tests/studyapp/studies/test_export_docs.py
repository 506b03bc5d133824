"""README's "The export" lists every column each export table produces, and nothing else, so
that the section `export_study --help` points to stays true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.metrics import DIVERSITY_METRICS, METRIC_COLUMNS
from studyapp.studies.exports import EXPORT_FRAMES, PARTICIPANT_COLUMNS, RATING_COLUMNS, STIMULUS_COLUMNS
from studyapp.studies.metrics import GROUP_PREFIX, metrics_compute
from studyapp.studies.models import GenerationJob
from tests.conftest import REPO_ROOT
from tests.studyapp.studies.test_participants_export import _walked_study

# Where a name holds a placeholder (`check_<n>_response`), any text stands for it.
PLACEHOLDER = re.compile(r"<[^>]+>")


def documented_columns() -> dict[str, list[str]]:
    """Each export table's documented column names, from README's "The export": the backquoted
    names in the first cell of every table row under the table's heading (### `ratings`: ...)."""
    readme = (Path(REPO_ROOT) / "README.md").read_text()
    section = readme.split("\n## The export\n", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[str]] = {}
    names: list[str] | None = None
    for line in section.splitlines():
        heading = re.match(r"### `(\w+)`", line)
        if heading:
            names = tables.setdefault(heading.group(1), [])
        elif names is not None and line.startswith("| `"):
            names += re.findall(r"`([^`]+)`", line.split(" | ")[0])
    return tables


def is_documented(column: str, names: list[str]) -> bool:
    return any(re.fullmatch(PLACEHOLDER.sub(".+", re.escape(name)), column) for name in names)


def test_the_readme_lists_each_tables_fixed_columns_and_no_other() -> None:
    documented = documented_columns()
    assert list(documented) == list(EXPORT_FRAMES)
    literal = {table: {name for name in names if not PLACEHOLDER.search(name)} for table, names in documented.items()}
    group_metrics = [GROUP_PREFIX + name for name in ("n_samples", *DIVERSITY_METRICS)]
    assert literal["ratings"] == set(RATING_COLUMNS)
    assert literal["stimuli"] == {*STIMULUS_COLUMNS, *METRIC_COLUMNS, *group_metrics}
    assert literal["participants"] == set(PARTICIPANT_COLUMNS)
    patterns = {table: sorted(set(names) - literal[table]) for table, names in documented.items()}
    assert patterns == {
        "ratings": [],
        "stimuli": ["metric_<name>"],
        "participants": ["check_<n>_passed", "check_<n>_response", "debrief_<key>"],
    }


def test_is_documented_reads_placeholders() -> None:
    assert is_documented("check_12_passed", ["check_<n>_passed"]) and is_documented("rater", ["rater"])
    assert not is_documented("check_1_passed_at", ["check_<n>_passed"]) and not is_documented("raters", ["rater"])


@pytest.mark.django_db
@pytest.mark.slow  # the metrics load the embedded MiniLM
def test_every_column_of_a_studys_export_is_documented() -> None:
    # A walked study with an attention check and three debrief questions, and its texts' real
    # automatic metrics: every kind of column the export writes.
    built = _walked_study()
    for job in GenerationJob.objects.filter(deployment__study=built.study):
        assert metrics_compute(job_id=job.pk) > 0
    documented = documented_columns()
    for table, build in EXPORT_FRAMES.items():
        columns = list(build(study=built.study).columns)
        assert [column for column in columns if not is_documented(column, documented[table])] == [], table
        produced = " ".join(columns)
        for kind in {"stimuli": ("aut_originality", "group_vendi_score"), "participants": ("check_1_", "debrief_")}.get(
            table, ()
        ):
            assert kind in produced, (table, kind)
