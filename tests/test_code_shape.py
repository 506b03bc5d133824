"""House rules a reader relies on (README, "Layout"): short functions, or a reason at the top.

A function of the project's code longer than MAX_LINES must say why in its docstring, in a
line starting with "Long because" (a flat argparse declaration, a template of one report
page...). Migrations and tests are exempt.
"""

import ast

from tests.conftest import REPO_ROOT

MAX_LINES = 60
PACKAGES = ("generation", "analysis", "studyapp", "benchmarks")


def _long_functions_without_reason() -> list[str]:
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                length = node.end_lineno - node.lineno + 1
                docstring = ast.get_docstring(node) or ""
                has_reason = any(line.strip().startswith("Long because") for line in docstring.splitlines())
                if length > MAX_LINES and not has_reason:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return offenders


def test_long_functions_say_why() -> None:
    assert _long_functions_without_reason() == []
