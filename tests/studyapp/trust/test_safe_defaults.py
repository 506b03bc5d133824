"""Safe by default (issue 21, item 2): DEBUG only when set, a secret key of the install's own
(never a constant), no debug page on any URL, `check --deploy` clean with only DATABASE_URL and
ALLOWED_HOSTS set. Against subprocesses started with nothing else in their environment."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO_ROOT, _test_database_url
from tests.studyapp.trust.servers import clean_env, start_gunicorn
from tests.studyapp.trust.test_sqlite_default import DEBUG_MARKERS

BROKER_PASSWORD = "broker-password-in-the-url"


def _django(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_only_database_url_and_allowed_hosts() -> None:
    result = _django(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DATABASE_URL=_test_database_url(),
        ALLOWED_HOSTS="study.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_debug_is_off_and_the_key_is_the_installs_own_when_nothing_is_set() -> None:
    probe = "from django.conf import settings; print(settings.DEBUG); print(settings.SECRET_KEY)"
    result = _django(["shell", "-v", "0", "-c", probe])
    assert result.returncode == 0, result.stderr
    debug, key = result.stdout.split()
    kept = REPO_ROOT / "var" / "secret_key"
    assert debug == "False"
    assert key == kept.read_text().strip() and len(key) >= 50
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert key not in (REPO_ROOT / "studyapp" / "settings.py").read_text()


GENERATE = (
    "import sys; from pathlib import Path; from studyapp.secret_key import secret_key_of_install;"
    "print(secret_key_of_install(Path(sys.argv[1])))"
)


def _generate_at_once(path: Path, n: int) -> set[str]:
    processes = [
        subprocess.Popen([sys.executable, "-c", GENERATE, str(path)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    return {process.communicate(timeout=60)[0].strip() for process in processes}


def test_processes_starting_at_once_share_one_generated_key_and_installs_differ(tmp_path: Path) -> None:
    """gunicorn's workers boot together: each must read the one key that was published."""
    first = _generate_at_once(tmp_path / "one" / "secret_key", 8)
    second = _generate_at_once(tmp_path / "two" / "secret_key", 2)
    assert len(first) == 1 and len(second) == 1 and first != second
    assert stat.S_IMODE((tmp_path / "one" / "secret_key").stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["secret_key"]  # nothing left aside


@pytest.fixture
def plain_server(transactional_db, tmp_path: Path):
    env = clean_env(
        DATABASE_URL=_test_database_url(),
        CELERY_BROKER_URL=f"redis://:{BROKER_PASSWORD}@127.0.0.1:1/0",
        LOG_LEVEL="CRITICAL",
    )
    server = start_gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=1)
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/admin/login/", {"Host": "attacker.example"}, 400),  # the red team's debug page
        ("/no/such/page/", {}, 404),
        ("/admin/studies/nope/", {}, 302),  # to the login page
        ("/panel/no-such-study/", {}, 302),
        ("/r/no-such-study/", {"Host": "attacker.example"}, 400),
    ],
)
def test_no_debug_page_on_any_url_when_nothing_is_set(plain_server, path, headers, status) -> None:
    response = requests.get(plain_server.url + path, headers=headers, timeout=30, allow_redirects=False)
    assert response.status_code == status
    body = response.text
    assert not any(marker in body for marker in DEBUG_MARKERS)
    assert "URLconf" not in body and "DisallowedHost" not in body and BROKER_PASSWORD not in body
