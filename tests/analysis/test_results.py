"""The paper's three results: mode collapse (diversity_differences), the DAT table, the rated effects.

Also the fallbacks that became named warnings, zero vectors, and the report's results.json.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.dat import DatScorer
from analysis.dat_results import dat_table
from analysis.diversity import diversity_metrics
from analysis.embeddings import WordVectors, cosine_similarity_matrix
from analysis.metrics import diversity_by_group
from analysis.mixed import fit_mixed, fit_pooled
from analysis.mode_collapse import diversity_differences
from analysis.notices import ZeroVectorWarning
from analysis.novelty import novelty_utility
from analysis.report import format_result_tables, write_report
from analysis.simulate import simulate_export, simulate_ratings
from tests.conftest import REPO_ROOT

AUT_TEXTS = [
    "- build a wall\n- doorstop",
    "- paperweight\n- bookend\n- grind into pigment",
    "- step stool\n- build a wall",
    "- anchor a boat\n- heat it to warm a bed",
]


def _twin_export(*, text_id: bool = True) -> pd.DataFrame:
    """Two models; base generated once per model and copied into the weight and activation deployments.

    Steered samples are the very same texts as base (other ids): every true difference is zero.
    """
    rows = []
    for model in ("llama", "qwen"):
        for item in ("brick", "shoe", "rope"):
            for k, text in enumerate(AUT_TEXTS):
                base_id = f"{model}-{item}-base-{k}"
                for method in ("weight", "activation"):
                    dep = f"{model}-aut-{method}"
                    common = {"model": model, "task": "aut", "item": item, "item_text": item, "sample_index": k}
                    rows.append({**common, "deployment": dep, "condition": "base", "text": text, "text_id": base_id})
                    rows.append(
                        {
                            **common,
                            "deployment": dep,
                            "condition": method,
                            "text": text,
                            "text_id": f"{model}-{item}-{method}-{k}",
                        }
                    )
    df = pd.DataFrame(rows)
    df["stimulus"] = [f"s{i}" for i in range(len(df))]
    return df if text_id else df.drop(columns="text_id")


# ----------------------------------------------------------------------------- parsers

DAT_OUTPUTS = [
    ("1. Cat\n2. Thimble - a small cup for a finger\n3. Ocean", ["Cat", "Thimble", "Ocean"]),
    ("Sure! Here are 10 nouns:\n1. **Apple** (a fruit)\n2. Galaxy: a system of stars", ["Apple", "Galaxy"]),
    ("cat dog thimble ocean justice spoon volcano tree idea piano", None),
    ("- cat\n- dog\n\nThese words are all very different from each other.", ["cat", "dog"]),
    ("My ten words: cat, dog, ocean, and thimble.", ["cat", "dog", "ocean", "thimble"]),
    ('Here you go: ["cat", "dog"]', ["cat", "dog"]),
    ("Here are some words for you to enjoy today", []),
    ("1. ice cream\n2. cul de sac", ["ice cream", "cul de sac"]),
]


@pytest.mark.parametrize(("text", "expected"), DAT_OUTPUTS)
def test_dat_parser_on_model_outputs(text, expected):
    from analysis.parsers import parse_dat_words

    expected = expected if expected is not None else text.split()
    assert parse_dat_words(text) == expected


def test_dat_parser_keeps_the_first_ten_words():
    from analysis.parsers import parse_dat_words

    twelve = "\n".join(f"{i + 1}. word{i}" for i in range(12))
    assert parse_dat_words(twelve) == [f"word{i}" for i in range(10)]
    assert parse_dat_words("cat\ndog") == ["cat", "dog"]  # fewer: the scorer calls it invalid


AUT_OUTPUTS = [
    (
        "Here are some uses for a brick:\n1. Build a wall\n2. **Doorstop**: keep a door open\n\nI hope these help!",
        ["Build a wall", "Doorstop: keep a door open"],
    ),
    (
        "Sure! Here are some creative uses for a brick:\n\n- Doorstop\n- Bookend\n\nThese are just a few ideas.",
        ["Doorstop", "Bookend"],
    ),
    (
        "Here are some uses for a brick: build a wall. Use it as a doorstop; grind it into pigment.",
        ["build a wall", "Use it as a doorstop", "grind it into pigment"],
    ),
    ("Build a wall\nBuild a car", ["Build a wall", "Build a car"]),
]


@pytest.mark.parametrize(("text", "expected"), AUT_OUTPUTS)
def test_aut_parser_on_model_outputs(text, expected):
    from analysis.parsers import parse_aut_uses

    assert parse_aut_uses(text) == expected


def test_generation_and_analysis_share_one_parser():
    import analysis.aut
    import analysis.dat
    import analysis.parsers
    import generation.parsers
    import generation.sweep

    assert generation.parsers.parse_dat_words is analysis.parsers.parse_dat_words
    assert generation.parsers.parse_aut_uses is analysis.parsers.parse_aut_uses
    assert generation.sweep.parse_dat_words is analysis.parsers.parse_dat_words
    assert analysis.dat.parse_dat_words is analysis.parsers.parse_dat_words
    assert analysis.aut.parse_aut_uses is analysis.parsers.parse_aut_uses


# ----------------------------------------------------------------------------- zero vectors, novelty n


def test_zero_vectors_are_not_orthogonal(tmp_path):
    sim = cosine_similarity_matrix(np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert sim[0, 0] == pytest.approx(1.0) and np.isnan(sim[0, 1])
    with pytest.warns(ZeroVectorWarning):
        out = diversity_metrics(["a", "b", "c"], np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    assert out["mean_pairwise_similarity"] == pytest.approx(1.0)  # the zero row is left out, not "orthogonal"
    vec = tmp_path / "v.txt"
    vec.write_text("cat 1 0\ndog 0 0\nsky 0 1\n")
    with pytest.warns(ZeroVectorWarning, match="'dog'"):
        wv = WordVectors(vec)
    assert "dog" not in wv and DatScorer(wv, {"cat", "dog", "sky"}).validate("dog") is None


def test_novelty_counts_only_non_missing_values():
    table = pd.DataFrame({"condition": ["a"] * 4, "nov": [1.0, np.nan, np.nan, 3.0], "ok": [1, 0, 0, 1]})
    out = novelty_utility(table, novelty_col="nov", utility_col="ok")
    assert out.loc[0, "n_novelty"] == 2 and out.loc[0, "n_utility"] == 4 and out.loc[0, "n_rows"] == 4
    assert out.loc[0, "novelty"] == pytest.approx(2.0)


# ----------------------------------------------------------------------------- diversity


@pytest.mark.parametrize("text_id", [True, False])
def test_identical_distributions_give_zero_difference(hashing_embedder, text_id):
    stimuli = _twin_export(text_id=text_id)
    out = diversity_differences(stimuli, n_boot=200, embedder=hashing_embedder)
    assert set(out) == {"by_model", "pooled", "warnings"}
    assert set(out["by_model"][0]) == {
        "model",
        "condition",
        "metric",
        "base",
        "steered",
        "difference",
        "ci_low",
        "ci_high",
        "n_items",
    }
    assert set(out["pooled"][0]) == {"condition", "metric", "difference", "ci_low", "ci_high"}
    assert {r["model"] for r in out["by_model"]} == {"llama", "qwen"}
    assert {r["condition"] for r in out["pooled"]} == {"weight", "activation"}
    for row in out["by_model"] + out["pooled"]:
        assert row["difference"] == pytest.approx(0.0, abs=1e-12), row
    assert all(r["n_items"] == 3 for r in out["by_model"])
    # The old grouping by (condition, item) pooled both models and each copied base text twice:
    old = diversity_by_group(stimuli, embedder=hashing_embedder).set_index(["condition", "item"])
    assert old.loc[("base", "brick"), "distinct_2"] < old.loc[("weight", "brick"), "distinct_2"]


def test_a_real_difference_is_found(hashing_embedder):
    stimuli = _twin_export()
    weight = stimuli["condition"] == "weight"
    # Every weight sample of an item says something of its own; base repeats itself.
    stimuli.loc[weight, "text"] = [f"- unique idea number {i} for item" for i in range(int(weight.sum()))]
    out = diversity_differences(stimuli, n_boot=200, embedder=hashing_embedder)
    row = next(r for r in out["pooled"] if r["condition"] == "weight" and r["metric"] == "distinct_2")
    assert abs(row["difference"]) > 0.1
    act = next(r for r in out["pooled"] if r["condition"] == "activation" and r["metric"] == "distinct_2")
    assert act["difference"] == pytest.approx(0.0, abs=1e-12)
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]


def test_missing_base_is_a_named_warning(hashing_embedder):
    stimuli = _twin_export()
    stimuli = stimuli[~((stimuli["deployment"] == "llama-aut-weight") & (stimuli["condition"] == "base"))]
    out = diversity_differences(stimuli, n_boot=50, embedder=hashing_embedder)
    assert any(w.startswith("MissingReferenceWarning") and "llama-aut-weight" in w for w in out["warnings"])
    assert not any(r["model"] == "llama" and r["condition"] == "weight" for r in out["by_model"])


def test_cli_diversity(tmp_path):
    stimuli = _twin_export()
    stimuli.to_csv(tmp_path / "stimuli.csv", index=False)
    out = tmp_path / "div.json"
    r = _cli("diversity", "--stimuli", str(tmp_path / "stimuli.csv"), "--out", str(out), "--n-boot", "50")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"by_model", "pooled", "warnings"}
    assert {"distinct_2", "vendi_score", "mean_pairwise_similarity"} <= {row["metric"] for row in data["pooled"]}
    bad = _cli("diversity", "--stimuli", str(tmp_path / "nope.csv"), "--out", str(out))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope.csv" in bad.stderr


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "analysis", *args], cwd=REPO_ROOT, capture_output=True, text=True)


# ----------------------------------------------------------------------------- DAT table


def _unit(dim: int, *pairs: tuple[int, float]) -> list[float]:
    v = [0.0] * dim
    for i, x in pairs:
        v[i] = x
    return v


WORDS = ["cat", "dog", "thimble", "ocean", "justice", "spoon", "volcano", "tree", "idea", "piano"]


@pytest.fixture
def reference_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A 300-d vector file that reproduces the published cat-dog and cat-thimble distances.

    cat = e0; dog at cosine 1 - 0.1983 from cat; thimble at cosine 1 - 0.8787; every other
    word is its own axis (distance 1 from everything).
    """
    c_dog, c_thim = 1 - 0.1983, 1 - 0.8787
    vectors = {
        "cat": _unit(300, (0, 1.0)),
        "dog": _unit(300, (0, c_dog), (1, math.sqrt(1 - c_dog**2))),
        "thimble": _unit(300, (0, c_thim), (2, math.sqrt(1 - c_thim**2))),
    }
    for i, w in enumerate(WORDS[3:]):
        vectors[w] = _unit(300, (3 + i, 1.0))
    vec = tmp_path / "my-vectors.txt"  # any name: recognised by content
    vec.write_text("".join(w + " " + " ".join(f"{x:.8f}" for x in v) + "\n" for w, v in vectors.items()))
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS) + "\n")
    norms = tmp_path / "norms.csv"
    norms.write_text("percentile,score\n0,50\n50,80\n100,100\n")
    return vec, words, norms


