"""Calibration: under no effect the tests reject at their nominal 5%; with a known effect the 95% CIs cover.

Each check runs at least 200 simulated studies through the real functions (the diversity
pipeline from texts to bootstrap CI, the mixed model from ratings to Satterthwaite t).
The texts are bags of words drawn from an item's vocabulary, embedded by the bag-of-words
test embedder; steering "works" by widening the vocabulary. Bounds: rejection in 2-8%
(5% +- 2 binomial SDs at 200 runs), coverage in 92-98%.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.diversity import diversity_metrics
from analysis.mixed import fit_mixed
from analysis.mode_collapse import diversity_differences
from analysis.power import Components, simulate_fits, summarise_fits
from analysis.simulate import simulate_ratings
from tests.analysis.conftest import HashingEmbedder

N_STUDIES = 200
N_ITEMS = 20
N_SAMPLES = 5
WORDS_PER_TEXT = 6
METRICS = ("distinct_2", "vendi_score")


def _word(k: int) -> str:
    # Letters only: the test embedder hashes [a-z]+ tokens.
    return "w" + chr(97 + k // 26) + chr(97 + k % 26)


def _texts(rng: np.random.Generator, vocab: int, n: int) -> list[str]:
    return [" ".join(_word(int(w)) for w in rng.integers(0, vocab, WORDS_PER_TEXT)) for _ in range(n)]


def _study(rng: np.random.Generator, widen: int) -> pd.DataFrame:
    rows = []
    for item in range(N_ITEMS):
        vocab = int(rng.integers(8, 20))  # items differ in how varied their answers are
        for condition, size in (("base", vocab), ("weight", vocab + widen)):
            for k, text in enumerate(_texts(rng, size, N_SAMPLES)):
                rows.append(("m", "m-aut-weight", "aut", condition, f"i{item}", k, text))
    return pd.DataFrame(rows, columns=["model", "deployment", "task", "condition", "item", "sample_index", "text"])


def _true_difference(widen: int, metric: str, n: int = 3000) -> float:
    """Expected steered-minus-base metric over the item population, by direct Monte Carlo."""
    rng = np.random.default_rng(123)
    emb = HashingEmbedder()
    diffs = []
    for _ in range(n):
        vocab = int(rng.integers(8, 20))
        values = []
        for size in (vocab, vocab + widen):
            texts = _texts(rng, size, N_SAMPLES)
            values.append(diversity_metrics(texts, emb.encode(texts))[metric])
        diffs.append(values[1] - values[0])
    return float(np.mean(diffs))


def _diversity_runs(widen: int) -> dict[str, list[tuple[float, float]]]:
    rng = np.random.default_rng(2026 + widen)
    emb = HashingEmbedder()
    cis: dict[str, list[tuple[float, float]]] = {m: [] for m in METRICS}
    for _ in range(N_STUDIES):
        out = diversity_differences(_study(rng, widen), n_boot=500, seed=int(rng.integers(1 << 31)), embedder=emb)
        for row in out["by_model"]:
            if row["metric"] in cis:
                cis[row["metric"]].append((row["ci_low"], row["ci_high"]))
    return cis


@pytest.mark.slow
def test_diversity_difference_null_and_coverage():
    null = _diversity_runs(widen=0)
    effect = _diversity_runs(widen=10)
    for metric in METRICS:
        rejected = np.mean([lo > 0 or hi < 0 for lo, hi in null[metric]])
        assert 0.02 <= rejected <= 0.08, (metric, rejected)
        truth = _true_difference(10, metric)
        covered = np.mean([lo <= truth <= hi for lo, hi in effect[metric]])
        assert 0.92 <= covered <= 0.98, (metric, truth, covered)


def _mixed_runs(d: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    estimates, lows, highs = [], [], []
    for seed in range(N_STUDIES):
        df = simulate_ratings(
            n_deployments=3,
            raters_per_deployment=8,
            stimuli_per_condition=5,
            dimensions=["originality"],
            effects=d,
            seed=10_000 + seed,
        )
        term = fit_mixed(df)["originality"]["fixed_effects"][1]
        estimates.append(term["estimate"])
        lows.append(term["ci_low"])
        highs.append(term["ci_high"])
    total_sd = float(np.sqrt(8.0**2 + 6.0**2 + 15.0**2))  # simulate_ratings' default SDs
    return np.array(estimates), np.array(lows), np.array(highs), d * total_sd


@pytest.mark.slow
def test_mixed_contrast_null_and_coverage():
    _, lo, hi, _ = _mixed_runs(0.0)
    rejected = float(np.mean((lo > 0) | (hi < 0)))
    assert 0.02 <= rejected <= 0.08, rejected
    _, lo, hi, truth = _mixed_runs(0.4)
    covered = float(np.mean((lo <= truth) & (truth <= hi)))
    assert 0.92 <= covered <= 0.98, covered


@pytest.mark.slow
def test_default_model_keeps_false_positives_nominal_when_raters_and_items_differ():
    """Raters and items differ in how steering moves them, and there is no effect: the default
    model (slopes where the design has them) rejects near 5%, the intercepts-only model does not.
    A small version of benchmarks/bench_calibration.py (400 studies per setting, README)."""
    components = Components(sd_rater=10, sd_stimulus=8, sd_residual=15, sd_rater_slope=10, sd_item_slope=5)
    fits = simulate_fits(
        n_sim=120, effect_d=0.0, components=components, n_deployments=8, raters_per_deployment=8, items=5,
        models={"default": {}, "intercepts only": {"random": "intercepts"}}, seed=777,
    )  # fmt: skip
    rates = summarise_fits(fits, truth=0.0).set_index("model")["rejection"]
    assert 0.01 <= rates["default"] <= 0.09, rates.to_dict()
    assert rates["intercepts only"] >= 0.10, rates.to_dict()


def _cc_prompt_rows(rng: np.random.Generator, seed_sd: float, n_seeds: int = 3, n_prompts: int = 90) -> pd.DataFrame:
    """prompt_scores.csv rows of one model whose true creativity is 5: a random effect per
    training seed, per prompt, and noise per (seed, prompt)."""
    from analysis.combinatorial import WALK_ERRORS

    seed, prompt = np.meshgrid(np.arange(n_seeds), np.arange(n_prompts), indexing="ij")
    value = 5 + rng.normal(0, seed_sd, n_seeds)[seed] + rng.normal(0, 0.3, n_prompts)[prompt]
    rows = pd.DataFrame({"seed": seed.ravel(), "prompt_id": [f"p{p}" for p in prompt.ravel()]})
    rows = rows.assign(creativity=(value + rng.normal(0, 0.5, value.shape)).ravel(), include=prompt.ravel() % 3)
    constant = {"budget": 1e13, "target_params": 1, "depth": 1, "width": 1, "temperature": 0.7, "exclude": 0}
    constant |= {"n": 4, "valid": 1.0, "utility": 1.0, "novelty": 1.0, "n_valid": 1, "novelty_valid_sum": 1.0}
    return rows.assign(**constant, **{f"n_{kind}": 0 for kind in WALK_ERRORS})


@pytest.mark.slow
def test_combinatorial_findings_intervals_carry_the_seed_to_seed_variation():
    """When training seeds dominate (3 seeds, seed SD 1, prompt SD 0.3), the two-way
    bootstrap's 95% CI of a model's creativity covers the truth; an interval over prompts
    alone (seeds not resampled) covers it in a minority of studies."""
    from dataclasses import replace

    from analysis.combinatorial_findings import group_replicates, interval

    rng = np.random.default_rng(11)
    covered = covered_prompts_only = 0
    for _ in range(N_STUDIES):
        model = group_replicates(_cc_prompt_rows(rng, seed_sd=1.0), n_boot=200, rng=rng).models[0]
        _, low, high = interval(model.statistic("creativity")[0])
        covered += low <= 5 <= high
        _, low, high = interval(replace(model, n_seeds=1).statistic("creativity")[0])  # no seed part
        covered_prompts_only += low <= 5 <= high
    print(f"coverage: seeds and prompts {covered / N_STUDIES:.3f}, prompts only {covered_prompts_only / N_STUDIES:.3f}")
    assert 0.90 <= covered / N_STUDIES <= 0.99
    assert covered_prompts_only / N_STUDIES < 0.5
