"""The layering rules (README, "Layout"): no Django in the libraries, no torch in the web process."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def _imported_modules(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (REPO_ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update((str(path.relative_to(REPO_ROOT)), alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((str(path.relative_to(REPO_ROOT)), node.module))
    return found


@pytest.mark.parametrize("package", ["generation", "analysis"])
def test_libraries_never_import_django(package: str) -> None:
    offenders = sorted(
        f"{path}: {module}"
        for path, module in _imported_modules(package)
        if module.split(".")[0] in {"django", "studyapp", "celery"}
    )
    assert offenders == []


def test_web_process_never_imports_torch() -> None:
    """Loading every URL, view, admin and task module of the web app leaves torch unloaded."""
    probe = """
import sys, django
django.setup()
import importlib, pkgutil, studyapp
from django.urls import get_resolver
get_resolver().url_patterns
from django.contrib import admin
admin.autodiscover()
for module in pkgutil.walk_packages(studyapp.__path__, "studyapp."):
    if ".management.commands." in module.name or module.name.endswith("migrations"):
        continue
    importlib.import_module(module.name)
heavy = sorted(name for name in ("torch", "transformers", "sentence_transformers") if name in sys.modules)
print(",".join(heavy) or "none")
"""
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env={"DJANGO_SETTINGS_MODULE": "studyapp.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


def test_generated_files_are_git_ignored() -> None:
    ignored = (Path(REPO_ROOT) / ".gitignore").read_text().split()
    # ".venv" without a slash: a worktree's .venv is a link to the main checkout's, ignored too.
    for entry in (".venv", "node_modules", "var/"):
        assert entry in ignored


# What `generation` may use of `analysis` (docs/generation.md lists the same): answer
# parsing, the DAT and AUT scorers and their embeddings, the graph-walk task's scoring,
# and the CLI error type. Anything else would tie the libraries together by accident.
GENERATION_USES_OF_ANALYSIS = {
    "analysis.parsers",
    "analysis.dat",
    "analysis.aut",
    "analysis.embeddings",
    "analysis.combinatorial",
    "analysis.cli",
}


def test_analysis_never_imports_generation() -> None:
    offenders = sorted(
        f"{path}: {module}" for path, module in _imported_modules("analysis") if module.split(".")[0] == "generation"
    )
    assert offenders == []


def test_generation_uses_analysis_only_through_its_entry_points() -> None:
    offenders = sorted(
        f"{path}: {module}"
        for path, module in _imported_modules("generation")
        if module.split(".")[0] == "analysis" and module not in GENERATION_USES_OF_ANALYSIS
    )
    assert offenders == []


def test_the_command_lines_start_without_the_heavy_libraries() -> None:
    """`python -m generation --help` loads neither pandas nor torch: the shared UsageError lives in
    analysis.cli, and importing the analysis package loads its submodules only on first use."""
    probe = (
        "import sys, generation.cli, analysis.cli, analysis.parsers; "
        "print(','.join(m for m in ('pandas', 'scipy', 'statsmodels', 'torch') if m in sys.modules) or 'none')"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"
