"""Where a study's paths may point: models under MODEL_ROOTS, data files under DATA_ROOTS,
artifacts under ARTIFACT_DIR/<study slug>.

A spec names paths on the generation workers' disks (``models[].source``,
``conditions[].params.prompt_file``, ``conditions[].artifact_path``). Unchecked, they let a
researcher read the workers' files through error messages (a line of ``settings.py``,
``/proc/self/status``), ask whether a file exists anywhere ("/root/.ssh/id_rsa does not
exist"), and reuse another team's artifacts. Every path is checked here at spec load,
admin save and job start, *before* anything is opened: the check is lexical (the path as
written, made absolute and normalised) and then on the path with its symbolic links
followed, so a link inside a root cannot lead out of it. A refusal names the roots and the
path as the researcher wrote it, and nothing about what lies there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from django.conf import settings

EMBEDDED = "embedded"


class PathRefused(ValueError):
    """A path of a condition lies outside its roots (the message lists each, with the roots)."""


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def path_problem(value: str, *, roots: list[Path], setting: str) -> str | None:
    """Why ``value`` may not be used (it is not under one of ``roots``); None when it may.

    ``setting``: how the roots are named to the researcher, e.g. ``MODEL_ROOTS``.
    """
    listed = ", ".join(str(root) for root in roots) or "none configured"
    where = f"it must be an absolute path under {setting} ({listed})"
    if not value or "\x00" in value:
        return where
    written = Path(value).expanduser()
    if not written.is_absolute():
        return f"{where}; relative paths are not used"
    lexical = Path(os.path.normpath(written))
    normalised_roots = [Path(os.path.normpath(root)) for root in roots]
    if not _within(lexical, normalised_roots):
        return where
    # Inside a root as written: following its links touches only the root's own entries.
    if not _within(Path(os.path.realpath(lexical)), [Path(os.path.realpath(root)) for root in normalised_roots]):
        return f"{where}; it leads out of them through a symbolic link"
    return None


def model_source_problem(source: str) -> str | None:
    """``embedded`` or a model folder / ``.gguf`` file under ``MODEL_ROOTS``."""
    if source == EMBEDDED:
        return None
    return path_problem(source, roots=settings.MODEL_ROOTS, setting="MODEL_ROOTS")


def study_artifact_root(slug: str) -> Path:
    return Path(settings.ARTIFACT_DIR) / slug


def artifact_path_problem(path: str, *, study_slug: str) -> str | None:
    """A study reuses only its own artifacts: ``ARTIFACT_DIR/<study slug>``."""
    if not path:
        return None
    return path_problem(path, roots=[study_artifact_root(study_slug)], setting="ARTIFACT_DIR/<study>")


def prompt_file_problem(prompt_file: object) -> str | None:
    """A condition's ``params.prompt_file`` (None: not given) under ``DATA_ROOTS``."""
    if prompt_file is None:
        return None
    if not isinstance(prompt_file, str):
        return "expected a path (text)"
    return path_problem(prompt_file, roots=settings.DATA_ROOTS, setting="DATA_ROOTS")


def condition_path_problems(
    *, study_slug: str, model_source: str, params: Mapping, artifact_path: str
) -> dict[str, str]:
    """Every path of one condition with its problem, keyed by field (``source``, ``prompt_file``,
    ``artifact_path``); empty when all may be used."""
    problems = {
        "source": model_source_problem(model_source),
        "prompt_file": prompt_file_problem(params.get("prompt_file") if isinstance(params, Mapping) else None),
        "artifact_path": artifact_path_problem(artifact_path, study_slug=study_slug),
    }
    return {field: problem for field, problem in problems.items() if problem}


def condition_paths_require(*, condition) -> None:
    """Raise :class:`PathRefused` unless every path of ``condition`` may be used (a job's start)."""
    problems = condition_path_problems(
        study_slug=condition.study.slug,
        model_source=condition.model.source,
        params=condition.params,
        artifact_path=condition.artifact_path,
    )
    if problems:
        raise PathRefused("; ".join(f"{field}: {problem}" for field, problem in problems.items()))
