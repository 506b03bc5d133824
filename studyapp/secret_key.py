"""The install's own secret key, for when ``SECRET_KEY`` is not set: generated once, kept in a file.

Never a constant: a key written in the source is public, and with it anyone can forge
sessions (a researcher's login) and signed page tickets. The file is created with mode
0600 and published atomically (written aside, then hard-linked into place), so processes
starting at once (gunicorn's workers, a Celery worker) all read the one key that won.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

MIN_LENGTH = 50  # what `check --deploy` asks of a secret key


def secret_key_of_install(path: Path) -> str:
    """The key kept at ``path``, generated and written there (mode 0600) if there is none yet."""
    try:
        if not path.exists():
            _secret_key_publish(path, get_random_secret_key())
        key = path.read_text().strip()
    except OSError as error:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set and the install's own key cannot be kept at {path} ({error.strerror}): "
            "set SECRET_KEY, or make that folder writable"
        ) from None
    if len(key) < MIN_LENGTH:
        raise ImproperlyConfigured(f"{path} holds no usable secret key: delete it to have a new one generated")
    return key


def _secret_key_publish(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link fails if another process published first: then theirs is the key.
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
