"""Entry links are verified (issue 11, item 5): SESSION_ID binds a participation, STUDY_ID must
match the study's Prolific id when one is configured, a slot is held only briefly until the
first rating, and new entries are rate-limited per IP address."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from studyapp.rating.models import Participant, Rating, Slot
from tests.studyapp.rating.helpers import Bot, build_rating_study, text_of

pytestmark = pytest.mark.django_db
Step = Participant.Step


def test_another_persons_pid_with_another_session_id_does_not_resume_their_participation():
    built = build_rating_study()
    victim = Bot(Client(), built.study.slug, "5f00000000000000000a0001")
    victim.walk(stop_after_pages=1)
    mine = Participant.objects.get(prolific_pid=victim.pid)
    intruder = Bot(Client(), built.study.slug, victim.pid)
    response = intruder.follow(intruder.enter(SESSION_ID="made-up-session"))
    # A fresh attempt at consent, flagged; the victim's participation, slot and ratings are untouched.
    assert intruder.step_name(response) == "consent"
    attempts = Participant.objects.filter(study=built.study, prolific_pid=victim.pid).order_by("pk")
    assert attempts.count() == 2 and attempts[0].pk == mine.pk
    assert "repeat_prolific_pid" in attempts[1].flags and attempts[1].step == Step.CONSENT
    mine.refresh_from_db()
    assert mine.step == Step.RATING and Rating.objects.filter(participant=mine).count() == 3
    assert Slot.objects.get(participant=mine).status == Slot.Status.ACTIVE
    # The real rater, from a fresh browser with their own session, resumes where they were.
    again = Bot(Client(), built.study.slug, victim.pid)
    assert again.step_name(again.follow(again.enter())) == "rate"


def test_study_id_must_match_the_configured_prolific_study():
    built = build_rating_study(prolific_study_id="65a0f0c0ffee")
    bot = Bot(Client(), built.study.slug, "5f00000000000000000a0002")
    wrong = bot.enter(STUDY_ID="someotherstudy")
    assert wrong.status_code == 400 and "does not belong to this study" in text_of(wrong)
    assert not Participant.objects.exists()
    right = bot.follow(bot.enter(STUDY_ID="65a0f0c0ffee"))
    assert bot.step_name(right) == "consent"


def test_made_up_entries_that_only_agree_lose_their_slots_after_the_hold():
    built = build_rating_study(raters=4, per_rater=4, slot_hold_minutes=5, slot_timeout_minutes=30)
    for n in range(4):
        squatter = Bot(Client(), built.study.slug, f"squatter{n:04d}")
        squatter.act(squatter.follow(squatter.enter()))  # "I agree", then gone
    assert Slot.objects.filter(status=Slot.Status.ACTIVE).count() == 4
    real = Bot(Client(), built.study.slug, "5f00000000000000000a0003")
    assert "This study is full" in text_of(real.enter())
    _minutes_pass(6)
    assert real.step_name(real.walk()) == "done"
    assert Participant.objects.filter(prolific_pid__startswith="squatter", step=Step.TIMED_OUT).count() == 1


def test_a_rater_with_a_saved_rating_keeps_the_slot_past_the_hold_until_the_timeout():
    built = build_rating_study(raters=1, per_rater=4, n_items=2, slot_hold_minutes=5, slot_timeout_minutes=30)
    rater = Bot(Client(), built.study.slug, "5f00000000000000000a0004")
    rater.walk(stop_after_pages=1)
    _minutes_pass(10)
    assert "This study is full" in text_of(Bot(Client(), built.study.slug, "5f00000000000000000a0005").enter())


def _minutes_pass(minutes: int) -> None:
    """Everything that happened so far happened ``minutes`` earlier: claims and last requests."""
    earlier = timezone.now() - timedelta(minutes=minutes)
    Participant.objects.update(last_seen_at=earlier)
    Slot.objects.exclude(claimed_at=None).update(claimed_at=earlier)


def _squat(built, n: int) -> list[Bot]:
    """``n`` made-up PIDs that agree and then only keep their pages alive."""
    squatters = []
    for index in range(n):
        squatter = Bot(Client(), built.study.slug, f"squatter{index:04d}")
        squatter.act(squatter.follow(squatter.enter()))  # "I agree": on the instructions page
        squatters.append(squatter)
    assert Slot.objects.filter(status=Slot.Status.ACTIVE).count() == n
    return squatters


def _keep_alive(squatters: list[Bot]) -> None:
    """What a squatter sends to keep a slot: the page's heartbeat and a reload."""
    for squatter in squatters:
        assert squatter.client.post(f"/r/{squatter.study_slug}/-/alive/").status_code == 204
        assert squatter.step_name(squatter.follow(squatter.enter())) == "instructions"


