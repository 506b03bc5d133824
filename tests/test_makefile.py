"""The Makefile: the venv step installs the project; serve and worker start on a finished set-up."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

STAMP_INPUTS = ("Makefile", "requirements.txt", "requirements-dev.txt", "requirements-models.txt",
                "constraints.txt", "pyproject.toml")  # fmt: skip


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The Makefile and the files its venv stamp depends on, with a finished set-up's stamp."""
    for name in STAMP_INPUTS:
        shutil.copy(Path(REPO_ROOT) / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    time.sleep(0.01)
    (tmp_path / ".venv" / ".installed").touch()
    return tmp_path


def _make(folder: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-n", *targets], cwd=folder, capture_output=True, text=True, timeout=60)


def test_the_venv_step_installs_the_project_editable(checkout: Path) -> None:
    (checkout / ".venv" / ".installed").unlink()
    planned = _make(checkout, ".venv/.installed").stdout
    assert "pip install -q --no-deps --no-build-isolation -e ." in planned


SERVICES = [("serve", "gunicorn studyapp.wsgi"), ("worker", "celery -A studyapp")]


@pytest.mark.parametrize(("target", "starts"), SERVICES)
def test_serve_and_worker_start_only_what_they_need_on_a_finished_setup(checkout: Path, target: str, starts: str):
    planned = _make(checkout, target)
    assert planned.returncode == 0, planned.stderr
    assert starts in planned.stdout
    for setup_step in ("pip install", "install_system_packages", "npm ci", "prepare-embedded"):
        assert setup_step not in planned.stdout
    assert ("manage.py migrate" in planned.stdout) is (target == "serve")


@pytest.mark.parametrize(("target", "starts"), SERVICES)
def test_serve_and_worker_name_the_setup_when_it_is_missing_or_outdated(checkout: Path, target: str, starts: str):
    time.sleep(0.01)
    (checkout / "pyproject.toml").touch()  # newer than the stamp: the venv is out of date
    outdated = _make(checkout, target)
    (checkout / ".venv" / ".installed").unlink()
    missing = _make(checkout, target)
    for run in (outdated, missing):
        assert run.returncode == 2
        assert "run `make setup` first" in run.stderr.splitlines()[0]
        assert starts not in run.stdout