def _dat_stimuli() -> pd.DataFrame:
    seven_far = "thimble, ocean, justice, spoon, volcano, tree, idea"  # pairwise distance 1 except none: 100
    with_dog = "cat, dog, ocean, justice, spoon, volcano, tree"  # 20 pairs at 1, cat-dog 0.1983
    rows = [
        ("m", "base", with_dog),
        ("m", "base", with_dog),
        ("m", "base", "cat, dog"),  # invalid: 2 words
        ("m", "weight", seven_far),
        ("m", "weight", seven_far),
        ("m", "weight", seven_far),
    ]
    df = pd.DataFrame(rows, columns=["model", "condition", "text"])
    df["task"], df["item"], df["deployment"] = "dat", "dat", "m-dat-weight"
    df["sample_index"] = df.groupby("condition").cumcount()
    return df


def test_dat_table_golden(reference_files):
    vec, words, norms = reference_files
    table = dat_table(_dat_stimuli(), vectors=vec, words=words, norms=norms, n_boot=300)
    assert set(table) == {"rows", "norms", "warnings"}
    base, weight = table["rows"]
    assert set(base) == {
        "model",
        "condition",
        "n",
        "valid_share",
        "valid_share_ci",
        "score",
        "score_ci",
        "percentile",
        "percentile_ci",
        "percentile_gain",
        "percentile_gain_ci",
    }
    # Base: (20 x 1 + 0.1983) / 21 x 100 = 96.1824; percentile by linear interpolation between
    # (80, 50) and (100, 100): 50 + (96.1824 - 80) / 20 x 50 = 90.456.
    assert base["n"] == 3 and base["valid_share"] == pytest.approx(2 / 3)
    assert base["score"] == pytest.approx((20 + 0.1983) / 21 * 100, abs=1e-4)
    assert base["percentile"] == pytest.approx(50 + ((20 + 0.1983) / 21 * 100 - 80) / 20 * 50, abs=1e-3)
    # Weight: score 100 -> percentile 100; gain 100 - 90.456 = 9.544 points.
    assert weight["score"] == pytest.approx(100.0) and weight["percentile"] == pytest.approx(100.0)
    assert weight["percentile_gain"] == pytest.approx(100 - base["percentile"], abs=1e-9)
    assert base["percentile_gain"] is None
    lo, hi = weight["percentile_gain_ci"]
    assert lo <= weight["percentile_gain"] <= hi
    assert str(norms) in table["norms"] and table["warnings"] == []


