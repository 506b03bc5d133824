"""Fixtures shared by the whole suite.

The suite runs against real services: PostgreSQL (through psycopg 3) and Redis, with
real Celery worker processes where a test needs one. `make test` points the settings
at the local servers; running pytest against SQLite is refused rather than silently
testing something else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# Property-based tests draw the same examples on every run, so that `make test` (and CI)
# gives one verdict for one tree; HYPOTHESIS_PROFILE=explore draws new examples each run,
# to hunt for inputs nobody has tried (a failure it finds is then pinned by a plain test).
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis_settings.register_profile("explore")
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
# One key prefix per test session: concurrent runs on one Redis never share a queue.
CELERY_KEYPREFIX = f"test-{uuid.uuid4().hex[:12]}:"


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            f"the suite runs on PostgreSQL, but DATABASE_URL selects {engine}: run `make test` "
            "or set DATABASE_URL=postgres://postgres@127.0.0.1:5432/creativity"
        )
    if settings.CELERY_TASK_ALWAYS_EAGER:
        raise pytest.UsageError(
            "the suite runs on a real Redis broker: run `make test` or set CELERY_BROKER_URL=redis://127.0.0.1:6379/0"
        )
    from studyapp.celery import app

    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "global_keyprefix": CELERY_KEYPREFIX,
    }


@pytest.fixture(autouse=True)
def _entry_rate_limit_high(settings) -> None:
    """Every test client comes from 127.0.0.1 and the database cache outlives transactional
    tests: a limit is set only by the tests about it (tests/studyapp/trust/test_entry_links.py)."""
    settings.ENTRY_RATE_LIMIT_PER_HOUR = 1_000_000


@pytest.fixture(scope="session", autouse=True)
def _test_files_are_under_the_roots(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests keep their models and data files in pytest's temporary folders: the operator of
    this suite adds that folder to MODEL_ROOTS and DATA_ROOTS (studies/paths.py), here and for
    the processes tests start (Celery workers, manage.py), which read the environment."""
    from django.conf import settings

    base = tmp_path_factory.getbasetemp()
    for name in ("MODEL_ROOTS", "DATA_ROOTS"):
        roots = [*getattr(settings, name), base]
        setattr(settings, name, roots)
        os.environ[name] = ",".join(str(root) for root in roots)


@pytest.fixture
def celery_eager() -> Iterator[None]:
    """Run Celery tasks in the calling process, for tests about what a task stores."""
    from studyapp.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = previous


def _test_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@dataclass
class WorkerProcess:
    """A real ``celery worker`` process started by a test."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = field(default=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, as when a machine dies: no clean shutdown, no acknowledgement."""
        self.process.kill()
        self.process.wait(timeout=30)
        self.stopped = True

    def stop(self) -> None:
        if self.stopped:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.stopped = True


@pytest.fixture
def celery_worker_factory(transactional_db: None, tmp_path: Path) -> Iterator[object]:
    """Start real Celery worker processes on the test database and the session's Redis keys.

    Call it as ``start(queues="default,generation", env={...})``; it returns a
    :class:`WorkerProcess` once the worker answers a ping. Tests using it must be
    ``django_db(transaction=True)`` so the worker sees what the test wrote.
    """
    from studyapp.celery import app

    workers: list[WorkerProcess] = []

    def start(queues: str = "default,generation", env: dict[str, str] | None = None) -> WorkerProcess:
        name = f"test-{uuid.uuid4().hex[:8]}@localhost"
        log_path = tmp_path / f"{name.split('@')[0]}.log"
        worker_env = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "CELERY_BROKER_KEYPREFIX": CELERY_KEYPREFIX,
            **(env or {}),
        }
        command = [
            sys.executable, "-m", "celery", "-A", "studyapp", "worker",
            "-Q", queues, "--pool", "solo", "-n", name, "--loglevel", "INFO",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=worker_env, stdout=log_file, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(name=name, process=process, log_path=log_path)
        workers.append(worker)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"celery worker exited with {process.returncode}:\n{worker.log()}")
            if app.control.ping(destination=[name], timeout=1.0):
                return worker
        pytest.fail(f"celery worker did not answer a ping within 90 s:\n{worker.log()}")

    yield start
    for worker in workers:
        worker.stop()
