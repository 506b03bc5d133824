"""The documentation stands alone: every setting is in the README, every cited section exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITING = ("generation", "analysis", "studyapp", "studies", "docs", "scripts", "benchmarks")
# docs/generation.md, "Sweep" and docs/rating.md ("Rater experience and Prolific operations")
CITATION = re.compile(r'(docs/[\w/-]+\.md)`?,? \(?"([^"]+)"')


def _project_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in CITING:
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".yaml", ".html"}]
    return files


def test_every_setting_read_from_the_environment_is_in_the_readme_table() -> None:
    settings = (ROOT / "studyapp" / "settings.py").read_text()
    names = set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]*)"', settings))
    table = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")]
    documented = {name for line in table for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split(" | ")[0])}
    assert "CONN_MAX_AGE" in names
    assert sorted(names - documented) == []


def test_every_cited_docs_section_exists_with_that_title() -> None:
    cited = []
    for path in _project_files():
        for doc, title in CITATION.findall(path.read_text(errors="replace")):
            cited.append((path.relative_to(ROOT).as_posix(), doc, title))
    assert len(cited) >= 8  # the pattern still finds the citations
    missing = []
    for source, doc, title in cited:
        headings = {line.lstrip("#").strip() for line in (ROOT / doc).read_text().splitlines() if line.startswith("#")}
        if title not in headings:
            missing.append(f'{source}: {doc}, "{title}"')
    assert missing == []


def test_no_project_file_cites_a_file_outside_the_repository() -> None:
    outside = [
        path.relative_to(ROOT).as_posix()
        for path in _project_files()
        if re.search(r"RESEARCH\.md|DESIGN\.md|/work/shared", path.read_text(errors="replace"))
    ]
    assert outside == []


def test_readme_layout_table_names_every_module() -> None:
    """The README's layout table matches the tree: each package's row names each of its modules."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    rows = {line.split(" | ")[0].strip("| `"): line for line in layout.splitlines() if line.startswith("| `")}
    missing = []
    for package in (
        "generation",
        "generation/combinatorial",
        "analysis",
        "studyapp",
        "studyapp/studies",
        "studyapp/rating",
    ):
        row = rows[package + "/"]
        for module in sorted((ROOT / package).glob("*.py")):
            if module.stem in {"__init__", "__main__", "apps", "asgi", "wsgi"}:
                continue
            if f"`{module.stem}`" not in row:
                missing.append(f"{package}/{module.name}")
        for command in sorted((ROOT / package / "management" / "commands").glob("[!_]*.py")):
            if f"`{command.stem}`" not in row:
                missing.append(f"{package}/management/commands/{command.name}")
    assert missing == []