def test_dat_table_without_the_reference_embedding_gives_no_percentiles(reference_files, tmp_path):
    vec, words, _ = reference_files
    other = tmp_path / "glove.840B.300d.txt"  # the name alone does not make it the reference
    other.write_text(vec.read_text().replace("0.80170000", "0.70000000"))
    table = dat_table(_dat_stimuli(), vectors=other, words=words, n_boot=50)
    assert all(r["percentile"] is None and r["percentile_gain"] is None for r in table["rows"])
    assert table["rows"][1]["score"] == pytest.approx(100.0)
    assert table["norms"].startswith("none")
    assert any(w.startswith("NoPercentileWarning") and "cat-dog" in w for w in table["warnings"])


def test_dat_table_labels_the_shipped_norms_approximate(reference_files):
    vec, words, _ = reference_files
    table = dat_table(_dat_stimuli(), vectors=vec, words=words, n_boot=50)
    assert "APPROXIMATE" in table["norms"]
    assert any(w.startswith("ApproximateNormsWarning") for w in table["warnings"])
    assert table["rows"][1]["percentile"] is not None


def test_dat_table_counts_copied_base_answers_once(reference_files):
    vec, words, norms = reference_files
    stimuli = _dat_stimuli()
    twin = stimuli[stimuli["condition"] == "base"].assign(deployment="m-dat-activation")
    table = dat_table(pd.concat([stimuli, twin]), vectors=vec, words=words, norms=norms, n_boot=50)
    assert table["rows"][0]["n"] == 3


