"""Many samples for the metrics, a rated subset for people; automatic-only deployments get no raters."""

from __future__ import annotations

from collections import Counter

import pytest
from django.test import Client

from studyapp.rating.models import DeploymentLink, Slot, SlotStimulus
from studyapp.rating.slots import slots_build
from studyapp.studies.design import rated_sample_indices
from studyapp.studies.exports import export_stimuli_frame
from studyapp.studies.models import Deployment
from studyapp.studies.spec import SpecError, spec_parse
from studyapp.studies.study_loading import study_load
from tests.factories import DeploymentFactory, GenerationJobFactory, StimulusFactory
from tests.studyapp.rating.helpers import Bot, build_rating_study

SPEC = """
spec_version: "1"
slug: subset
title: Rated subset
seed: 11
samples_per_item: 6
raters: {{samples_per_item: {rated}, per_deployment: 4, stimuli_per_rater: 4, allow_paired_items: true}}
models: [{{key: m, source: embedded}}]
conditions:
  - {{key: base, model: m, method: base}}
  - {{key: weight, model: m, method: weight, params: {{rho: 0.1, alpha: 1.0}}}}
tasks:
  - key: aut
    items: [brick, fork]
  - key: dat
    items: [comma]
deployments:
  - {{slug: aut-weight, model: m, task: aut, conditions: [base, weight]}}
  - {{slug: dat, model: m, task: dat, conditions: [base, weight], samples_per_item: 40, automatic_only: {automatic}}}
"""


def test_the_rated_subset_is_seeded_sized_and_independent_of_the_condition():
    kwargs = {"study_seed": 3, "task_key": "aut", "item_key": "brick", "n_samples": 24}
    subset = rated_sample_indices(**kwargs, n_rated=3)
    assert subset == rated_sample_indices(**kwargs, n_rated=3)  # seeded: the same every time
    assert len(subset) == len(set(subset)) == 3 and subset == sorted(subset)
    assert set(subset) <= set(range(24))
    # Another item (or seed) draws another subset, at least for some of many items.
    others = {tuple(rated_sample_indices(**{**kwargs, "item_key": f"item{i}"}, n_rated=3)) for i in range(20)}
    assert len(others) > 1
    assert rated_sample_indices(**kwargs, n_rated=None) == list(range(24))
    assert rated_sample_indices(**kwargs, n_rated=30) == list(range(24))


def test_the_spec_takes_samples_rated_samples_and_automatic_only_deployments():
    spec = spec_parse(SPEC.format(rated=2, automatic="true"))
    assert spec.study["samples_per_item"] == 6 and spec.study["rated_samples_per_item"] == 2
    dat = next(d for d in spec.deployments if d["slug"] == "dat")
    assert dat["automatic_only"] is True and dat["samples_per_item"] == 40

    with pytest.raises(SpecError) as error:
        spec_parse(SPEC.format(rated=7, automatic="true"))
    assert "deployments[0]: raters.samples_per_item (7) is more than the 6 samples per item" in str(error.value)
    with pytest.raises(SpecError) as error:
        spec_parse(SPEC.format(rated=2, automatic="maybe"))
    assert "deployments[1].automatic_only: expected true or false" in str(error.value)
    # One rated sample of the DAT's one item cannot give a rater 2 stimuli per condition: a problem
    # only once the deployment is rated.
    spec_parse(SPEC.format(rated=1, automatic="true"))
    with pytest.raises(SpecError) as error:
        spec_parse(SPEC.format(rated=1, automatic="false"))
    assert error.value.problems == [
        "deployments[1]: raters.stimuli_per_rater (4) asks for 2 stimuli per condition, but each condition "
        "has only 1 (items x rated samples per item)"
    ]


@pytest.mark.django_db
def test_spec_fields_reach_the_database():
    study, _ = study_load(content=SPEC.format(rated=2, automatic="true"))
    assert study.rated_samples_per_item == 2
    dat = study.deployments.get(slug="dat")
    assert dat.automatic_only and dat.generated_samples_per_item == 40
    assert study.deployments.get(slug="aut-weight").generated_samples_per_item == 6


