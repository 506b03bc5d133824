"""The balanced slot design: exact balance, condition balance per rater, clear errors."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from studyapp.rating.models import DeploymentLink, Slot, SlotStimulus
from studyapp.rating.services import SlotPlanError, slot_claim, slot_plan_compute
from studyapp.rating.slots import slots_build
from tests.factories import ParticipantFactory, StimulusFactory
from tests.studyapp.rating.helpers import build_rating_study


def _conditions(n_conditions: int, per_condition: int) -> dict[str, list[int]]:
    return {f"c{c}": [c * 1000 + i for i in range(per_condition)] for c in range(n_conditions)}


@pytest.mark.parametrize(
    ("n_conditions", "per_condition", "raters", "per_rater"),
    [(2, 10, 30, 10), (2, 4, 4, 4), (2, 60, 30, 8), (2, 5, 5, 10), (3, 6, 12, 6), (4, 8, 8, 4)],
)
def test_the_plan_is_exactly_balanced(n_conditions, per_condition, raters, per_rater):
    pools = _conditions(n_conditions, per_condition)
    plan = slot_plan_compute(stimuli_by_condition=pools, raters=raters, per_rater=per_rater, seed="s")
    assert len(plan.slots) == raters
    counts = Counter(stimulus for slot in plan.slots for stimulus in slot)
    assert set(counts) == {s for pool in pools.values() for s in pool}
    assert set(counts.values()) == {plan.ratings_per_stimulus}
    for slot in plan.slots:
        assert len(slot) == len(set(slot)) == per_rater
        assert set(Counter(s // 1000 for s in slot).values()) == {per_rater // n_conditions}


def test_an_items_stimuli_of_both_conditions_are_not_tied_to_one_rater():
    # Stimulus i of each condition stands for item i: no fixed pairing means some raters see
    # an item under one condition only, and the two conditions of an item meet different raters.
    pools = {"base": list(range(10)), "steered": [1000 + i for i in range(10)]}
    plan = slot_plan_compute(stimuli_by_condition=pools, raters=30, per_rater=10, seed="paper")
    unpaired = sum(
        1 for slot in plan.slots if {s % 1000 for s in slot if s < 1000} != {s % 1000 for s in slot if s >= 1000}
    )
    assert unpaired > 0
    raters_of = {s: {j for j, slot in enumerate(plan.slots) if s in slot} for s in range(10)}
    raters_of_steered = {s: {j for j, slot in enumerate(plan.slots) if 1000 + s in slot} for s in range(10)}
    assert any(raters_of[i] != raters_of_steered[i] for i in range(10))


def test_the_plan_is_deterministic_for_a_seed():
    pools = _conditions(2, 10)
    one = slot_plan_compute(stimuli_by_condition=pools, raters=30, per_rater=10, seed="a")
    assert one == slot_plan_compute(stimuli_by_condition=pools, raters=30, per_rater=10, seed="a")
    assert one != slot_plan_compute(stimuli_by_condition=pools, raters=30, per_rater=10, seed="b")


@pytest.mark.parametrize(
    ("pools", "raters", "per_rater", "message"),
    [
        ({}, 4, 4, "no stimuli"),
        ({"a": [1, 2], "b": [3]}, 4, 2, "different numbers of stimuli"),
        (_conditions(2, 10), 30, 9, "must be a multiple of the deployment's 2 conditions"),
        (_conditions(2, 3), 3, 8, "asks for 4 stimuli per condition, but each condition has only 3"),
        (_conditions(2, 10), 7, 4, "not a multiple of its 10 stimuli"),
        (_conditions(2, 10), 0, 4, "must be positive"),
    ],
)
def test_numbers_that_cannot_balance_are_a_clear_error(pools, raters, per_rater, message):
    with pytest.raises(SlotPlanError, match=message):
        slot_plan_compute(stimuli_by_condition=pools, raters=raters, per_rater=per_rater, seed="s")


@pytest.mark.django_db
def test_building_slots_is_idempotent_and_rebuilds_only_unused_slots():
    built = build_rating_study(n_items=4, raters=4, per_rater=4)
    deployment = built.deployments[0]
    first = [slot.pk for slot in Slot.objects.filter(deployment=deployment)]
    link = DeploymentLink.objects.get(deployment=deployment).token
    assert [slot.pk for slot in slots_build(study=built.study)[deployment.slug]] == first
    assert DeploymentLink.objects.get(deployment=deployment).token == link
    assert SlotStimulus.objects.filter(slot__deployment=deployment).count() == 16

    # More stimuli arrive before anyone rated: the slots are rebuilt with them.
    for job in deployment.jobs.all():
        StimulusFactory(job=job, item=deployment.stimuli.first().item, sample_index=99)
    built.study.raters_per_deployment = 5
    built.study.save()
    deployment.refresh_from_db()
    rebuilt = slots_build(study=built.study)[deployment.slug]
    assert len(rebuilt) == 5 and not set(first) & {slot.pk for slot in rebuilt}

    slot_claim(participant=ParticipantFactory(study=built.study))
    for job in deployment.jobs.all():
        StimulusFactory(job=job, item=deployment.stimuli.first().item, sample_index=100)
    built.study.raters_per_deployment = 6
    built.study.save()
    deployment.refresh_from_db()
    with pytest.raises(SlotPlanError, match=f"deployment {deployment.slug}: its slots are already in use"):
        slots_build(study=built.study)


@pytest.mark.django_db
def test_the_build_slots_command(capsys):
    built = build_rating_study(n_deployments=2, build_slots=False)
    call_command("build_slots", built.study.slug)
    out = capsys.readouterr().out
    assert "smollm2-aut-activation-d0: 4 slots" in out and "/r/" in out
    assert Slot.objects.count() == 8
    call_command("build_slots", built.study.slug)
    assert Slot.objects.count() == 8
    with pytest.raises(CommandError, match="no study"):
        call_command("build_slots", "nope")
    built.study.stimuli_per_rater = 3
    built.study.save()
    with pytest.raises(CommandError, match="must be a multiple of the deployment's 2 conditions"):
        call_command("build_slots", built.study.slug)


@pytest.mark.django_db
def test_a_study_without_rating_dimensions_cannot_get_slots():
    built = build_rating_study(build_slots=False, dimension_keys=())
    with pytest.raises(SlotPlanError, match="no rating dimensions"):
        slots_build(study=built.study)