def test_cli_dat_table(reference_files, tmp_path):
    vec, words, norms = reference_files
    _dat_stimuli().to_parquet(tmp_path / "s.parquet")
    out = tmp_path / "dat.json"
    args = ["dat-table", "--stimuli", str(tmp_path / "s.parquet"), "--vectors", str(vec), "--words-file", str(words)]
    r = _cli(*args, "--norms", str(norms), "--out", str(out), "--n-boot", "50")
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["rows"][1]["percentile_gain"] == pytest.approx(9.544, abs=1e-3)
    bad = _cli(*args, "--norms", str(tmp_path / "no-norms.csv"), "--out", str(out))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no-norms.csv" in bad.stderr


# ----------------------------------------------------------------------------- mixed-model fallbacks


def test_missing_base_is_a_warning_in_the_fit(small_ratings):
    df = small_ratings.assign(condition=small_ratings["condition"].replace({"base": "control"}))
    fit = fit_mixed(df)["originality"]
    assert any(w.startswith("MissingReferenceWarning") and "'control'" in w for w in fit["warnings"])


def test_singular_hessian_is_a_named_warning(small_ratings, monkeypatch):
    import analysis._reml as reml

    real_inv = np.linalg.inv

    def inv(a):
        # Fault injection: the 3 x 3 Hessian in (rater, stimulus, residual) variances is singular.
        if np.shape(a) == (3, 3):
            raise np.linalg.LinAlgError("singular matrix")
        return real_inv(a)

    monkeypatch.setattr(reml.np.linalg, "inv", inv)
    fit = fit_mixed(small_ratings[small_ratings["dimension"] == "surprise"], random="intercepts")["surprise"]
    assert any(w.startswith("SingularHessianWarning") for w in fit["warnings"])
    effect = fit["fixed_effects"][1]
    assert effect["ci_high"] - effect["estimate"] == pytest.approx(1.959964 * effect["se"], rel=1e-5)


