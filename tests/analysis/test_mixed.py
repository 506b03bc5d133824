"""Mixed models: agreement with lme4, recovery of known parameters, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.lme4 import fit_lme4, lme4_available
from analysis.mixed import condition_effects, fit_by, fit_mixed, fit_pooled, icc, prepare_ratings, variance_components
from analysis.simulate import simulate_ratings
from tests.conftest import REPO_ROOT

LME4_OK, LME4_WHY = lme4_available()
needs_lme4 = pytest.mark.skipif(not LME4_OK, reason=LME4_WHY)


def _effect(fit, term="condition[T.weight]"):
    return next(t for t in fit["fixed_effects"] if t["term"] == term)


def test_json_shape(small_ratings):
    fits = fit_mixed(small_ratings)
    assert sorted(fits) == ["creativity", "originality", "surprise"]
    fit = fits["originality"]
    assert set(fit) == {
        "fixed_effects",
        "variance_components",
        "n_ratings",
        "n_raters",
        "n_stimuli",
        "method",
        "warnings",
    }
    assert fit["warnings"] == []
    assert [t["term"] for t in fit["fixed_effects"]] == ["Intercept", "condition[T.weight]"]
    assert set(fit["fixed_effects"][0]) == {"term", "estimate", "se", "ci_low", "ci_high", "p"}
    assert set(fit["variance_components"]) == {"rater", "stimulus", "residual"}
    assert fit["n_ratings"] == 4 * 8 * 8 and fit["n_raters"] == 32 and fit["n_stimuli"] == 32
    json.dumps(fits)


@needs_lme4
@pytest.mark.parametrize(
    ("crossed", "item", "deployment"), [(False, False, False), (True, False, False), (True, True, True)]
)
def test_agrees_with_lme4(crossed, item, deployment):
    df = simulate_ratings(
        n_deployments=6, raters_per_deployment=12, dimensions=["originality"], raters_cross_deployments=crossed, seed=5
    )
    ours = fit_mixed(df, item_effect=item, deployment_effect=deployment)["originality"]
    ref = fit_lme4(df, item_effect=item, deployment_effect=deployment)
    b = _effect(ours)
    assert b["estimate"] == pytest.approx(ref["fixed"]["conditionweight"], rel=1e-4, abs=1e-6)
    assert _effect(ours, "Intercept")["estimate"] == pytest.approx(ref["fixed"]["(Intercept)"], rel=1e-4)
    assert b["se"] == pytest.approx(ref["se"]["conditionweight"], rel=1e-3)
    vc = ours["variance_components"]
    total = sum(vc.values())
    for name, value in ref["vc"].items():
        mine = vc["residual" if name == "Residual" else name]
        # Relative 1e-3, or 1e-4 of the total variance for components near the zero boundary.
        assert mine == pytest.approx(value, rel=1e-3, abs=1e-4 * total), name


def test_statsmodels_engine_agrees(small_ratings):
    df = small_ratings[small_ratings["dimension"] == "surprise"]
    ours = fit_mixed(df)["surprise"]
    sm = fit_mixed(df, engine="statsmodels")["surprise"]
    assert "4 independent group(s)" in sm["method"]  # deployments found as components
    assert _effect(sm)["estimate"] == pytest.approx(_effect(ours)["estimate"], rel=1e-3)
    for k, v in ours["variance_components"].items():
        assert sm["variance_components"][k] == pytest.approx(v, rel=2e-2)


def test_reference_level(small_ratings):
    df = small_ratings.assign(condition=small_ratings["condition"].replace({"base": "control"}))
    fit = fit_mixed(df)["originality"]  # no "base": falls back to the first level
    assert [t["term"] for t in fit["fixed_effects"]] == ["Intercept", "condition[T.weight]"]
    fit = fit_mixed(df, reference="weight")["originality"]
    assert fit["fixed_effects"][1]["term"] == "condition[T.control]"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns="rater"), "'rater'"),
        (lambda d: d.drop(columns="score"), "'score'"),
        (lambda d: d[d["condition"] == "base"], "only one condition"),
        (lambda d: d.assign(rater="r1"), "only one rater"),
        (lambda d: d.assign(score=d["score"].where(d.index % 7 != 0)), "NaN"),
        (lambda d: d.iloc[:0], "empty"),
        (lambda d: d.assign(dimension=d["dimension"].where(d.index % 5 != 0)), "no dimension"),
    ],
)
def test_bad_input_names_the_problem(small_ratings, mutate, message):
    with pytest.raises(ValueError, match=message):
        fit_mixed(mutate(small_ratings))


def test_unknown_reference_and_missing_random_factor(small_ratings):
    with pytest.raises(ValueError, match="reference condition 'nope'"):
        fit_mixed(small_ratings, reference="nope")
    with pytest.raises(ValueError, match="'item'"):
        fit_mixed(small_ratings.drop(columns="item"), item_effect=True)


def test_preprocessing_is_explicit(small_ratings):
    df = small_ratings.assign(attention_failed=small_ratings["rater"] == "r00-000", rater_complete=True)
    df.loc[df["rater"] == "r01-001", "rater_complete"] = False
    kept = prepare_ratings(df, exclude_incomplete=True)
    assert kept.attrs["excluded_raters"] == {"attention_failed": 1, "incomplete": 1}
    assert kept["rater"].nunique() == 30
    assert prepare_ratings(df, exclude_attention_failed=False)["rater"].nunique() == 32


def test_tidy_tables(small_ratings):
    fits = fit_mixed(small_ratings)
    table = condition_effects(small_ratings, fits=fits)
    assert len(table) == 3
    assert (table["p_holm"] >= table["p"] - 1e-15).all()
    total = {d: sum(f["variance_components"].values()) for d, f in fits.items()}
    row = table.iloc[0]
    assert row["d_total"] == pytest.approx(row["estimate"] / np.sqrt(total[row["dimension"]]))
    assert 0 < row["d_z"] < 2
    vc = variance_components(fits)
    assert vc.groupby("dimension")["share"].sum().to_numpy() == pytest.approx([1, 1, 1])
    assert set(icc(fits).columns) >= {"icc_rater", "icc_stimulus", "icc_stimulus_k"}
    by_dep = fit_by(small_ratings, by="deployment")
    assert len(by_dep) == 4 * 3 and by_dep["deployment"].nunique() == 4


def test_pooled_model_with_method_by_task_terms():
    df = simulate_ratings(n_deployments=8, raters_per_deployment=6, dimensions=["creativity"], seed=4)
    dep = df["deployment"].str[1:].astype(int)
    df["task"] = np.where(dep % 2 == 0, "aut", "task_task")
    df.loc[(dep % 4 >= 2) & (df["condition"] == "weight"), "condition"] = "activation"
    fit = fit_pooled(df)["creativity"]
    steer = [t["term"] for t in fit["fixed_effects"] if ":condition[" in t["term"]]
    assert sorted(steer) == [
        "task[aut]:condition[T.activation]",
        "task[aut]:condition[T.weight]",
        "task[task_task]:condition[T.activation]",
        "task[task_task]:condition[T.weight]",
    ]
    assert "deployment" in fit["variance_components"]
    assert fit["interaction"]["df"] == 3 and 0 <= fit["interaction"]["p"] <= 1
    # A method never run on a task has no term (rather than a rank-deficient design).
    partial = fit_pooled(df[~((df["task"] == "aut") & (df["condition"] == "activation"))])["creativity"]
    assert len([t for t in partial["fixed_effects"] if ":condition[" in t["term"]]) == 3


@pytest.mark.slow
def test_parameter_recovery_and_false_positives():
    """Over seeded replicates, 95% CIs cover the truth ~95% of the time; under no effect, ~5% rejections."""
    n_rep = 300
    sd = {"sd_rater": 8.0, "sd_stimulus": 6.0, "sd_residual": 15.0}
    total_sd = np.sqrt(8.0**2 + 6.0**2 + 15.0**2)
    covered, rejected_null, vcs = 0, 0, []
    for rep in range(n_rep):
        design = {"n_deployments": 6, "raters_per_deployment": 10, "stimuli_per_condition": 5, "dimensions": ["x"]}
        eff = simulate_ratings(**design, effects=0.4, seed=1000 + rep, **sd)
        fit = fit_mixed(eff)["x"]
        b = _effect(fit)
        covered += b["ci_low"] <= 0.4 * total_sd <= b["ci_high"]
        vcs.append(fit["variance_components"])
        null = simulate_ratings(**design, effects=0.0, seed=5000 + rep, **sd)
        rejected_null += _effect(fit_mixed(null)["x"])["p"] < 0.05
    coverage, fpr = covered / n_rep, rejected_null / n_rep
    # Binomial(300, .95) has SD 1.3 points: allow about 2.5 SD either way.
    assert 0.92 <= coverage <= 0.985, coverage
    assert fpr <= 0.085, fpr
    # A single deployment (10 stimuli): where Wald z rejected 8% of null effects, the
    # Satterthwaite t keeps the nominal rate.
    small = {"n_deployments": 1, "raters_per_deployment": 30, "stimuli_per_condition": 5, "dimensions": ["x"]}
    fp_small = sum(
        _effect(fit_mixed(simulate_ratings(**small, effects=0.0, seed=9000 + rep, **sd))["x"])["p"] < 0.05
        for rep in range(200)
    )
    assert fp_small / 200 <= 0.085, fp_small / 200
    mean_vc = pd.DataFrame(vcs).mean()
    assert mean_vc["rater"] == pytest.approx(64, rel=0.15)
    assert mean_vc["stimulus"] == pytest.approx(36, rel=0.25)
    assert mean_vc["residual"] == pytest.approx(225, rel=0.05)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "analysis", *args], cwd=REPO_ROOT, capture_output=True, text=True)


def test_cli_mixed_writes_the_documented_json(small_ratings, tmp_path):
    csv = tmp_path / "ratings.csv"
    small_ratings.drop(columns=["item", "deployment"]).to_csv(csv, index=False)  # both optional
    out = tmp_path / "fits.json"
    r = _cli("mixed", "--ratings", str(csv), "--out", str(out))
    assert r.returncode == 0, r.stderr
    fits = json.loads(out.read_text())
    assert _effect(fits["creativity"])["term"] == "condition[T.weight]"
    assert fits == json.loads(json.dumps(fit_mixed(small_ratings.drop(columns=["item", "deployment"]))))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns="stimulus"), "'stimulus'"),
        (lambda d: d[d["condition"] == "weight"], "only one condition"),
        (lambda d: d.assign(score=np.nan), "NaN"),
    ],
)
def test_cli_errors_are_one_line_exit_2(small_ratings, tmp_path, mutate, message):
    csv = tmp_path / "ratings.csv"
    mutate(small_ratings).to_csv(csv, index=False)
    r = _cli("mixed", "--ratings", str(csv), "--out", str(tmp_path / "x.json"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and message in r.stderr
    assert "Traceback" not in r.stderr


def test_reml_count_grouped_and_sparse_paths_agree():
    """The precomputed-by-count evaluation equals the general sparse one on an unbalanced design."""
    from analysis._reml import _Problem

    rng = np.random.default_rng(3)
    n = 900
    codes = [rng.integers(0, 120, n), rng.integers(0, 40, n), rng.integers(0, 5, n)]
    X = np.column_stack([np.ones(n), rng.integers(0, 2, n)])
    y = rng.normal(size=n) + codes[1] * 0.05
    prob = _Problem(y, X, [pd.factorize(c)[0] for c in codes])
    assert prob.by_count
    theta = np.array([0.7, 0.3, 0.2])
    grouped = prob.solve(theta)
    prob.by_count = False
    sparse = prob.solve(theta)
    assert grouped[0] == pytest.approx(sparse[0], rel=1e-12)
    np.testing.assert_allclose(grouped[1], sparse[1], rtol=1e-10)


@pytest.mark.parametrize("by_count", [True, False])
def test_reml_sparse_schur_path_equals_the_dense_one(monkeypatch, by_count):
    """Designs with thousands of stimuli keep the Schur complement sparse: same deviance and estimates."""
    import analysis._reml as reml

    rng = np.random.default_rng(4)
    n = 900
    codes = [rng.integers(0, 120, n), rng.integers(0, 40, n), rng.integers(0, 5, n)]
    X = np.column_stack([np.ones(n), rng.integers(0, 2, n)])
    y = rng.normal(size=n) + codes[1] * 0.05
    codes = [pd.factorize(c)[0] for c in codes]
    theta = np.array([0.7, 0.3, 0.2])
    dense = reml._Problem(y, X, codes)
    monkeypatch.setattr(reml, "SPARSE_REST_LEVELS", 0)
    sparse = reml._Problem(y, X, codes)
    assert sparse.sparse_rest and not dense.sparse_rest
    sparse.sparse_by_count = sparse.sparse_by_count and by_count
    a, b = dense.solve(theta), sparse.solve(theta)
    assert a[0] == pytest.approx(b[0], rel=1e-10)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-9)


def test_satterthwaite_df_small_design():
    """One deployment, 10 stimuli split 5/5 over two conditions: the condition contrast is a
    between-stimulus comparison, whose exact df is 10 - 2 = 8; Satterthwaite must find it."""
    from analysis._reml import fit_reml

    df = simulate_ratings(n_deployments=1, raters_per_deployment=30, dimensions=["x"], seed=3)
    X = np.column_stack([np.ones(len(df)), (df["condition"] == "weight").to_numpy(float)])
    fit = fit_reml(df["score"].to_numpy(), X, [pd.factorize(df["rater"])[0], pd.factorize(df["stimulus"])[0]])
    assert fit.df[1] == pytest.approx(8.0, abs=0.1)
    term = _effect(fit_mixed(df)["x"])
    half_width = (term["ci_high"] - term["ci_low"]) / 2
    assert half_width / term["se"] == pytest.approx(2.306, abs=0.01)  # t(0.975, 8), wider than 1.96


def test_exact_fit_is_a_named_error_and_the_bootstrap_skips_it():
    """Copies of one rater explain every score: no residual variance to estimate."""
    from analysis.robust import rater_bootstrap

    one = pd.DataFrame(
        {
            "stimulus": ["s0", "s1", "s2", "s3"],
            "condition": ["base", "weight"] * 2,
            "score": [10.0, 40.0, 25.0, 70.0],
            "dimension": "x",
        }
    )
    copies = pd.concat([one.assign(rater=f"r{k}") for k in range(3)], ignore_index=True)
    with pytest.raises(ValueError, match="exactly"):
        fit_mixed(copies)
    rng = np.random.default_rng(0)
    varied = pd.concat([one.assign(rater=f"r{k}", score=one["score"] + rng.normal(0, 5, 4)) for k in range(4)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # degenerate resamples must not warn (nor crash)
        boot = rater_bootstrap(varied, n_boot=20, strata_col=None)
    assert boot.loc[0, "n_boot"] <= 20
