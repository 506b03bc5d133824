"""Issue 20, point 8: withdrawal instead of deletion, and deletion only by a superuser, logged.

Deleting a participant in the admin used to leave their slot active with no rater (never
claimable again) or complete with no ratings (they cascaded away)."""

from __future__ import annotations

import logging

import pytest
from django.db.models import RestrictedError
from django.test import Client
from django.urls import reverse

from analysis.mixed import prepare_ratings
from studyapp.rating.models import Participant, ParticipantDeletion, Rating, Slot
from studyapp.studies.exports import export_participants_frame, export_ratings_frame
from tests.factories import panel_user, superuser
from tests.studyapp.rating.helpers import Bot, build_rating_study, text_of

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:rating_participant_changelist")


def _walked(n_raters: int = 2, *, stop_last_after: int | None = None):
    built = build_rating_study(raters=2, per_rater=4)  # 2 slots, every stimulus rated once
    bots = [Bot(Client(), built.study.slug, f"5f00000000000000000208{n:02d}") for n in range(n_raters)]
    for index, bot in enumerate(bots):
        last = index == len(bots) - 1
        bot.walk(stop_after_pages=stop_last_after if last else None)
    return built, [Participant.objects.get(prolific_pid=bot.pid) for bot in bots]


def _admin(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _withdraw(client: Client, participant: Participant, action: str, reason: str = "asked to withdraw by email"):
    asked = client.post(CHANGELIST, {"action": action, "_selected_action": [participant.pk]})
    assert asked.status_code == 200 and "Why (recorded with each participation)" in asked.content.decode()
    return client.post(CHANGELIST, {"action": action, "_selected_action": [participant.pk], "reason": reason,
                                    "apply": "Withdraw"}, follow=True)  # fmt: skip


def test_withdrawal_keeps_the_ratings_marked_and_gives_the_slot_back_to_the_pool():
    built, (first, second) = _walked()
    slot = Slot.objects.get(participant=first)
    researcher = _admin(panel_user(username="researcher", study=built.study))
    done = _withdraw(researcher, first, "withdraw_to_pool")
    assert f"Withdrawn {first.token}: 12 ratings kept, slot returned to the pool." in done.content.decode()

    first.refresh_from_db()
    assert first.withdrawn_at is not None and first.withdrawal_reason == "asked to withdraw by email"
    assert first.step == "complete" and "withdrawn" in first.flags  # they did finish: kept as it was
    assert set(Rating.objects.filter(participant=first).values_list("withdrawn", flat=True)) == {True}
    slot.refresh_from_db()
    assert slot.status == Slot.Status.FREE and slot.participant is None and slot.times_released == 1

    # The export keeps and marks them; the analysis leaves them out.
    ratings = export_ratings_frame(study=built.study)
    assert ratings.loc[ratings["rater"] == first.token, "withdrawn"].all()
    assert not ratings.loc[ratings["rater"] == second.token, "withdrawn"].any()
    kept = prepare_ratings(ratings)
    assert set(kept["rater"]) == {second.token} and kept.attrs["excluded_raters"]["withdrawn"] == 1
    participants = export_participants_frame(study=built.study).set_index("rater")
    assert participants.loc[first.token, "withdrawn"] and not participants.loc[second.token, "withdrawn"]

    # Another rater rates the slot whole: the design completes without the withdrawn ratings.
    third = Bot(Client(), built.study.slug, "5f0000000000000000020899")
    assert "/-/done/" in third.walk().request["PATH_INFO"]
    assert Slot.objects.get(pk=slot.pk).participant.prolific_pid == third.pid
    kept_per_stimulus = Rating.objects.filter(withdrawn=False).values("stimulus_id").distinct().count()
    assert kept_per_stimulus == 8  # every stimulus of the design rated again


def test_a_slot_counted_short_is_never_given_out_again_and_the_dashboard_says_so():
    built, (first, _second) = _walked()
    researcher = _admin(panel_user(username="researcher", study=built.study))
    done = _withdraw(researcher, first, "withdraw_short")
    assert "slot counted short" in done.content.decode()
    assert Slot.objects.get(participant=first).status == Slot.Status.SHORT
    assert "This study is full" in text_of(Bot(Client(), built.study.slug, "5f0000000000000000020898").enter())
    body = text_of(researcher.get(reverse("studies:dashboard", args=[built.study.slug])))
    row = body.split(f'data-deployment="{built.deployments[0].slug}"')[1].split("</tr>")[0]
    assert '<td class="num failed">1</td>' in row  # one slot short
    assert "(+12 withdrawn)" in row
    # A second withdrawal of the same participant is refused, and changes nothing.
    again = _withdraw(researcher, first, "withdraw_to_pool")
    assert "is already withdrawn" in again.content.decode()
    assert Slot.objects.get(participant=first).status == Slot.Status.SHORT


def test_a_rater_withdrawn_while_rating_lands_on_an_ending_page_and_their_slot_is_freed():
    built, (_first, rating) = _walked(stop_last_after=2)
    researcher = _admin(panel_user(username="researcher", study=built.study))
    _withdraw(researcher, rating, "withdraw_to_pool", reason="withdrew consent by message")
    rating.refresh_from_db()
    assert rating.step == Participant.Step.WITHDRAWN and rating.ratings.count() == 6
    bot = Bot(Client(), built.study.slug, rating.prolific_pid)
    page = bot.follow(bot.enter())
    assert bot.step_name(page) == "ended" and "Your participation has ended" in text_of(page)
    assert not Slot.objects.filter(participant=rating).exists()


def test_only_a_superuser_deletes_a_participant_the_design_stays_whole_and_it_is_logged(caplog):
    built, (first, second) = _walked()
    slot = Slot.objects.get(participant=first)
    url = reverse("admin:rating_participant_delete", args=[first.pk])
    researcher = _admin(panel_user(username="researcher", study=built.study))
    assert researcher.get(url).status_code == 403
    assert researcher.post(url, {"post": "yes"}).status_code == 403
    actions = researcher.get(CHANGELIST).context["action_form"].fields["action"].choices
    assert "delete_selected" not in {name for name, _ in actions}
    assert Participant.objects.filter(pk=first.pk).exists()
    # No path deletes a participant behind the design's back.
    with pytest.raises(RestrictedError):
        Participant.objects.filter(pk=first.pk).delete()

    caplog.set_level(logging.WARNING, logger="studyapp.rating.withdrawal")
    boss = superuser(username="boss")
    assert _admin(boss).post(url, {"post": "yes"}).status_code == 302
    assert not Participant.objects.filter(pk=first.pk).exists()
    assert not Rating.objects.filter(slot=slot).exists()
    slot.refresh_from_db()
    assert slot.status == Slot.Status.FREE and slot.participant is None  # not complete with no ratings
    record = ParticipantDeletion.objects.get()
    assert (record.participant_token, record.deleted_by, record.ratings_deleted, record.slots_returned) == (
        first.token, boss, 12, 1,
    )  # fmt: skip
    assert first.token in caplog.text and "deleted by boss" in caplog.text and first.prolific_pid not in caplog.text
    # The freed slot is rated again by the next rater.
    nxt = Bot(Client(), built.study.slug, "5f0000000000000000020897")
    assert "/-/done/" in nxt.walk().request["PATH_INFO"]
    assert Slot.objects.filter(status=Slot.Status.COMPLETE).count() == 2
    assert Participant.objects.filter(pk=second.pk).exists()
