"""Random slopes: agreement with lme4 and lmerTest, the structure the design supports, the
simplification rule, formulas in lme4's syntax, and what a bad model request is told."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from analysis.formula import RandomTerm, parse_formula
from analysis.lme4 import fit_lme4, lme4_available, variance_of
from analysis.mixed import fit_mixed, fit_pooled
from analysis.simulate import simulate_ratings
from tests.conftest import REPO_ROOT

LME4_OK, LME4_WHY = lme4_available()
needs_lme4 = pytest.mark.skipif(not LME4_OK, reason=LME4_WHY)
MAXIMAL = "score ~ condition + (1 + steered | rater) + (1 | stimulus) + (1 + steered | item)"
SLOPES = {"sd_item": 3.0, "sd_rater_slope": 8.0, "sd_item_slope": 5.0}


def _lme4_name(term: str) -> str:
    """lme4's name of one of our fixed-effect terms."""
    if term == "Intercept":
        return "(Intercept)"
    return term.replace("[T.", "").replace("[", "").replace("]", "")


def _assert_agrees(ours: dict, ref: dict) -> None:
    """Fixed effects, SEs, p and variance-covariance parameters to 1e-4 relative; df to 1e-3."""
    assert not ref["singular"] and not ours["model_selection"]["singular"]
    for t in ours["fixed_effects"]:
        name = _lme4_name(t["term"])
        assert t["estimate"] == pytest.approx(ref["fixed"][name], rel=1e-4, abs=1e-8), name
        assert t["se"] == pytest.approx(ref["se"][name], rel=1e-4), name
        assert t["df"] == pytest.approx(ref["df"][name], rel=1e-3), name
        assert t["p"] == pytest.approx(ref["p"][name], rel=1e-4, abs=1e-12), name
    for r in ours["random_effects"]:
        assert r["variance"] == pytest.approx(variance_of(ref, r["group"], r["term"]), rel=1e-4), r
    for c in ours["correlations"]:
        group, a, b = c["group"], *c["terms"]
        r_ref = variance_of(ref, group, a, b) / np.sqrt(variance_of(ref, group, a) * variance_of(ref, group, b))
        assert c["correlation"] == pytest.approx(r_ref, rel=1e-4, abs=1e-6), c
    residual = next(row["vcov"] for row in ref["vc"] if row["grp"] == "Residual")
    assert ours["variance_components"]["residual"] == pytest.approx(residual, rel=1e-4)


@needs_lme4
@pytest.mark.parametrize(
    ("formula", "design"),
    [
        (MAXIMAL, {}),
        ("score ~ condition + (1 + steered || rater) + (1 | stimulus) + (1 + steered || item)", {}),
        (MAXIMAL, {"raters_cross_deployments": True}),
        (
            "score ~ condition + (1 + steered | rater) + (1 | stimulus) + (1 + condition || item)",
            {
                "conditions": ("base", "weight", "activation"),
                "one_arm_per_deployment": True,
                "stimuli_per_condition": 8,
            },
        ),
    ],
    ids=["correlated", "uncorrelated", "crossed-raters", "one-slope-per-arm"],
)
def test_slopes_agree_with_lme4_and_lmertest(formula, design):
    df = simulate_ratings(n_deployments=8, raters_per_deployment=10, dimensions=["x"], **SLOPES, **design, seed=2)
    ours = fit_mixed(df, formula=formula)["x"]
    _assert_agrees(ours, fit_lme4(df, formula=formula))


