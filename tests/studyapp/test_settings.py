"""The settings select real services under `make test` and safe defaults elsewhere."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import REPO_ROOT


@pytest.mark.django_db
def test_suite_runs_on_postgresql_through_psycopg3() -> None:
    assert connection.vendor == "postgresql"
    connection.ensure_connection()
    assert type(connection.connection).__module__.startswith("psycopg")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        assert cursor.fetchone()[0]


def test_celery_uses_redis_as_broker_and_result_backend() -> None:
    from studyapp.celery import app

    assert app.conf.broker_url.startswith("redis://")
    assert str(app.conf.result_backend).startswith("redis://")
    assert app.conf.task_always_eager is False
    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier == 1


def test_generation_tasks_are_routed_to_their_own_queue() -> None:
    from studyapp.celery import app

    assert app.amqp.router.route({}, "studyapp.studies.tasks.generation_job_run_task")["queue"].name == "generation"
    assert app.amqp.router.route({}, "studyapp.tasks.worker_environment_task")["queue"].name == "default"


def test_every_task_route_matches_a_task() -> None:
    from fnmatch import fnmatchcase

    from studyapp.celery import app

    app.loader.import_default_modules()  # registers every app's tasks, as a worker does
    names = [name for name in app.tasks if name.startswith("studyapp.")]
    for pattern in app.conf.task_routes:
        assert any(fnmatchcase(name, pattern) for name in names), (pattern, names)


def _run_django(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keep = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**keep, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_zero_setup_defaults_are_sqlite_and_in_process_tasks(tmp_path) -> None:
    probe = (
        "from django.conf import settings; from studyapp.celery import app;"
        "print(settings.DATABASES['default']['ENGINE'], app.conf.task_always_eager)"
    )
    result = _run_django(["shell", "-v", "0", "-c", probe], env={})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True"]


def test_production_mode_passes_check_deploy() -> None:
    env = {
        "PRODUCTION": "1",
        "SECRET_KEY": "x" * 20 + "a-long-random-production-secret-0123456789",
        "ALLOWED_HOSTS": "study.example.org",
        "DATABASE_URL": settings.DATABASES["default"].get("ENGINE") and "postgres://postgres@127.0.0.1:5432/creativity",
    }
    result = _run_django(["check", "--deploy", "--fail-level", "WARNING"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
