"""The zero-setup SQLite default holds concurrent raters, and no rater ever sees a debug page
(issue 11, item 4). Against a real gunicorn on a real SQLite file, and with DEBUG on in-process."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import requests
from django.test import Client

from tests.studyapp.rating.helpers import Bot, build_rating_study, text_of
from tests.studyapp.trust.servers import clean_env, manage, start_gunicorn

N_RATERS = 12
SEED = f"""
from tests.studyapp.rating.helpers import build_rating_study
built = build_rating_study(n_items={N_RATERS}, raters={N_RATERS}, per_rater=4)
built.study.slug = "sqlite-demo"
built.study.save()
"""
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def sqlite_server(tmp_path: Path):
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", LOG_LEVEL="WARNING")
    manage(["migrate", "--noinput", "-v", "0"], env)
    manage(["shell", "-v", "0", "-c", SEED], env)
    server = start_gunicorn(env, tmp_path / "gunicorn.log", workers=4, threads=3)
    yield server, env
    server.stop()


@pytest.mark.slow
def test_twelve_simultaneous_consents_on_sqlite_all_succeed(sqlite_server) -> None:
    server, env = sqlite_server
    sessions, forms = [], []
    for n in range(N_RATERS):
        session = requests.Session()
        query = {"PROLIFIC_PID": f"sqlite{n:04d}", "STUDY_ID": "p", "SESSION_ID": f"s{n}"}
        page = session.get(f"{server.url}/r/sqlite-demo/", params=query, timeout=30)
        assert page.status_code == 200 and page.url.endswith("/-/consent/"), page.text[:300]
        sessions.append(session)
        forms.append({"choice": "agree", "csrfmiddlewaretoken": CSRF.search(page.text).group(1)})
    barrier = threading.Barrier(N_RATERS)
    answers: dict[int, requests.Response] = {}

    def consent(n: int) -> None:
        barrier.wait(timeout=30)
        answers[n] = sessions[n].post(
            f"{server.url}/r/sqlite-demo/-/consent/", data=forms[n], timeout=60, allow_redirects=False,
            headers={"Referer": server.url},
        )  # fmt: skip

    threads = [threading.Thread(target=consent, args=(n,)) for n in range(N_RATERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = sorted(response.status_code for response in answers.values())
    assert statuses == [303] * N_RATERS, (statuses, server.log()[-3000:])
    assert {response.headers["Location"] for response in answers.values()} == {"/r/sqlite-demo/-/instructions/"}
    probe = (
        "from studyapp.rating.models import Slot;"
        "print(Slot.objects.exclude(participant=None).values('participant').distinct().count(),"
        " Slot.objects.filter(status='active').count())"
    )
    assert manage(["shell", "-v", "0", "-c", probe], env).stdout.split() == [str(N_RATERS), str(N_RATERS)]
    journal = manage(
        ["shell", "-v", "0", "-c", "from django.db import connection; c=connection.cursor();"
         "c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])"], env
    )  # fmt: skip
    assert journal.stdout.strip() == "wal"


DEBUG_MARKERS = ("Traceback", "Request Method", "technical", "DJANGO_SETTINGS_MODULE", "Local vars")


@pytest.mark.django_db
def test_a_rater_page_error_with_debug_on_is_the_projects_page(settings) -> None:
    """A researcher's bad edit (an attention check at position "x") breaks the rating page: the
    rater gets the plain 500 page, not Django's debug page with the deployment in its locals."""
    settings.DEBUG = True
    built = build_rating_study(attention_checks=[{"position": "x", "text": "Check"}])
    client = Client(raise_request_exception=False)
    bot = Bot(client, built.study.slug, "5f0000000000000000007001")
    response = bot.follow(bot.enter())
    for _ in range(3):  # consent, instructions, practice
        response = bot.act(response)
    assert response.status_code == 500
    body = text_of(response)
    assert "Something went wrong on our side" in body
    assert not any(marker in body for marker in DEBUG_MARKERS)
    assert built.deployments[0].slug not in body and "activation" not in body


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/r/a/b/c/d/", "/r/%00/", "/r/nope/-/rate/", "/r/" + "x" * 300 + "/"])
def test_rater_urls_that_lead_nowhere_are_the_projects_404_with_debug_on(settings, client, path) -> None:
    settings.DEBUG = True
    response = client.get(path)
    assert response.status_code == 404
    body = text_of(response)
    assert not any(marker in body for marker in DEBUG_MARKERS) and "URLconf" not in body