def test_text_id_is_the_stimulus_random_effect():
    df = simulate_ratings(n_deployments=2, raters_per_deployment=10, stimuli_per_condition=4, seed=3)
    df = df[df["dimension"] == "originality"].copy()
    # The base stimuli of d01 are copies of d00's: same texts, other tokens.
    base = df["condition"] == "base"
    df["text_id"] = df["stimulus"].where(~base, df["stimulus"].str.replace("d01-", "d00-"))
    fit = fit_mixed(df)["originality"]
    assert fit["n_stimuli"] == df["text_id"].nunique() == 12 and fit["warnings"] == []
    df["sample_index"] = df["item"].str[-2:].astype(int)
    fit = fit_mixed(df.drop(columns="text_id"))["originality"]
    assert fit["n_stimuli"] == 16
    assert any(w.startswith("CopiedStimuliWarning") for w in fit["warnings"])


@pytest.mark.skipif(not __import__("analysis.lme4").lme4.lme4_available()[0], reason="R with lme4 not installed")
def test_statsmodels_names_variance_components_as_lme4():
    from analysis.lme4 import fit_lme4

    df = simulate_ratings(n_deployments=4, raters_per_deployment=6, dimensions=["originality"], seed=8)
    # Make the components clearly different so a mislabelling cannot pass.
    rng = np.random.default_rng(1)
    df["score"] += df["item"].map({i: rng.normal(0, 12) for i in df["item"].unique()})
    df["score"] += df["deployment"].map({d: rng.normal(0, 4) for d in df["deployment"].unique()})
    options = {"random": "intercepts", "item_effect": True, "deployment_effect": True}
    sm = fit_mixed(df, engine="statsmodels", **options)["originality"]
    ref = fit_lme4(df, item_effect=True, deployment_effect=True)
    vc = sm["variance_components"]
    assert list(vc) == ["rater", "stimulus", "item", "deployment", "residual"]
    for row in ref["vc"]:
        name = "residual" if row["grp"] == "Residual" else row["grp"]
        assert vc[name] == pytest.approx(row["vcov"], rel=0.05, abs=0.5), name


def test_weight_vs_activation_contrast():
    df = simulate_ratings(
        n_deployments=4,
        raters_per_deployment=8,
        conditions=("base", "weight", "activation"),
        effects={"weight": 0.5, "activation": 0.0},
        dimensions=["originality"],
        seed=4,
    )
    fits = fit_pooled(df)
    rows = fits["originality"]["contrasts"]
    row = next(r for r in rows if r["contrast"] == "weight - activation")
    assert row["estimate"] > 0 and row["ci_low"] < row["estimate"] < row["ci_high"]
    terms = {t["term"]: t["estimate"] for t in fits["originality"]["fixed_effects"]}
    assert row["estimate"] == pytest.approx(
        terms["task[aut]:condition[T.weight]"] - terms["task[aut]:condition[T.activation]"]
    )


