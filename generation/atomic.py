"""Write files and directories so that a reader sees the old version or the new one, never half of one.

Each writer stages beside its target (same file system, so the final ``os.replace`` is a
rename) under a hidden name unique to the writer, and renames only when the body finished.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a staging path beside ``target`` to write; on success rename it over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
        staging.chmod(0o644)  # mkstemp makes it private; these files are shared with workers
        os.replace(staging, target)
    finally:
        with suppress(FileNotFoundError):
            staging.unlink()


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a staging directory beside ``target``; on success rename it into place.

    A killed process leaves only a hidden staging directory, never a half-written
    ``target``. An existing ``target`` is replaced only after the new one is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; artifacts are shared with workers
        yield staging
        if target.exists():
            # Two renames so readers see either the old or the new artifact, never neither for long.
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, trash / "old")
            os.replace(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
