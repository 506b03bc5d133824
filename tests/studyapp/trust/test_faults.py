"""Faults against the real stack (issue 11): a PostgreSQL connection cut in the middle of a
rating POST, rater pages with Redis down, and Redis restarted while generation jobs wait."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from studyapp.rating.models import Participant, Rating
from tests.conftest import _test_database_url
from tests.studyapp.rating.helpers import DIMENSIONS, build_rating_study
from tests.studyapp.trust.servers import HIDDEN, HttpRater, clean_env, free_port, start_gunicorn


def _server_env(**extra: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=_test_database_url(), LOG_LEVEL="WARNING", **extra)


@pytest.fixture
def pg_server(transactional_db, tmp_path: Path):
    server = start_gunicorn(_server_env(), tmp_path / "gunicorn.log", workers=1, threads=1)
    yield server
    server.stop()


@pytest.mark.slow
def test_a_connection_cut_during_a_rating_post_gets_a_retry_page_and_the_retry_stores_once(pg_server) -> None:
    built = build_rating_study()
    rater = HttpRater(pg_server.url, built.study.slug, "5f00000000000000000e0001")
    page = rater.to_rating_page()
    rate = f"/r/{rater.slug}/-/rate/"
    answer = rater.form(page.text)
    participant = Participant.objects.get(prolific_pid=rater.pid)
    result: dict = {}

    with psycopg.connect(_test_database_url(), autocommit=False) as blocker:
        # Hold the rater's slot row: the POST's SELECT ... FOR UPDATE waits inside its transaction.
        blocker.execute("SELECT id FROM rating_slot WHERE participant_id = %s FOR UPDATE", [participant.pk])
        thread = threading.Thread(target=lambda: result.update(r=rater.post(rate, answer)))
        thread.start()
        with psycopg.connect(_test_database_url(), autocommit=True) as admin:
            deadline = time.monotonic() + 20
            waiting: list = []
            while not waiting and time.monotonic() < deadline:
                waiting = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                ).fetchall()
                time.sleep(0.05)
            assert waiting, "the rating POST never reached its row lock"
            for (pid,) in waiting:  # the request's connection dies mid-transaction
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        thread.join(timeout=30)
        blocker.rollback()

    cut = result["r"]
    assert cut.status_code == 503 and cut.headers["Retry-After"]
    assert "Please try again" in cut.text and "Traceback" not in cut.text
    assert Rating.objects.filter(participant=participant).count() == 0
    retry = dict(HIDDEN.findall(cut.text))
    assert retry == {key: value for key, value in answer.items()}
    again = rater.post(rate, retry)
    assert again.status_code == 303
    twice = rater.post(rate, retry)  # a second press of "try again"
    assert twice.status_code == 303
    assert Rating.objects.filter(participant=participant).count() == len(DIMENSIONS)
    assert Rating.objects.filter(participant=participant, page_index=0).count() == len(DIMENSIONS)


@pytest.mark.slow
def test_rater_pages_work_from_entry_to_completion_while_redis_is_down(transactional_db, tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    env = _server_env(CELERY_BROKER_URL=f"{dead}/0", CACHE_URL=f"{dead}/1", ENTRY_RATE_LIMIT_PER_HOUR="5")
    server = start_gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=2)
    try:
        built = build_rating_study()
        rater = HttpRater(server.url, built.study.slug, "5f00000000000000000e0002")
        done = rater.finish(rater.to_rating_page())
        assert "C0MPL3TE" in done.text
    finally:
        server.stop()
    assert Participant.objects.get(prolific_pid=rater.pid).step == Participant.Step.COMPLETE
    assert Rating.objects.filter(participant__prolific_pid=rater.pid).count() == 4 * len(DIMENSIONS)
    assert "entry rate limit unavailable" in server.log()