@needs_lme4
def test_pooled_method_by_task_model_agrees_with_lme4():
    df = simulate_ratings(
        n_deployments=8, raters_per_deployment=8, conditions=("base", "weight", "activation"),
        one_arm_per_deployment=True, dimensions=["x"], **SLOPES, seed=6,
    )  # fmt: skip
    df["task"] = np.where(df["deployment"].str[1:].astype(int) % 4 < 2, "aut", "task_task")
    fit = fit_pooled(df)["x"]
    assert fit["model_selection"]["started_from"].startswith(
        "score ~ 0 + task + task:condition + (1 + steered | rater) + (1 | stimulus) + (1 + condition | item) "
        "+ (1 + steered | deployment)"
    )
    ref = fit_lme4(df, formula=fit["formula"])
    for t in fit["fixed_effects"]:
        name = t["term"].replace("[T.", "").replace("[", "").replace("]", "")
        assert t["estimate"] == pytest.approx(ref["fixed"][name], rel=1e-4), name
        assert t["se"] == pytest.approx(ref["se"][name], rel=1e-4), name
        assert t["df"] == pytest.approx(ref["df"][name], rel=1e-3), name
    # The weight - activation contrasts carry their own Satterthwaite df, not the normal's.
    assert all(0 < c["df"] < 1e3 for c in fit["contrasts"])


def test_the_default_model_follows_the_design_and_says_why():
    """The paper's design: a rater sees base and one steered arm (one slope), an item is seen in
    base and both arms (one slope per arm), a stimulus sits in one condition (intercept only)."""
    df = simulate_ratings(
        n_deployments=8, raters_per_deployment=10, conditions=("base", "weight", "activation"),
        one_arm_per_deployment=True, dimensions=["x"], stimuli_per_condition=8, **SLOPES, seed=2,
    )  # fmt: skip
    fit = fit_mixed(df)["x"]
    selection = fit["model_selection"]
    assert selection["started_from"] == (
        "score ~ condition + (1 + steered | rater) + (1 | stimulus) + (1 + condition | item)"
    )
    reasons = {d["term"]: d["reason"] for d in selection["design"]}
    assert "one other condition" in reasons["(1 + steered | rater)"]
    assert "constant within each stimulus" in reasons["(1 | stimulus)"]
    assert "one slope per condition" in reasons["(1 + condition | item)"]
    # The 3 x 3 item covariance from 8 items is singular: the rule drops its correlations,
    # and every step says what it did and why; the final fit is not singular.
    assert selection["steps"] and not selection["singular"] and fit["warnings"] == []
    assert selection["steps"][0]["action"].startswith("drop the correlations: (1 + condition | item)")
    assert fit["formula"] in fit["method"]
    assert {r["term"] for r in fit["random_effects"] if r["group"] == "rater"} == {"(Intercept)", "steered"}


@needs_lme4
def test_the_rule_simplifies_what_lme4_calls_singular():
    """No item slope in truth: lme4 calls the maximal fit singular, the rule removes what is at zero,
    and what remains is not singular for lme4 either."""
    df = simulate_ratings(n_deployments=6, raters_per_deployment=10, dimensions=["x"], sd_rater_slope=8.0, seed=7)
    fit = fit_mixed(df)["x"]
    assert fit_lme4(df, formula=fit["model_selection"]["started_from"])["singular"]
    steps = fit["model_selection"]["steps"]
    assert steps and all(s["reason"] for s in steps)
    assert "(1 + steered | rater)" in fit["formula"], "the rater slope is real and must stay"
    assert not fit_lme4(df, formula=fit["formula"])["singular"]


def test_an_explicit_singular_formula_is_fitted_as_asked_and_warned_about():
    df = simulate_ratings(n_deployments=6, raters_per_deployment=10, dimensions=["x"], seed=7)
    fit = fit_mixed(df, formula=MAXIMAL)["x"]
    assert fit["formula"] == MAXIMAL and fit["model_selection"]["singular"]
    assert any(w.startswith("SingularFitWarning") for w in fit["warnings"])
    simplified = fit_mixed(df, formula=MAXIMAL, simplify=True)["x"]
    assert simplified["formula"] != MAXIMAL and not simplified["model_selection"]["singular"]


def test_a_group_with_few_levels_gets_no_slope_and_contrasts_never_fall_back_silently():
    """Two deployments (one per method) cannot show how steering varies across deployments: the
    pooled model gives deployment an intercept only, and the method contrast has a finite df."""
    df = simulate_ratings(
        n_deployments=2, raters_per_deployment=10, conditions=("base", "weight", "activation"),
        one_arm_per_deployment=True, dimensions=["x"], seed=4,
    )  # fmt: skip
    fit = fit_pooled(df)["x"]
    reasons = {d["term"]: d["reason"] for d in fit["model_selection"]["design"]}
    assert "too few" in reasons["(1 | deployment)"]
    contrast = fit["contrasts"][0]
    assert 1 < contrast["df"] < 1e3 and contrast["ci_high"] - contrast["ci_low"] < 10 * contrast["se"]