@pytest.mark.django_db
def test_slots_take_a_balanced_seeded_subset_with_the_same_indices_for_both_arms():
    built = build_rating_study(
        n_items=3, samples=5, raters=6, per_rater=4, samples_per_item=5, rated_samples_per_item=2
    )
    deployment = built.deployments[0]
    study = built.study
    planned = (
        SlotStimulus.objects.filter(slot__deployment=deployment)
        .select_related("stimulus__item", "stimulus__condition")
        .values_list("stimulus_id", "stimulus__condition__key", "stimulus__item__key", "stimulus__sample_index")
    )
    indices: dict[tuple[str, str], set[int]] = {}
    for _, condition, item, sample_index in planned:
        indices.setdefault((condition, item), set()).add(sample_index)
    for (_, item), chosen in indices.items():
        assert chosen == set(
            rated_sample_indices(study_seed=study.seed, task_key="aut", item_key=item, n_samples=5, n_rated=2)
        )
    # Both arms, every item, exactly 2 of 5 samples; every rated stimulus equally often.
    assert len(indices) == 2 * 3
    assert len(Counter(stimulus_id for stimulus_id, *_ in planned)) == 2 * 3 * 2
    assert len(set(Counter(stimulus_id for stimulus_id, *_ in planned).values())) == 1
    # The export says which stimuli raters see; all 30 are exported for the metrics.
    frame = export_stimuli_frame(study=study)
    assert len(frame) == 2 * 3 * 5 and frame["rated"].sum() == 2 * 3 * 2
    assert set(frame.loc[frame["rated"], "stimulus"]) == {
        token
        for token in frame["stimulus"]
        if token in set(SlotStimulus.objects.values_list("stimulus__token", flat=True))
    }


@pytest.mark.django_db
def test_automatic_only_deployments_get_no_slots_and_never_reach_a_rater():
    built = build_rating_study(n_items=2, raters=2, per_rater=2)
    study = built.study
    rated = built.deployments[0]
    automatic = DeploymentFactory(study=study, slug="dat-automatic", model=built.models[0], task=rated.task)
    automatic.conditions.set(built.conditions)
    for condition in built.conditions:
        job = GenerationJobFactory(deployment=automatic, condition=condition)
        for item in rated.task.items.all():
            StimulusFactory(job=job, item=item, sample_index=0, text="automatic only text")
    # Slots built while it was still rated go once it is automatic-only.
    slots_build(study=study, deployments=[automatic])
    assert Slot.objects.filter(deployment=automatic).exists()
    Deployment.objects.filter(pk=automatic.pk).update(automatic_only=True)
    automatic.refresh_from_db()

    assert {slug: len(slots) for slug, slots in slots_build(study=study).items()} == {rated.slug: 2}
    assert slots_build(study=study, deployments=[automatic]) == {}
    assert not Slot.objects.filter(deployment=automatic).exists()
    assert not DeploymentLink.objects.filter(deployment=automatic).exists()
    assert export_stimuli_frame(study=study).query("deployment == 'dat-automatic'")["rated"].eq(False).all()

    # Its slug is no entry link, and raters of the study only ever see the rated deployment.
    assert Client().get(f"/r/{study.slug}/dat-automatic/?PROLIFIC_PID=p1&STUDY_ID=s&SESSION_ID=x").status_code == 404
    seen: list[str] = []
    for n in range(2):
        bot = Bot(Client(), study.slug, f"rater{n}", on_response=lambda r: seen.append(r.content.decode()))
        assert bot.step_name(bot.walk()) == "done"
    assert seen and not any("automatic only text" in page for page in seen)
    # A third rater: the two rated slots are taken, and the automatic-only deployment offers none.
    third = Client().get(f"/r/{study.slug}/?PROLIFIC_PID=rater3&STUDY_ID=s&SESSION_ID=x")
    assert "This study is full" in third.content.decode()
