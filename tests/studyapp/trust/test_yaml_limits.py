"""YAML bombs (issue 21, item 3): a spec is parsed within limits of size, depth and alias
expansion, and every bomb is a listed spec error in under a second - in the admin's upload,
in `manage.py load_study`, and in a researcher's own YAML files read by the workers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from generation.safe_yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES, yaml_load_limited
from generation.task_families import read_yaml_file
from studyapp.studies.models import Study
from tests.conftest import REPO_ROOT, _test_database_url
from tests.factories import panel_user
from tests.studyapp.trust.servers import clean_env


def _laughs(levels: int) -> str:
    """The red team's bomb: each level an anchored list of nine aliases of the level before."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels + 1)]
    return "spec_version: '1'\nslug: bomb\ntitle: Bomb\n" + "\n".join(lines) + "\n"


BOMBS = {
    "eight levels of aliases": _laughs(8),  # 9^8 = 43 million values once expanded
    "a recursive alias": "spec_version: '1'\nslug: loop\ntitle: Loop\nmodels: &m [*m]\n",
    "5,000 nested levels": "slug: deep\nmodels: " + "[" * 5000 + "]" * 5000 + "\n",
    "mapping merges": "a: &a {x: 1, y: 2}\n"
    + "".join(f"m{n}: &m{n} {{<<: [{', '.join([f'*m{n - 1}' if n > 1 else '*a'] * 9)}]}}\n" for n in range(1, 9)),
    "too large": "title: " + "x" * MAX_BYTES + "\n",
}
EXPECTED = {
    "eight levels of aliases": f"more than {MAX_NODES} values once its aliases are expanded",
    "a recursive alias": "an alias refers to its own anchor",
    "5,000 nested levels": f"nested deeper than {MAX_DEPTH} levels",
    "mapping merges": f"more than {MAX_NODES} values once its aliases are expanded",
    "too large": "larger than",
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_yaml_bomb_uploaded_in_the_admin_is_a_listed_error_within_a_second(client, name) -> None:
    client.force_login(panel_user(username="researcher"))
    started = time.perf_counter()
    page = client.post(
        reverse("admin:studies_study_load_spec"), {"spec": SimpleUploadedFile("bomb.yaml", BOMBS[name].encode())}
    )
    elapsed = time.perf_counter() - started
    assert page.status_code == 200
    problems = page.content.decode().split('class="errorlist"')[1].split("</ul>")[0]
    assert EXPECTED[name] in problems or (name == "too large" and "larger than 500 kB" in problems)
    assert elapsed < 1.0, elapsed
    assert not Study.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["a recursive alias", "5,000 nested levels", "eight levels of aliases"])
def test_load_study_answers_a_bomb_with_a_listed_error_and_exit_status_2(tmp_path: Path, name) -> None:
    spec = tmp_path / "bomb.yaml"
    spec.write_text(BOMBS[name])
    result = subprocess.run(
        [sys.executable, "manage.py", "load_study", str(spec)],
        cwd=REPO_ROOT,
        env=clean_env(DATABASE_URL=_test_database_url()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and EXPECTED[name] in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("1 problem(s) in the spec; nothing was loaded")


def test_a_researchers_yaml_file_read_by_a_worker_is_held_to_the_same_limits(tmp_path: Path) -> None:
    bomb = tmp_path / "prompts.yaml"
    bomb.write_text(_laughs(8))
    with pytest.raises(ValueError, match="once its aliases are expanded"):
        read_yaml_file(bomb, what="prompt file")


def test_the_shipped_files_and_specs_are_well_within_the_limits() -> None:
    for path in [*(REPO_ROOT / "studies").glob("*.yaml"), *(REPO_ROOT / "generation").glob("*.yaml")]:
        assert yaml_load_limited(path.read_bytes())
    # Aliases that expand within the limits are ordinary YAML.
    assert yaml_load_limited("a: &a [1, 2]\nb: [*a, *a]\n") == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_a_yaml_error_names_the_place_but_never_the_text_there(tmp_path: Path) -> None:
    """A worker's error reaches the dashboard: it must not show the file's lines."""
    broken = tmp_path / "prompts.yaml"
    broken.write_text("dat:\n  pairs: [\nSECRET_LINE: value: other\n")
    with pytest.raises(ValueError) as error:
        read_yaml_file(broken, what="prompt file")
    assert "SECRET_LINE" not in str(error.value) and "line 3" in str(error.value)