def test_few_items_give_few_df_and_a_t_interval():
    """Five items with a by-item slope: the contrast's Satterthwaite df falls far below the ratings' count."""
    df = simulate_ratings(
        n_deployments=8, raters_per_deployment=10, dimensions=["x"], sd_item_slope=8.0, sd_rater_slope=5.0, seed=3
    )
    fit = fit_mixed(df, formula=MAXIMAL)["x"]
    effect = fit["fixed_effects"][1]
    assert 3 < effect["df"] < 15
    from scipy.stats import t

    half = (effect["ci_high"] - effect["ci_low"]) / 2
    assert half == pytest.approx(t.ppf(0.975, effect["df"]) * effect["se"], rel=1e-9)
    intercepts = fit_mixed(df, random="intercepts")["x"]["fixed_effects"][1]
    assert intercepts["se"] < 0.75 * effect["se"], "ignoring the item slopes understates the uncertainty"


def test_nonconvergence_is_a_named_warning_with_the_optimisers_message(monkeypatch):
    import analysis._reml as reml

    monkeypatch.setattr(reml, "MAX_EVALUATIONS", 5)
    df = simulate_ratings(n_deployments=2, raters_per_deployment=6, dimensions=["x"], seed=1)
    fit = fit_mixed(df, formula=MAXIMAL)["x"]
    assert fit["converged"] is False and "maximum" in fit["optimizer"]
    assert any(w.startswith("ConvergenceWarning") and fit["optimizer"] in w for w in fit["warnings"])


@pytest.mark.parametrize(
    "text",
    [
        MAXIMAL,
        "score ~ condition + (1 + steered || rater) + (0 + steered | item)",
        "y ~ 0 + task + task:condition + (1|rater) + (1 + condition|item)",
    ],
)
def test_formulas_read_back_as_written(text):
    parsed = parse_formula(text)
    assert parse_formula(str(parsed)) == parsed
    assert all(isinstance(t, RandomTerm) for t in parsed.random)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("condition + (1 | rater)", "one '~'"),
        ("score ~ (1 | rater)", "no fixed part"),
        ("score ~ condition + (1 | rater) + (1 + steered | rater)", "one term per group"),
        ("score ~ condition + (1 | rater + item)", "one column name"),
        ("score ~ condition + (1 + steered | rater", "unbalanced"),
        ("score ~ condition + (1 + log(x) | rater)", "column names"),
    ],
)
def test_malformed_formulas_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_formula(text)


@pytest.mark.parametrize(
    ("formula", "mutate", "message"),
    [
        ("score ~ condition + (1 | rater) + (1 | judge)", None, "'judge' is not a column"),
        ("score ~ condition + (1 + steered | stimulus)", None, "steered does not vary within any stimulus"),
        ("score ~ condition + (1 | rater) + (1 | item)", lambda d: d.assign(item="brick"), "at least two levels"),
        ("score ~ novelty + (1 | rater)", None, "novelty"),
    ],
)
def test_bad_models_say_what_to_do(formula, mutate, message):
    df = simulate_ratings(n_deployments=2, raters_per_deployment=6, dimensions=["x"], seed=1)
    df = mutate(df) if mutate else df
    with pytest.raises(ValueError, match=message):
        fit_mixed(df, formula=formula)


def test_cli_formula_errors_are_one_line_exit_2(tmp_path):
    df = simulate_ratings(n_deployments=2, raters_per_deployment=6, dimensions=["x"], seed=1)
    df.assign(item="brick").to_csv(tmp_path / "r.csv", index=False)
    for formula, message in (
        ("score ~ condition + (1 + steered | stimulus)", "does not vary"),
        ("score ~ condition + (1 | rater) + (1 | item)", "at least two levels"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "analysis", "mixed", "--ratings", str(tmp_path / "r.csv"), "--formula", formula],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
