"""The study vocabulary: one balance rule for the spec checker and the slot planner, one list of methods and scales."""

from __future__ import annotations

import itertools

import pytest

from generation.types import METHODS as LIBRARY_METHODS
from studyapp.rating.services import SlotPlanError, slot_plan_compute
from studyapp.studies.models import Condition, RatingDimension
from studyapp.studies.spec import METHOD_PARAMS
from studyapp.studies.vocabulary import METHODS, SCALE_RANGES, SCALES, balance_problem


def test_a_balanced_design_has_no_problem():
    # 2 conditions x 6 stimuli, 4 raters x 6 stimuli: 3 per condition, 12 ratings per condition.
    assert balance_problem(n_conditions=2, per_condition=6, raters=4, per_rater=6) is None


@pytest.mark.parametrize(
    ("raters", "per_rater", "message"),
    [
        (4, 5, "raters.stimuli_per_rater (5) must be a multiple of the deployment's 2 conditions"),
        (4, 14, "raters.stimuli_per_rater (14) asks for 7 stimuli per condition, but each condition has only 6"),
        (5, 6, "= 15 ratings per condition, not a multiple of its 6 stimuli"),
    ],
)
def test_each_broken_rule_is_named(raters, per_rater, message):
    problem = balance_problem(n_conditions=2, per_condition=6, raters=raters, per_rater=per_rater)
    assert problem is not None and message in problem


@pytest.mark.parametrize(
    ("n_conditions", "per_condition", "raters", "per_rater"),
    list(itertools.product((1, 2, 3), (1, 4, 6), (1, 3, 8), (2, 3, 6, 12))),
)
def test_the_slot_planner_refuses_exactly_what_the_rule_refuses(n_conditions, per_condition, raters, per_rater):
    pools = {f"c{c}": list(range(c * 100, c * 100 + per_condition)) for c in range(n_conditions)}
    problem = balance_problem(
        n_conditions=n_conditions, per_condition=per_condition, raters=raters, per_rater=per_rater
    )
    if problem is None:
        plan = slot_plan_compute(stimuli_by_condition=pools, raters=raters, per_rater=per_rater, seed="s")
        assert len(plan.slots) == raters and all(len(slot) == per_rater for slot in plan.slots)
    else:
        with pytest.raises(SlotPlanError) as raised:
            slot_plan_compute(stimuli_by_condition=pools, raters=raters, per_rater=per_rater, seed="s")
        assert str(raised.value) == problem


def test_methods_come_from_the_generation_library_and_every_place_knows_them_all():
    assert METHODS == LIBRARY_METHODS
    assert [value for value, _ in Condition._meta.get_field("method").choices] == list(METHODS)
    assert set(METHOD_PARAMS) == set(METHODS)


def test_scales_are_the_models_choices_with_their_ranges():
    assert [value for value, _ in RatingDimension._meta.get_field("scale").choices] == list(SCALES)
    assert SCALE_RANGES == {"slider_0_100": (0, 100), "likert_5": (1, 5), "likert_7": (1, 7)}
    assert RatingDimension(scale="likert_7").scale_range == (1, 7)
