"""Reliability, robustness, power, novelty–utility, the report, its CLI and the rated-effects notebook."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis.mixed import condition_effects, fit_mixed, prepare_ratings
from analysis.novelty import novelty_utility, pareto_front
from analysis.power import Components, analysis_formula, analytic_power, design_advice, power_by_simulation
from analysis.reliability import krippendorff_alpha
from analysis.report import write_report
from analysis.robust import ordinal_sensitivity, rater_bootstrap, to_ordinal
from analysis.simulate import simulate_export
from tests.conftest import REPO_ROOT
from tests.notebooks import execute_notebook


@pytest.fixture(scope="module")
def export() -> tuple[pd.DataFrame, pd.DataFrame]:
    return simulate_export(seed=1)


def test_krippendorff_alpha():
    perfect = pd.DataFrame(
        {
            "rater": ["a", "a", "a", "b", "b", "b"],
            "stimulus": ["x", "y", "z"] * 2,
            "dimension": "d",
            "score": [1, 5, 9, 1, 5, 9],
        }
    )
    out = krippendorff_alpha(perfect)
    assert out.loc[0, "alpha_interval"] == pytest.approx(1.0) and out.loc[0, "alpha_ordinal"] == pytest.approx(1.0)
    noisy = perfect.assign(score=[1, 5, 9, 9, 1, 5])
    assert krippendorff_alpha(noisy).loc[0, "alpha_interval"] < 0


def test_ordinal_sensitivity_and_bootstrap(small_ratings):
    assert to_ordinal(pd.Series([1, 2, 5, 5])).cat.categories.size == 3  # Likert kept as is
    assert to_ordinal(pd.Series(np.linspace(0, 100, 50)), n_levels=5).cat.categories.size == 5
    ordinal = ordinal_sensitivity(small_ratings)
    assert len(ordinal) == 3 and (ordinal["log_odds"] > 0).all()
    boot = rater_bootstrap(small_ratings[small_ratings["dimension"] == "surprise"], n_boot=15)
    row = boot.iloc[0]
    assert row["n_boot"] == 15 and row["ci_low"] < row["estimate"] < row["ci_high"]


def test_power_by_simulation():
    big = power_by_simulation(effect_d=0.8, n_deployments=4, raters_per_deployment=8, n_sim=12)
    none = power_by_simulation(effect_d=0.0, n_deployments=4, raters_per_deployment=8, n_sim=12)
    assert big.loc[0, "power"] > 0.8 and none.loc[0, "power"] < 0.4
    assert big.loc[0, "n_raters"] == 32 and big.loc[0, "power_ci_low"] <= big.loc[0, "power"]


@pytest.mark.parametrize(("raters", "items"), [(10, 5), (20, 3)])
def test_analytic_power_agrees_with_simulated_studies(raters, items):
    """With varying items the number of items, not raters, decides power; the analytic advisor
    agrees with fitting 100 simulated studies (inside their Wilson interval)."""
    components = Components(sd_rater=10, sd_stimulus=8, sd_residual=15, sd_rater_slope=8, sd_item_slope=5)
    analytic = analytic_power(
        components=components, effect_points=6, n_deployments=6, raters_per_deployment=raters, items=items
    )
    simulated = power_by_simulation(
        effect_d=6 / components.total_sd, n_deployments=6, raters_per_deployment=raters,
        stimuli_per_condition=items, components=components, n_sim=100, seed=5,
        model={"formula": analysis_formula(components)},
    ).iloc[0]  # fmt: skip
    assert simulated["power_ci_low"] <= analytic["power"] <= simulated["power_ci_high"]
    assert 2 < analytic["df"] < 30


def test_design_advice_and_the_plan_command(tmp_path, small_ratings):
    components = Components(sd_rater_slope=6, sd_item_slope=6)
    table = design_advice(components=components, effect_points=8, raters_per_deployment=[10, 40], items=[3, 8])
    power = table.set_index(["raters_per_deployment", "items"])["power"]
    assert power[(10, 8)] > power[(40, 3)], "items, not raters, limit power when items vary"
    assert table["ratings_per_dimension"].is_monotonic_increasing and table["reaches_target"].dtype == bool
    small_ratings.to_csv(tmp_path / "pilot.csv", index=False)
    r = subprocess.run(
        [sys.executable, "-m", "analysis", "plan", "--pilot", str(tmp_path / "pilot.csv"), "--effect", "6",
         "--raters", "10,30", "--items", "3,6", "--deployments", "4", "--figure", str(tmp_path / "plan.png"),
         "--out", str(tmp_path / "plan.json")],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "pilot" in r.stdout and (tmp_path / "plan.png").stat().st_size > 1000
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert len(plan["grid"]) == 4 and plan["components"]["sd_residual"] > 0
    bad = subprocess.run(
        [sys.executable, "-m", "analysis", "plan", "--effect", "6", "--items", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "positive" in bad.stderr


def test_novelty_utility_pareto():
    table = pd.DataFrame({"novelty": [1.0, 2.0, 3.0, 1.5], "utility": [3.0, 2.0, 1.0, 1.0]})
    assert pareto_front(table).tolist() == [True, True, True, False]
    units = pd.DataFrame(
        {
            "condition": ["a", "a", "b", "b"],
            "strength": [1, 1, 2, 2],
            "nov": [1, 2, 5, 6],
            "ok": [True, True, False, True],
        }
    )
    out = novelty_utility(units, novelty_col="nov", utility_col="ok", group_cols=["condition", "strength"])
    assert out["utility"].tolist() == [1.0, 0.5] and out["pareto"].tolist() == [True, True]


def test_write_report(export, tmp_path, hashing_embedder):
    ratings, stimuli = export
    path = write_report(ratings, stimuli, tmp_path / "report", embedder=hashing_embedder, n_boot=10)
    html = path.read_text()
    for section in (
        "1. Rated effects (main table)",
        "2. Mode collapse: steered minus base",
        "3. DAT: valid answers, score, human percentile",
        "forest plot",
        "Variance components",
        "Rating distributions",
        "Novelty and utility",
        "Rater quality",
        "Robustness",
        "Automatic metrics by condition",
        "Pooled model across deployments",
    ):
        assert section in html, section
    for png in ("forest", "distributions", "diversity", "novelty_utility"):
        assert (tmp_path / "report" / f"{png}.png").stat().st_size > 1000
    main = pd.read_csv(tmp_path / "report" / "main_table.csv")
    assert set(main["dimension"]) == {"originality", "surprise", "creativity", "usefulness"}
    assert "raters excluded: 1 attention_failed" in html
    validity = pd.read_csv(tmp_path / "report" / "dat_validity.csv")
    assert validity["n_answers"].sum() == (stimuli["task"] == "dat").sum()  # invalid answers counted


def test_report_cli(export, tmp_path):
    ratings, _ = export
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    args = [
        sys.executable,
        "-m",
        "analysis",
        "report",
        "--ratings",
        str(tmp_path / "ratings.csv"),
        "--n-boot",
        "5",
        "--out",
    ]
    r = subprocess.run([*args, str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "index.html").exists()
    r = subprocess.run(
        [*args, str(tmp_path / "o2"), "--stimuli", str(tmp_path / "missing.csv")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing.csv" in r.stderr


def test_rated_effects_notebook_reproduces_the_main_table(export, tmp_path, monkeypatch):
    ratings, _ = export
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    execute_notebook(
        "rated_effects.ipynb", monkeypatch, ANALYSIS_RATINGS=tmp_path / "ratings.csv", ANALYSIS_OUT=tmp_path
    )
    from_notebook = pd.read_csv(tmp_path / "notebook_main_table.csv")
    analysed = prepare_ratings(pd.read_csv(tmp_path / "ratings.csv"))
    expected = condition_effects(analysed, fits=fit_mixed(analysed))
    pd.testing.assert_frame_equal(from_notebook, expected, check_dtype=False, rtol=1e-9)


def test_interval_alpha_closed_form_equals_the_package():
    import krippendorff

    from analysis.reliability import interval_alpha

    rng = np.random.default_rng(2)
    data = rng.normal(size=(6, 25)) + rng.normal(size=25)  # continuous: every value distinct
    data[rng.random(data.shape) < 0.3] = np.nan
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
    assert interval_alpha(data) == pytest.approx(expected, rel=1e-9)


def test_krippendorff_on_continuous_scores_of_a_large_design():
    from analysis.simulate import simulate_ratings

    ratings = simulate_ratings(n_deployments=6, dimensions=["x"], seed=1)  # 1,800 distinct float scores
    out = krippendorff_alpha(ratings)
    assert 0 < out.loc[0, "alpha_interval"] < 1 and 0 < out.loc[0, "alpha_ordinal"] < 1


def test_report_fills_empty_metric_columns_of_an_export(export, tmp_path, hashing_embedder):
    ratings, stimuli = export
    stimuli = stimuli.assign(dat_score=np.nan, dat_valid=np.nan, item_text=stimuli["item"])
    write_report(ratings, stimuli, tmp_path / "r", embedder=hashing_embedder, n_boot=0)
    validity = pd.read_csv(tmp_path / "r" / "dat_validity.csv")
    assert validity["n_valid"].sum() > 0