def test_heartbeats_and_reloads_do_not_keep_a_slot_past_the_hold_without_a_rating():
    """Issue 21, item 1: the hold counts from the claim, whatever the participation sends."""
    built = build_rating_study(raters=2, per_rater=4, slot_hold_minutes=1, slot_timeout_minutes=30)
    squatters = _squat(built, 2)
    real = Bot(Client(), built.study.slug, "5f00000000000000000a0006")
    assert "This study is full" in text_of(real.enter())
    for _ in range(3):  # 75, 150, 200 s in the red team's run: each heartbeat came in time
        _minutes_pass(1)
        _keep_alive(squatters)
    assert real.step_name(real.walk()) == "done"
    timed_out = Participant.objects.filter(prolific_pid__startswith="squatter", step=Step.TIMED_OUT)
    assert timed_out.count() == 1


def test_closing_the_study_releases_holds_past_the_hold_and_keeps_raters_at_work(client):
    from django.urls import reverse

    from tests.factories import panel_user

    built = build_rating_study(raters=3, per_rater=4, n_items=6, slot_hold_minutes=5, slot_timeout_minutes=30)
    squatters = _squat(built, 2)
    worker = Bot(Client(), built.study.slug, "5f00000000000000000a0007")
    worker.walk(stop_after_pages=1)
    _minutes_pass(6)
    _keep_alive(squatters)
    client.force_login(panel_user(username="researcher", study=built.study))
    closed = client.post(reverse("studies:study_open", args=[built.study.slug]), {"state": "off"})
    assert closed.status_code == 302
    assert Slot.objects.filter(status=Slot.Status.ACTIVE).get().participant.prolific_pid == worker.pid
    assert Participant.objects.filter(prolific_pid__startswith="squatter", step=Step.TIMED_OUT).count() == 2
    assert worker.step_name(worker.walk()) == "done"  # the rater at work finishes


def test_the_sweep_releases_holds_of_a_closed_study():
    from studyapp.rating.tasks import slots_release_stale_task

    built = build_rating_study(raters=2, per_rater=4, slot_hold_minutes=5, slot_timeout_minutes=30)
    squatters = _squat(built, 2)
    built.study.is_open = False  # closed in the admin: no service ran
    built.study.save(update_fields=["is_open"])
    _minutes_pass(6)
    _keep_alive(squatters)
    assert slots_release_stale_task() == {built.study.slug: 2}
    assert not Slot.objects.filter(status=Slot.Status.ACTIVE).exists()


def test_new_entries_per_ip_are_limited_but_resumes_are_not(settings):
    settings.ENTRY_RATE_LIMIT_PER_HOUR = 3
    built = build_rating_study(raters=8, per_rater=4, n_items=8)
    bots = [Bot(Client(REMOTE_ADDR="203.0.113.7"), built.study.slug, f"5f00000000000000000b000{n}") for n in range(4)]
    for bot in bots[:3]:
        assert bot.step_name(bot.follow(bot.enter())) == "consent"
    refused = bots[3].enter()
    assert refused.status_code == 429 and "Too many" in text_of(refused)
    assert Participant.objects.count() == 3
    assert bots[0].step_name(bots[0].follow(bots[0].enter())) == "consent"  # a resume is not limited
    other_ip = Bot(Client(REMOTE_ADDR="198.51.100.2"), built.study.slug, "5f00000000000000000b0009")
    assert other_ip.step_name(other_ip.follow(other_ip.enter())) == "consent"


def test_the_spec_sets_the_prolific_study_id_and_the_hold():
    from studyapp.studies.spec import SpecError
    from studyapp.studies.study_loading import study_load
    from tests.conftest import REPO_ROOT

    demo = (REPO_ROOT / "studies" / "demo.yaml").read_text()
    spec = demo.replace("  slot_timeout_minutes: 30", "  slot_timeout_minutes: 30\n  slot_hold_minutes: 3")
    spec = spec.replace("prolific:\n", "prolific:\n  study_id: 65a0f0c0ffee\n", 1)
    study, _ = study_load(content=spec)
    assert (study.slot_hold_minutes, study.prolific_study_id) == (3, "65a0f0c0ffee")
    with pytest.raises(SpecError) as error:
        study_load(content=spec.replace("study_id: 65a0f0c0ffee", "study_id: '{{%STUDY_ID%}}'"))
    assert any(problem.startswith("prolific.study_id:") for problem in error.value.problems)
