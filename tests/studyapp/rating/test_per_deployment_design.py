"""Issue 20, point 6: the rater design per deployment, and no forced side-by-side pairs.

A one-item deployment used to force the whole study's numbers (raters, stimuli per rater,
rated samples per item were study-wide), and the loader accepted a design in which every
rater of it sees the same prompt's base and steered texts side by side.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from studyapp.rating.models import Participant, Slot
from studyapp.studies.models import Deployment, Study
from studyapp.studies.spec import SpecError, spec_parse
from tests.factories import GenerationJobFactory, StimulusFactory
from tests.studyapp.rating.helpers import Bot

pytestmark = pytest.mark.django_db

SPEC = """
spec_version: "1"
slug: per-deployment
title: Two designs in one study
seed: 3
samples_per_item: 4
raters: {{per_deployment: 4, stimuli_per_rater: 4, samples_per_item: 1}}
models: [{{key: m, source: embedded}}]
conditions:
  - {{key: base, model: m, method: base}}
  - {{key: steered, model: m, method: activation, params: {{coeff: 2.0}}}}
tasks:
  - key: uses
    template: "What is an unusual use for {{item}}?"
    items: [{{key: a, text: a brick}}, {{key: b, text: a fork}}, {{key: c, text: a shoe}}, {{key: d, text: a rope}}]
  - key: story
    template: "Write a story about {{item}}."
    items: [{{key: only, text: a lighthouse}}]
deployments:
  - {{slug: uses-steered, model: m, task: uses, conditions: [base, steered]}}
  - slug: story-steered
    model: m
    task: story
    conditions: [base, steered]
{story_raters}
"""
STORY_RATERS = "    raters: {per_deployment: 3, stimuli_per_rater: 2, samples_per_item: 3"


def test_a_one_item_deployment_where_every_rater_sees_both_arms_of_its_prompt_is_refused_unless_allowed():
    with pytest.raises(SpecError) as raised:
        spec_parse(SPEC.format(story_raters=STORY_RATERS + "}"))
    problems = "\n".join(raised.value.problems)
    assert "deployments[1]: every rater would see texts of one item under two conditions" in problems
    assert "allow_paired_items" in problems
    # The study's numbers would not balance the one-item deployment at all: a rater takes 2 of
    # each condition's single rated text.
    with pytest.raises(SpecError, match=r"deployments\[1\].*asks for 2 stimuli per condition"):
        spec_parse(SPEC.format(story_raters=""))
    spec = spec_parse(SPEC.format(story_raters=STORY_RATERS + ", allow_paired_items: true}"))
    assert spec.deployments[1]["raters"] == {
        "raters_per_deployment": 3, "stimuli_per_rater": 2, "rated_samples_per_item": 3, "allow_paired_items": True,
    }  # fmt: skip
    assert spec.deployments[0]["raters"]["allow_paired_items"] is False


def _generate_by_hand(study: Study) -> None:
    """Stimuli as generation stores them (4 samples per item and condition), without a model."""
    for deployment in study.deployments.all():
        for condition in deployment.conditions.all():
            job = GenerationJobFactory(deployment=deployment, condition=condition)
            for item in deployment.task.items.all():
                for sample in range(4):
                    StimulusFactory(
                        job=job, item=item, sample_index=sample, text=f"{item.key} {sample} {condition.key}."
                    )


def test_each_deployment_gets_its_own_numbers_of_raters_stimuli_and_rated_samples(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(story_raters=STORY_RATERS + ", allow_paired_items: true}"))
    call_command("load_study", str(path), stdout=io.StringIO())
    study = Study.objects.get(slug="per-deployment")
    Study.objects.filter(pk=study.pk).update(is_open=True)
    story = Deployment.objects.get(slug="story-steered")
    assert (story.raters_per_deployment, story.stimuli_per_rater, story.rated_samples_per_item) == (3, 2, 3)
    assert story.allow_paired_items
    _generate_by_hand(study)

    out = io.StringIO()
    call_command("build_slots", study.slug, stdout=out)
    assert "uses-steered: 4 slots" in out.getvalue() and "story-steered: 3 slots" in out.getvalue()
    uses_slots = Slot.objects.filter(deployment__slug="uses-steered")
    story_slots = Slot.objects.filter(deployment=story)
    assert {slot.planned.count() for slot in uses_slots} == {4}
    assert {slot.planned.count() for slot in story_slots} == {2}
    # The story's 3 rated samples of its one item, per condition, each rated twice (3 raters x 1).
    story_rated = {s for slot in story_slots for s in slot.planned.values_list("stimulus_id", flat=True)}
    assert len(story_rated) == 6
    uses_rated = {s for slot in uses_slots for s in slot.planned.values_list("stimulus_id", flat=True)}
    assert len(uses_rated) == 8  # 4 items x 1 rated sample x 2 conditions

    # A rater pinned to the story deployment rates its two pages; the uses deployment's rate four.
    bot = Bot(Client(), study.slug, "5f0000000000000000020600")
    bot.walk(path=f"/r/{study.slug}/{story.rater_link.token}/")
    participant = Participant.objects.get(prolific_pid=bot.pid)
    assert participant.step == "complete" and participant.ratings.count() == 2 * 3  # pages x dimensions
    other = Bot(Client(), study.slug, "5f0000000000000000020601")
    other.walk(path=f"/r/{study.slug}/{Deployment.objects.get(slug='uses-steered').rater_link.token}/")
    assert Participant.objects.get(prolific_pid=other.pid).ratings.count() == 4 * 3


def test_the_slot_builder_applies_the_pairing_rule_to_numbers_edited_after_loading(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(story_raters=STORY_RATERS + ", allow_paired_items: true}"))
    call_command("load_study", str(path), stdout=io.StringIO())
    study = Study.objects.get(slug="per-deployment")
    _generate_by_hand(study)
    Deployment.objects.filter(slug="story-steered").update(allow_paired_items=False)  # as an admin edit would
    with pytest.raises(CommandError, match="story-steered: every rater would see texts of one item"):
        call_command("build_slots", study.slug, stdout=io.StringIO())
