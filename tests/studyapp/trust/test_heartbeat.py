"""A rater idle on an open page keeps the slot past the timeout (a heartbeat); a rater who
closed the page loses it (issue 11, faults)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from studyapp.rating.models import Participant, Slot
from studyapp.rating.services import slots_release_stale
from tests.studyapp.rating.helpers import Bot, build_rating_study, prolific_query, text_of
from tests.studyapp.rating.test_browser import CHROMIUM, CHROMIUM_ARGS


def _backdate(pid: str, minutes: int) -> None:
    Participant.objects.filter(prolific_pid=pid).update(last_seen_at=timezone.now() - timedelta(minutes=minutes))


@pytest.mark.django_db
def test_the_heartbeat_keeps_an_idle_raters_slot_and_says_nothing():
    built = build_rating_study(raters=1, per_rater=4, n_items=2, slot_timeout_minutes=30)
    rater = Bot(Client(), built.study.slug, "5f00000000000000000c0001")
    page = rater.walk(stop_after_pages=1)
    assert f"/r/{built.study.slug}/-/alive/" in page.content.decode()
    _backdate(rater.pid, 40)
    beat = rater.client.post(f"/r/{built.study.slug}/-/alive/")
    assert beat.status_code == 204 and beat.content == b""
    assert "This study is full" in text_of(Bot(Client(), built.study.slug, "5f00000000000000000c0002").enter())
    assert slots_release_stale(study=built.study) == 0
    # Nobody's heartbeat (no session) changes nothing and reveals nothing.
    assert Client().post(f"/r/{built.study.slug}/-/alive/").status_code == 204


def _in_thread(function):
    """Django's ORM refuses to run inside Playwright's event loop: run it in a thread."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join(timeout=30)
    return result[0] if result else None


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_open_page_in_a_real_browser_keeps_the_slot_and_a_closed_one_loses_it(live_server, settings):
    from playwright.sync_api import sync_playwright

    settings.RATER_HEARTBEAT_SECONDS = 1
    built = build_rating_study(raters=1, per_rater=4, n_items=2, slot_timeout_minutes=30)
    pid = "5f00000000000000000c0003"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{live_server.url}/r/{built.study.slug}/?{prolific_query(pid)}")
        page.get_by_role("button", name="I agree to take part").click()
        page.wait_for_load_state()
        # Idle on the instructions page "for 40 minutes": the open page's heartbeat renews it.
        _in_thread(lambda: _backdate(pid, 40))
        page.wait_for_timeout(2500)
        seen = _in_thread(lambda: Participant.objects.get(prolific_pid=pid).last_seen_at)
        assert timezone.now() - seen < timedelta(seconds=10)
        assert _in_thread(lambda: slots_release_stale(study=built.study)) == 0
        page.close()
        _in_thread(lambda: _backdate(pid, 40))
        browser.new_page().wait_for_timeout(2500)  # the closed page sends nothing any more
        browser.close()
    assert slots_release_stale(study=built.study) == 1
    assert Participant.objects.get(prolific_pid=pid).step == Participant.Step.TIMED_OUT
    assert Slot.objects.get().status == Slot.Status.FREE
