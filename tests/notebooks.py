"""Executing the project's notebooks as a reader does (``jupyter execute notebooks/X.ipynb``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

NOTEBOOKS = Path(REPO_ROOT) / "notebooks"
# What the notebooks read from the environment; each run sets only what it names.
NOTEBOOK_INPUTS = ("ANALYSIS_RATINGS", "ANALYSIS_STIMULI", "ANALYSIS_PARTICIPANTS", "ANALYSIS_OUT",
                   "ANALYSIS_DAT_VECTORS", "ANALYSIS_DAT_NORMS", "ANALYSIS_CC_RUN")  # fmt: skip


def execute_notebook(name: str, monkeypatch: pytest.MonkeyPatch, **inputs: str | os.PathLike[str]):
    """Execute ``notebooks/<name>`` as ``jupyter execute`` does: the kernel starts in notebooks/,
    not the repository root, and no PYTHONPATH is set, so ``import analysis`` works only because
    the project is installed (the Makefile's venv step: ``pip install -e .``). Returns the
    executed notebook; a failing cell raises ``nbclient.exceptions.CellExecutionError``."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("PYTHONPATH", raising=False)
    for variable in NOTEBOOK_INPUTS:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in inputs.items():
        assert variable in NOTEBOOK_INPUTS, variable
        monkeypatch.setenv(variable, str(value))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    return client.execute()
