"""oTree-style bots walking raters through the whole flow by HTTP."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from studyapp.rating.models import AttentionCheckResponse, Participant, Rating, Slot
from studyapp.rating.selectors import deployment_entry_path, participant_plan
from tests.factories import ResearcherFactory
from tests.studyapp.rating.helpers import Bot, build_rating_study, text_of

pytestmark = pytest.mark.django_db
CHECK = {"position": 2, "text": "Attention check: please move the slider all the way to the right.", "expected": 100}


def test_a_bot_walks_the_whole_flow_and_every_page_is_stored():
    built = build_rating_study(attention_checks=[CHECK], debrief_questions=["How did you decide?"])
    bot = Bot(Client(), built.study.slug, "5f0000000000000000000001")
    done = bot.walk()

    assert bot.log == ["consent", "instructions", "practice", *["rate"] * 5, "debrief"]
    assert bot.step_name(done) == "done"
    participant = Participant.objects.get(prolific_pid=bot.pid)
    assert participant.step == Participant.Step.COMPLETE
    assert participant.debrief == {"q1": "I read each one carefully."}
    ratings = list(Rating.objects.filter(participant=participant).order_by("page_index", "dimension_position"))
    assert len(ratings) == 4 * 3
    # Pages 0-1 are ratings, page 2 the attention check, pages 3-4 ratings again.
    assert sorted({r.page_index for r in ratings}) == [0, 1, 3, 4]
    assert Counter(r.page_index for r in ratings) == {0: 3, 1: 3, 3: 3, 4: 3}
    assert all(sorted(r.dimension_position for r in ratings if r.page_index == p) == [0, 1, 2] for p in (0, 1, 3, 4))
    assert all(r.seconds_on_page is not None and 0 <= r.seconds_on_page < 60 for r in ratings)
    assert all(0 <= r.score <= 100 for r in ratings)
    check = AttentionCheckResponse.objects.get(participant=participant)
    assert (check.page_index, check.passed, check.response) == (2, True, "100")
    slot = Slot.objects.get(participant=participant)
    assert slot.status == Slot.Status.COMPLETE
    assert {r.stimulus_id for r in ratings} == set(slot.stimuli.values_list("id", flat=True))

    body = text_of(done)
    assert "C0MPL3TE" in body
    assert "https://app.prolific.com/submissions/complete?cc=C0MPL3TE" in body
    assert 'data-auto-return="https://app.prolific.com/submissions/complete?cc=C0MPL3TE"' in body

    # Coming back after completing shows the completion page again, in any browser.
    again = bot.follow(Bot(Client(), built.study.slug, bot.pid).enter())
    assert bot.step_name(again) == "done" and "C0MPL3TE" in text_of(again)


def test_a_reload_or_a_new_browser_resumes_on_the_current_page():
    built = build_rating_study()
    first = Bot(Client(), built.study.slug, "5f0000000000000000000002")
    page = first.walk(stop_after_pages=2)
    assert first.step_name(page) == "rate"
    participant = Participant.objects.get(prolific_pid=first.pid)
    assert Rating.objects.filter(participant=participant).count() == 2 * 3
    plan = participant_plan(participant=participant)
    expected_token = plan.current.stimulus.token
    assert expected_token in page.content.decode()

    # A reload shows the same page; so does opening the link again in another browser.
    assert expected_token in first.get(page.request["PATH_INFO"]).content.decode()
    second = Bot(Client(), built.study.slug, first.pid)
    resumed = second.follow(second.enter())
    assert second.step_name(resumed) == "rate"
    assert expected_token in resumed.content.decode()
    assert Participant.objects.filter(prolific_pid=first.pid).count() == 1

    done = second.walk()
    assert second.step_name(done) == "done"
    assert Rating.objects.filter(participant=participant).count() == 4 * 3
    # Page order continues where the first browser stopped.
    assert sorted(set(Rating.objects.filter(participant=participant).values_list("page_index", flat=True))) == [
        0,
        1,
        2,
        3,
    ]


def test_all_slots_filled_gives_every_stimulus_the_same_number_of_ratings_then_study_full():
    built = build_rating_study(n_items=4, raters=4, per_rater=4)
    for n in range(4):
        assert Bot(Client(), built.study.slug, f"5f00000000000000000001{n:02d}").walk().status_code == 200
    per_stimulus = Counter(Rating.objects.values_list("stimulus_id", flat=True))
    assert len(per_stimulus) == 8 and set(per_stimulus.values()) == {2 * 3}
    for participant in Participant.objects.all():
        conditions = Counter(
            Rating.objects.filter(participant=participant, dimension__key="originality").values_list(
                "stimulus__condition__key", flat=True
            )
        )
        assert sorted(conditions.values()) == [2, 2]
    late = Bot(Client(), built.study.slug, "5f0000000000000000000999")
    response = late.enter()
    assert response.status_code == 200 and "This study is full" in text_of(response)


def test_unpinned_entry_fills_deployments_evenly_and_pinned_links_stay_in_their_deployment():
    built = build_rating_study(n_deployments=2, raters=2, per_rater=4)
    claimed = []
    for n in range(2):
        bot = Bot(Client(), built.study.slug, f"5f00000000000000000002{n:02d}")
        bot.walk(stop_after_pages=0)
        claimed.append(Slot.objects.get(participant__prolific_pid=bot.pid))
    assert sorted((s.deployment.slug, s.index) for s in claimed) == [
        ("smollm2-aut-activation-d0", 0),
        ("smollm2-aut-activation-d1", 0),
    ]
    pinned_path = deployment_entry_path(deployment=built.deployments[1])
    assert "activation" not in pinned_path and "smollm" not in pinned_path
    bot = Bot(Client(), built.study.slug, "5f0000000000000000000300")
    bot.walk(stop_after_pages=0, path=pinned_path)
    slot = Slot.objects.get(participant__prolific_pid=bot.pid)
    assert (slot.deployment, slot.index) == (built.deployments[1], 1)
    # Deployment 1 is now full: its pinned link says so, while deployment 0 still has room.
    response = Bot(Client(), built.study.slug, "5f0000000000000000000301").enter(pinned_path)
    assert "This study is full" in text_of(response)


def test_declining_consent_ends_politely_and_claims_nothing():
    built = build_rating_study()
    bot = Bot(Client(), built.study.slug, "5f0000000000000000000400")
    consent = bot.follow(bot.enter())
    ended = bot.follow(bot.post(consent.request["PATH_INFO"], {"choice": "decline"}))
    assert bot.step_name(ended) == "ended" and "chose not to take part" in text_of(ended)
    assert not Slot.objects.exclude(status=Slot.Status.FREE).exists()
    assert Participant.objects.get(prolific_pid=bot.pid).step == Participant.Step.DECLINED


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"PROLIFIC_PID": None, "STUDY_ID": None, "SESSION_ID": None}, "missing your Prolific details"),
        ({"PROLIFIC_PID": "{{%PROLIFIC_PID%}}"}, "PROLIFIC_PID"),
        ({"SESSION_ID": ""}, "SESSION_ID"),
        ({"STUDY_ID": "x" * 65}, "STUDY_ID"),
    ],
)
def test_missing_or_malformed_prolific_parameters_get_a_friendly_page(query, expected):
    built = build_rating_study()
    response = Bot(Client(), built.study.slug, "5f0000000000000000000500").enter(**query)
    assert response.status_code == 400
    assert "Your study link is incomplete" in text_of(response) and expected in text_of(response)
    assert not Participant.objects.exists()


def test_a_closed_study_turns_new_raters_away_but_lets_started_ones_finish():
    built = build_rating_study()
    started = Bot(Client(), built.study.slug, "5f0000000000000000000600")
    started.walk(stop_after_pages=1)
    built.study.is_open = False
    built.study.save()
    response = Bot(Client(), built.study.slug, "5f0000000000000000000601").enter()
    assert "This study is closed" in text_of(response)
    assert started.step_name(started.walk()) == "done"


def test_failed_attention_checks_screen_out_after_k_and_free_the_slot():
    built = build_rating_study(attention_checks=[CHECK], attention_screen_out_after=1)
    bot = Bot(Client(), built.study.slug, "5f0000000000000000000700", attention_answer="3")
    ended = bot.walk()
    assert bot.step_name(ended) == "ended"
    assert "https://app.prolific.com/submissions/complete?cc=SCR33N" in text_of(ended)
    participant = Participant.objects.get(prolific_pid=bot.pid)
    assert participant.step == Participant.Step.SCREENED_OUT and participant.attention_failures == 1
    assert "attention_check_failed" in participant.flags
    # Ratings given before the check are kept; the slot goes to the next rater.
    assert Rating.objects.filter(participant=participant).count() == 2 * 3
    slot = Slot.objects.get(index=0)
    assert slot.status == Slot.Status.FREE and slot.times_released == 1
    nxt = Bot(Client(), built.study.slug, "5f0000000000000000000701")
    nxt.walk(stop_after_pages=0)
    assert Slot.objects.get(participant__prolific_pid=nxt.pid).index == 0


def test_failed_attention_checks_are_only_flagged_without_a_screen_out_limit():
    built = build_rating_study(attention_checks=[CHECK], attention_screen_out_after=None)
    bot = Bot(Client(), built.study.slug, "5f0000000000000000000710", attention_answer="3")
    assert bot.step_name(bot.walk()) == "done"
    participant = Participant.objects.get(prolific_pid=bot.pid)
    assert participant.step == Participant.Step.COMPLETE and participant.attention_failures == 1
    assert participant.flags == ["attention_check_failed"]
    assert AttentionCheckResponse.objects.get(participant=participant).passed is False


def test_a_silent_rater_loses_the_slot_to_the_next_one_and_keeps_their_ratings():
    built = build_rating_study(raters=1, per_rater=4, n_items=2, slot_timeout_minutes=30)
    silent = Bot(Client(), built.study.slug, "5f0000000000000000000800")
    page = silent.walk(stop_after_pages=1)
    participant = Participant.objects.get(prolific_pid=silent.pid)
    # Still within the timeout: the next rater finds the study full.
    assert "This study is full" in text_of(Bot(Client(), built.study.slug, "5f0000000000000000000801").enter())
    Participant.objects.filter(pk=participant.pk).update(last_seen_at=timezone.now() - timedelta(minutes=31))

    nxt = Bot(Client(), built.study.slug, "5f0000000000000000000802")
    assert nxt.step_name(nxt.walk()) == "done"
    slot = Slot.objects.get()
    assert slot.participant.prolific_pid == nxt.pid and slot.times_released == 1
    participant.refresh_from_db()
    assert participant.step == Participant.Step.TIMED_OUT
    assert Rating.objects.filter(participant=participant).count() == 3
    # The one who left comes back: a polite page, and their late answer is not stored.
    late = silent.post(page.request["PATH_INFO"], silent.fill(page.content.decode()))
    assert late.status_code == 303
    assert "Your session has expired" in text_of(silent.follow(late))
    assert Rating.objects.filter(participant=participant).count() == 3


def test_a_double_submission_of_a_page_is_harmless():
    built = build_rating_study()
    bot = Bot(Client(), built.study.slug, "5f0000000000000000000900")
    page = bot.walk(stop_after_pages=0)
    data = bot.fill(page.content.decode())
    first = bot.post(page.request["PATH_INFO"], data)
    second = bot.post(page.request["PATH_INFO"], {**data, **{k: "1" for k in data if k.startswith("score-")}})
    assert first.status_code == second.status_code == 303
    ratings = Rating.objects.filter(participant__prolific_pid=bot.pid)
    assert ratings.count() == 3
    assert {r.score for r in ratings} == {float(v) for k, v in data.items() if k.startswith("score-")}


def test_likert_scales_walk_and_store_in_range():
    built = build_rating_study(scales=("likert_5", "likert_7", "slider_0_100"))
    bot = Bot(Client(), built.study.slug, "5f0000000000000000000950")
    assert bot.step_name(bot.walk()) == "done"
    for rating in Rating.objects.select_related("dimension"):
        low, high = rating.dimension.scale_range
        assert low <= rating.score <= high


def test_a_researcher_previews_the_whole_flow_without_creating_data():
    built = build_rating_study(attention_checks=[CHECK])
    researcher = ResearcherFactory(username="researcher")
    built.study.researchers.add(researcher)
    client = Client()
    client.force_login(researcher)
    bot = Bot(client, built.study.slug, "preview")
    response = bot.follow(bot.get(f"/r/{built.study.slug}/-/preview/"))
    assert "nothing is saved" in text_of(response)
    while bot.step_name(response) != "done":
        response = bot.act(response)
    assert bot.log == ["consent", "instructions", "practice", *["rate"] * 5, "debrief"]
    assert not Participant.objects.exists() and not Rating.objects.exists()
    assert not AttentionCheckResponse.objects.exists()
    assert not Slot.objects.exclude(status=Slot.Status.FREE).exists()


def test_only_the_studys_researchers_may_preview():
    built = build_rating_study()
    other = Client()
    other.force_login(ResearcherFactory(username="other_researcher"))
    assert other.get(f"/r/{built.study.slug}/-/preview/").status_code == 403
    anonymous = Client().get(f"/r/{built.study.slug}/-/preview/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]


def test_stale_slots_can_be_released_eagerly():
    from studyapp.rating.services import slots_release_stale

    built = build_rating_study(slot_timeout_minutes=30)
    active = Bot(Client(), built.study.slug, "5f0000000000000000000960")
    active.walk(stop_after_pages=1)
    silent = Bot(Client(), built.study.slug, "5f0000000000000000000961")
    silent.walk(stop_after_pages=1)
    Participant.objects.filter(prolific_pid=silent.pid).update(last_seen_at=timezone.now() - timedelta(minutes=45))
    assert slots_release_stale(study=built.study) == 1
    assert Participant.objects.get(prolific_pid=silent.pid).step == Participant.Step.TIMED_OUT
    assert Participant.objects.get(prolific_pid=active.pid).step == Participant.Step.RATING
    freed = Slot.objects.get(index=1)
    assert (freed.status, freed.participant, freed.times_released) == (Slot.Status.FREE, None, 1)
    assert Rating.objects.filter(participant__prolific_pid=silent.pid).count() == 3


def test_the_periodic_sweep_frees_stale_slots_of_open_and_closed_studies():
    """A closed study keeps no stale slot either (issue 21: closing must not leave holds)."""
    from studyapp.celery import app
    from studyapp.rating.tasks import slots_release_stale_task

    open_study = build_rating_study(slot_timeout_minutes=30)
    silent = Bot(Client(), open_study.study.slug, "5f0000000000000000000970")
    silent.walk(stop_after_pages=1)
    working = Bot(Client(), open_study.study.slug, "5f0000000000000000000972")
    working.walk(stop_after_pages=1)
    Participant.objects.filter(prolific_pid=silent.pid).update(last_seen_at=timezone.now() - timedelta(minutes=31))
    closed_study = build_rating_study(slot_timeout_minutes=30)
    paused = Bot(Client(), closed_study.study.slug, "5f0000000000000000000971")
    paused.walk(stop_after_pages=1)
    Participant.objects.filter(prolific_pid=paused.pid).update(last_seen_at=timezone.now() - timedelta(minutes=31))
    closed_study.study.is_open = False
    closed_study.study.save(update_fields=["is_open"])

    assert slots_release_stale_task() == {open_study.study.slug: 1, closed_study.study.slug: 1}
    assert Participant.objects.get(prolific_pid=silent.pid).step == Participant.Step.TIMED_OUT
    assert Participant.objects.get(prolific_pid=paused.pid).step == Participant.Step.TIMED_OUT
    assert Participant.objects.get(prolific_pid=working.pid).step == Participant.Step.RATING
    assert slots_release_stale_task() == {}
    assert app.conf.beat_schedule["release-stale-rater-slots"]["task"] == slots_release_stale_task.name


def test_a_preview_before_any_slot_exists_skips_the_rating_pages():
    built = build_rating_study(build_slots=False)
    researcher = ResearcherFactory(username="researcher", is_superuser=True)
    client = Client()
    client.force_login(researcher)
    bot = Bot(client, built.study.slug, "preview")
    response = bot.follow(bot.get(f"/r/{built.study.slug}/-/preview/"))
    while bot.step_name(response) != "done":
        response = bot.act(response)
    assert "rate" not in bot.log and not Participant.objects.exists()
