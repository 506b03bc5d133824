"""Issue 20, point 1: a pilot never costs a design slot.

Pilot raters walk the real pages with the real stimuli, in slots of their own copied from
the design's plan; after "End the pilot" every balanced slot is still there for the real
raters, and every stimulus reaches its target from them alone.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db.models import Count, Q
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from studyapp.rating.models import Participant, Rating, Slot, SlotStimulus
from tests.studyapp.rating.helpers import Bot, build_rating_study, researcher_client, text_of

pytestmark = pytest.mark.django_db


def _cells(body: str, marker: str) -> list[str]:
    row = re.search(rf"<tr {marker}>(.*?)</tr>", body, re.S)
    assert row, marker
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]


def test_pilot_raters_walk_real_stimuli_in_slots_of_their_own_and_the_design_stays_whole():
    built = build_rating_study(raters=4, per_rater=4)  # 4 stimuli per condition, 2 ratings each
    study, deployment = built.study, built.deployments[0]
    researcher = researcher_client(study)
    pilot_url = reverse("studies:study_pilot", args=[study.slug])
    design = {slot.pk: sorted(slot.planned.values_list("stimulus_id", flat=True)) for slot in Slot.objects.all()}

    researcher.post(pilot_url, {"state": "on"})
    for n in range(5):  # more pilot raters than the design has slots
        assert Bot(Client(), study.slug, f"5f00000000000000000201{n:02d}").walk().status_code == 200
    leaver = Bot(Client(), study.slug, "5f0000000000000000020199")
    leaver.walk(stop_after_pages=1)  # a pilot rater who leaves mid-way keeps no design slot either
    researcher.post(pilot_url, {"state": "off"})

    # The pilot rated real stimuli, in slots that copy the design's plan; the design is untouched.
    pilots = Participant.objects.filter(pilot=True)
    assert pilots.count() == 6 and pilots.filter(step=Participant.Step.COMPLETE).count() == 5
    pilot_slots = Slot.objects.filter(pilot=True)
    assert pilot_slots.count() == 6
    for slot in pilot_slots:
        assert sorted(slot.planned.values_list("stimulus_id", flat=True)) in design.values()
    assert set(Rating.objects.values_list("pilot", flat=True)) == {True}
    assert Slot.objects.filter(pilot=False, status=Slot.Status.FREE).count() == 4
    assert {slot.pk: sorted(slot.planned.values_list("stimulus_id", flat=True)) for slot in
            Slot.objects.filter(pilot=False)} == design  # fmt: skip

    # The dashboard counts the design apart from the pilot.
    body = researcher.get(reverse("studies:dashboard", args=[study.slug])).content.decode()
    quality = _cells(body, "data-quality-row")
    assert quality[8] == "4"  # slots left: the whole design
    deployment_row = _cells(body, f'data-deployment="{deployment.slug}"')
    assert deployment_row[5:8] == ["4", "0", "0"]  # design slots free, active, complete
    assert deployment_row[8] == "0"  # design slots counted short
    assert deployment_row[9] == "0"  # design ratings
    assert deployment_row[-1] == "6 slots, 5 complete, 63 ratings"  # the pilot, apart

    # Every real rater still finds a balanced slot, and the design completes from them alone.
    for n in range(4):
        assert "/-/done/" in Bot(Client(), study.slug, f"5f00000000000000000202{n:02d}").walk().request["PATH_INFO"]
    assert "This study is full" in text_of(Bot(Client(), study.slug, "5f0000000000000000020299").enter())
    assert Slot.objects.filter(pilot=False, status=Slot.Status.COMPLETE).count() == 4
    per_stimulus = (
        SlotStimulus.objects.filter(slot__pilot=False)
        .values("stimulus_id")
        .annotate(n=Count("stimulus__ratings__participant", distinct=True, filter=Q(stimulus__ratings__pilot=False)))
    )
    assert {row["n"] for row in per_stimulus} == {2}
    assert Rating.objects.filter(pilot=True).count() == 63  # the pilot's ratings stay, marked


def test_a_pilot_rater_pinned_to_a_deployment_copies_that_deployments_plan_and_preview_shows_the_design():
    built = build_rating_study(n_deployments=2, raters=2, per_rater=4)
    study = built.study
    study.pilot_mode = True
    study.save()
    pinned = built.deployments[1]
    bot = Bot(Client(), study.slug, "5f0000000000000000020300")
    bot.walk(path=f"/r/{study.slug}/{pinned.rater_link.token}/")
    slot = Slot.objects.get(participant__prolific_pid=bot.pid)
    assert slot.pilot and slot.deployment_id == pinned.pk
    assert set(slot.planned.values_list("stimulus__deployment_id", flat=True)) == {pinned.pk}
    assert not Slot.objects.filter(pilot=False).exclude(status=Slot.Status.FREE).exists()


def test_a_pilot_slot_is_held_from_its_claim_like_a_design_slot():
    """Issue 21's hold rule covers the pilot's copies too: a pilot entry that only agrees and
    then keeps its page alive loses its slot ``slot_hold_minutes`` after the claim; the sweep
    frees it and the next pilot rater takes that copy (no new one is made)."""
    from studyapp.rating.tasks import slots_release_stale_task

    built = build_rating_study(raters=2, per_rater=4, slot_hold_minutes=5, slot_timeout_minutes=30)
    study = built.study
    researcher_client(study).post(reverse("studies:study_pilot", args=[study.slug]), {"state": "on"})
    squatter = Bot(Client(), study.slug, "squatter0001")
    squatter.act(squatter.follow(squatter.enter()))  # "I agree": on the instructions page
    held = Slot.objects.get(pilot=True, status=Slot.Status.ACTIVE)
    Slot.objects.filter(pk=held.pk).update(claimed_at=timezone.now() - timedelta(minutes=6))
    assert squatter.client.post(f"/r/{study.slug}/-/alive/").status_code == 204  # alive, but past the hold
    assert slots_release_stale_task() == {study.slug: 1}
    assert Participant.objects.get(prolific_pid="squatter0001").step == Participant.Step.TIMED_OUT
    pilot = Bot(Client(), study.slug, "5f0000000000000000020301")
    assert pilot.step_name(pilot.walk()) == "done"
    assert list(Slot.objects.filter(pilot=True).values_list("pk", "status")) == [(held.pk, Slot.Status.COMPLETE)]
    assert not Slot.objects.filter(pilot=False).exclude(status=Slot.Status.FREE).exists()  # the design untouched
