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
        "formula",
        "fixed_effects",
        "variance_components",
        "random_effects",
        "correlations",
        "model_selection",
        "converged",
        "optimizer",
        "n_ratings",
        "n_raters",
        "n_stimuli",
        "method",
        "warnings",
    }
    assert fit["warnings"] == [] and fit["converged"]
    assert [t["term"] for t in fit["fixed_effects"]] == ["Intercept", "condition[T.weight]"]
    assert set(fit["fixed_effects"][0]) == {"term", "estimate", "se", "df", "ci_low", "ci_high", "p"}
    # The design's maximal structure is where the model starts; its intercepts are the components.
    # Four items are too few to estimate how steering varies across items: an item intercept only.
    assert fit["model_selection"]["started_from"] == (
        "score ~ condition + (1 + steered | rater) + (1 | stimulus) + (1 | item)"
    )
    reasons = {d["term"]: d["reason"] for d in fit["model_selection"]["design"]}
    assert "too few" in reasons["(1 | item)"]
    assert set(fit["variance_components"]) == {"rater", "stimulus", "item", "residual"}
    assert fit["formula"] in fit["method"]
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
    options = {"random": "intercepts", "item_effect": item, "deployment_effect": deployment}
    ours = fit_mixed(df, **options)["originality"]
    ref = fit_lme4(df, item_effect=item, deployment_effect=deployment)
    b = _effect(ours)
    assert b["estimate"] == pytest.approx(ref["fixed"]["conditionweight"], rel=1e-4, abs=1e-6)
    assert _effect(ours, "Intercept")["estimate"] == pytest.approx(ref["fixed"]["(Intercept)"], rel=1e-4)
    assert b["se"] == pytest.approx(ref["se"]["conditionweight"], rel=1e-4)
    assert b["df"] == pytest.approx(ref["df"]["conditionweight"], rel=1e-3)
    vc = ours["variance_components"]
    total = sum(vc.values())
    for row in ref["vc"]:
        mine = vc["residual" if row["grp"] == "Residual" else row["grp"]]
        # Relative 1e-4, or 1e-5 of the total variance for components near the zero boundary.
        assert mine == pytest.approx(row["vcov"], rel=1e-4, abs=1e-5 * total), row["grp"]


def test_statsmodels_engine_agrees(small_ratings):
    df = small_ratings[small_ratings["dimension"] == "surprise"]
    ours = fit_mixed(df, random="intercepts")["surprise"]
    sm = fit_mixed(df, random="intercepts", engine="statsmodels")["surprise"]
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


def _unbalanced_blocks(seed: int):
    """An unbalanced crossed design with a correlated slope by the largest factor and by a small one."""
    from analysis._reml import RandomBlock

    rng = np.random.default_rng(seed)
    n = 900
    codes = [pd.factorize(c)[0] for c in (rng.integers(0, 120, n), rng.integers(0, 40, n), rng.integers(0, 5, n))]
    slope = rng.integers(0, 2, n).astype(float)
    X = np.column_stack([np.ones(n), slope])
    y = rng.normal(size=n) + codes[1] * 0.05 + slope * rng.normal(0, 0.5, 5)[codes[2]]
    columns = np.column_stack([np.ones(n), slope])
    full = np.tril(np.ones((2, 2), bool))
    blocks = [
        RandomBlock(codes[0], columns, full),
        RandomBlock.intercept(codes[1]),
        RandomBlock(codes[2], columns, full),
    ]
    return y, X, blocks


@pytest.mark.parametrize("seed", [3, 4])
def test_reml_class_level_and_sparse_paths_agree(monkeypatch, seed):
    """The deviance pre-summed by classes of raters, the per-rater sparse products and the sparse
    Schur complement (designs with thousands of stimuli) give the same numbers, slopes included."""
    import analysis._reml as reml

    y, X, blocks = _unbalanced_blocks(seed)
    theta = np.array([0.7, -0.2, 0.4, 0.3, 0.2, 0.1, 0.3])
    by_class = reml._Problem(y, X, blocks)
    monkeypatch.setattr(reml, "CLASS_PRESUM_BYTES", 0)
    by_level = reml._Problem(y, X, blocks)
    monkeypatch.setattr(reml, "SPARSE_REST_LEVELS", 0)
    sparse = reml._Problem(y, X, blocks)
    assert by_class.by_class and not by_level.by_class and sparse.sparse_rest
    reference = by_class.solve(theta)
    for other in (by_level.solve(theta), sparse.solve(theta)):
        assert other[0] == pytest.approx(reference[0], rel=1e-11)
        np.testing.assert_allclose(other[1], reference[1], rtol=1e-9)


def test_reml_deviance_equals_the_dense_formula():
    """The profiled REML deviance equals -2 log restricted likelihood computed from V = ZΣZ' + σ²I directly."""
    import analysis._reml as reml

    y, X, blocks = _unbalanced_blocks(5)
    prob = reml._Problem(y, X, blocks)
    theta = np.array([0.7, -0.2, 0.4, 0.3, 0.2, 0.1, 0.3])
    sigma2 = 1.7
    Z = np.hstack([reml._z_matrix(b).toarray() for b in blocks])
    lam = [np.kron(np.eye(b.levels), prob.factor(theta, j)) for j, b in enumerate(blocks)]
    big_lambda = np.zeros((Z.shape[1], Z.shape[1]))
    offset = 0
    for m in lam:
        big_lambda[offset : offset + len(m), offset : offset + len(m)] = m
        offset += len(m)
    V = sigma2 * (Z @ big_lambda @ big_lambda.T @ Z.T + np.eye(len(y)))
    Vinv = np.linalg.inv(V)
    XtViX = X.T @ Vinv @ X
    beta = np.linalg.solve(XtViX, X.T @ Vinv @ y)
    r = y - X @ beta
    n, p = X.shape
    expected = np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + r @ Vinv @ r + (n - p) * np.log(2 * np.pi)
    assert prob.deviance_varpar(np.append(theta, np.sqrt(sigma2))) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(prob.solve(theta)[1], beta, rtol=1e-9)


def test_satterthwaite_df_small_design():
    """One deployment, 10 stimuli split 5/5 over two conditions: the condition contrast is a
    between-stimulus comparison, whose exact df is 10 - 2 = 8; Satterthwaite must find it."""
    from analysis._reml import RandomBlock, fit_reml

    df = simulate_ratings(n_deployments=1, raters_per_deployment=30, dimensions=["x"], seed=3)
    X = np.column_stack([np.ones(len(df)), (df["condition"] == "weight").to_numpy(float)])
    blocks = [RandomBlock.intercept(pd.factorize(df[c])[0]) for c in ("rater", "stimulus")]
    fit = fit_reml(df["score"].to_numpy(), X, blocks)
    assert fit.df[1] == pytest.approx(8.0, abs=0.1)
    term = _effect(fit_mixed(df, random="intercepts")["x"])
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