# ----------------------------------------------------------------------------- report


def test_report_writes_the_three_results(tmp_path, hashing_embedder):
    ratings, stimuli = simulate_export(n_deployments=4, raters_per_deployment=5, seed=2)
    ratings["simulated"] = True
    path = write_report(ratings, stimuli, tmp_path / "r", embedder=hashing_embedder, n_boot=0, diversity_boot=100)
    html = path.read_text()
    assert "SIMULATED RATINGS" in html
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert set(results) == {"effects", "diversity", "dat", "summary"}
    assert results["effects"]["simulated"] is True
    # The model of every dimension is stated: where it started (the design's maximal structure),
    # each simplification step with its reason, what was fitted; the same in the page and the text.
    models = {m["dimension"]: m for m in results["effects"]["models"]}
    assert set(models) == {"originality", "surprise", "creativity", "usefulness"}
    for model in models.values():
        assert model["started_from"].startswith("score ~ condition + (1 + steered | rater) + (1 | stimulus)")
        assert html.count(model["formula"].replace(">", "&gt;")) >= 1
        for step in model["steps"]:
            assert step["action"] in html.replace("&gt;", ">") and step["reason"]
    assert {r["dimension"] for r in results["effects"]["rows"]} == {
        "originality",
        "surprise",
        "creativity",
        "usefulness",
    }
    assert set(results["diversity"]) == {"by_model", "pooled", "warnings"}
    assert set(results["dat"]) == {"rows", "norms", "warnings"}
    text = format_result_tables(results)
    assert text.startswith("!") and "SIMULATED RATINGS" in text
    for heading in ("1. Rated effects", "2. Mode collapse", "3. DAT per model and condition", "norms: none"):
        assert heading in text
    assert all(f"{dim}: {m['formula']}" in text for dim, m in models.items())
    assert analysis.format_result_tables is format_result_tables


def test_report_cli_options_and_errors(tmp_path):
    ratings, _ = simulate_export(n_deployments=2, raters_per_deployment=4, seed=1)
    ratings.to_csv(tmp_path / "r.csv", index=False)
    base = ["report", "--ratings", str(tmp_path / "r.csv"), "--out", str(tmp_path / "out"), "--n-boot", "0"]
    r = _cli(*base, "--random", "intercepts", "--item-effect", "--deployment-effect")
    assert r.returncode == 0, r.stderr
    assert (
        "(1 | rater) + (1 | stimulus) + (1 | item) + (1 | deployment)" in (tmp_path / "out" / "index.html").read_text()
    )
    formula = "score ~ condition + (1 + steered | rater) + (1 | stimulus)"
    r = _cli(*base, "--formula", formula, "--out", str(tmp_path / "formula"))
    assert r.returncode == 0, r.stderr
    assert formula in (tmp_path / "formula" / "index.html").read_text()
    for extra, message in ((["--dat-norms", "missing.csv"], "missing.csv"), (["--diversity-boot", "-1"], ">= 0")):
        r = _cli(*base, *extra)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_report_never_drops_the_pooled_section_silently(tmp_path):
    ratings, _ = simulate_export(n_deployments=4, raters_per_deployment=5, seed=2)
    # One dimension has no "base" arm: its main fit warns and uses another reference; the
    # pooled model (reference base) cannot be fitted, and the report says so.
    useful = ratings["dimension"] == "usefulness"
    ratings.loc[useful, "condition"] = ratings.loc[useful, "condition"].replace({"base": "control"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_report(ratings, None, tmp_path / "r", n_boot=0)
    html = path.read_text()
    assert "PooledModelWarning" in html and "Not fitted" in html and "MissingReferenceWarning" in html
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert any(w.startswith("PooledModelWarning") for w in results["effects"]["warnings"])
    assert "PooledModelWarning" in format_result_tables(results)
