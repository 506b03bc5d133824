"""cc-report's findings on constructed run tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.combinatorial import WALK_ERRORS
from analysis.combinatorial_findings import best_depth, findings, slope

LEVELS = [(0, 0), (1, 0), (1, 1)]
N_WALKS = 4


def _tables(creativity, *, depths=(1, 2, 4), seeds=(0, 1, 2), temperatures=(0.7,), prompts_per_level=30, novelty=None):
    """scaling.csv and prompt_scores.csv rows of one budget and size. ``creativity(depth,
    seed, prompt, rng)`` gives a prompt's mean creativity; utility is creativity / 4;
    ``novelty(level, temperature)``, when given, the novelty of every valid walk."""
    rng = np.random.default_rng(1)
    prompt_rows, model_rows = [], []
    for depth in depths:
        for seed in seeds:
            model = {"budget": 1e13, "target_params": 1_000_000, "depth": depth, "width": 300 // depth, "seed": seed}
            for temperature in temperatures:
                for k, (n_include, n_exclude) in enumerate(LEVELS):
                    for p in range(prompts_per_level):
                        c = float(creativity(depth, seed, k * prompts_per_level + p, rng))
                        u = c / 4 if novelty is None else float(creativity(depth, seed, (k, temperature), rng))
                        n_valid = 2
                        each = 5.0 if novelty is None else novelty(k, temperature)
                        row = {**model, "include": n_include, "exclude": n_exclude, "temperature": temperature}
                        row |= {"prompt_id": f"i{n_include}x{n_exclude}-{p}", "n": N_WALKS, "valid": 0.5}
                        row |= {"utility": u, "novelty": 2.5, "creativity": c, "n_valid": n_valid}
                        row |= {"novelty_valid_sum": each * n_valid, "satisfies": 0.25}
                        row |= {f"n_{kind}": 0 for kind in WALK_ERRORS}
                        row |= {"n_not_an_edge": 2, "n_missing_inclusion": 1}  # and one walk meets the prompt
                        prompt_rows.append(row)
                    model_rows.append({**model, "include": n_include, "exclude": n_exclude, "temperature": temperature,
                                       "params": 1.0e6, "tokens": 1.6e6, "loss": 0.5 + 0.01 * seed})  # fmt: skip
    return pd.DataFrame(model_rows), pd.DataFrame(prompt_rows)


def _best(creativity, **kwargs):
    models, prompts = _tables(creativity, **kwargs)
    return findings(models, prompts, temperature=0.7, n_boot=400).get("best_architectures").iloc[0]


def test_a_depth_far_ahead_is_the_clear_best():
    best = _best(lambda depth, seed, p, rng: (5.0 if depth == 2 else 1.0) + rng.normal(0, 0.5))
    assert best["depth"] == 2 and bool(best["clear"]) and best["p_best"] > 0.99
    assert pd.isna(best["tied_depths"]) or best["tied_depths"] == ""
    assert best["creativity_ci_low"] < 5.0 < best["creativity_ci_high"]


def test_two_depths_drawn_alike_are_tied_and_the_third_is_not():
    best = _best(lambda depth, seed, p, rng: (3.0 if depth in (1, 2) else 1.0) + rng.normal(0, 1.0))
    assert best["depth"] in (1, 2) and not bool(best["clear"])
    assert str(best["tied_depths"]) == str(3 - best["depth"])  # the other of 1 and 2, never 4
    assert best["p_best"] < 0.8


def test_seed_to_seed_variation_is_in_the_interval():
    # Depth 2 beats depth 1 on every prompt of its seed 0, by far, but its seeds disagree:
    # 6, 1, 3.5 (mean 3.5) against depth 1's 3, 3, 3. Prompts alone would call it clear.
    seed_level = {(1, 0): 3.0, (1, 1): 3.0, (1, 2): 3.0, (2, 0): 6.0, (2, 1): 1.0, (2, 2): 3.5}
    best = _best(lambda depth, seed, p, rng: seed_level[(depth, seed)] + rng.normal(0, 0.2), depths=(1, 2))
    assert best["depth"] == 2 and best["creativity"] == pytest.approx(3.5, abs=0.05)
    assert not bool(best["clear"]) and str(best["tied_depths"]) == "1"
    assert best["creativity_ci_low"] < 3.0 and best["creativity_ci_high"] > 4.5


def test_models_that_learned_nothing_are_all_tied():
    best = _best(lambda depth, seed, p, rng: 0.0)
    assert not bool(best["clear"]) and best["p_best"] == pytest.approx(1 / 3)
    assert set(str(best["tied_depths"]).split(",")) == {"1", "2", "4"} - {str(best["depth"])}


def test_the_rule_takes_depths_by_probability_until_it_reaches_the_threshold():
    draws = np.array([[2.0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], [1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    best, p_best, chosen = best_depth(draws)
    assert best == 0 and p_best.tolist() == [1.0, 0.0] and chosen == [0]
    draws = np.array([[2.0, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9]])
    best, p_best, chosen = best_depth(draws)
    assert p_best.tolist() == pytest.approx([0.6, 0.4]) and chosen == [0, 1]


def test_the_trade_off_slope_is_recovered_across_levels_and_temperatures():
    # Utility 1, 2, 3 over the levels at T=0.7 and 0.5 higher at T=0.4; novelty of valid
    # walks 10 - 2 x utility: a slope of -2 on both axes.
    utility = {0: 1.0, 1: 2.0, 2: 3.0}

    def creativity(depth, seed, key, rng):
        if isinstance(key, tuple):  # asked for the utility of (level, temperature)
            level, temperature = key
            return utility[level] + (0.5 if temperature == 0.4 else 0.0) + rng.normal(0, 0.01)
        return 1.0

    models, prompts = _tables(
        creativity, depths=(1,), temperatures=(0.4, 0.7), novelty=lambda k, t: 10 - 2 * (utility[k] + (t == 0.4) * 0.5)
    )
    tradeoff = findings(models, prompts, temperature=0.7, n_boot=300)["tradeoff"]
    assert len(tradeoff) == 2 * len(LEVELS)
    for column in ("slope_levels", "slope_temperatures"):
        assert tradeoff[column].to_numpy() == pytest.approx(-2.0, abs=0.01)
        assert (tradeoff[f"{column}_ci_low"] < -1.9).all() and (tradeoff[f"{column}_ci_high"] > -2.1).all()
    row = tradeoff[(tradeoff["temperature"] == 0.7) & (tradeoff["include"] == 1) & (tradeoff["exclude"] == 1)]
    assert row["novelty_valid"].iloc[0] == pytest.approx(4.0) and row["utility"].iloc[0] == pytest.approx(3, abs=0.05)


def test_error_shares_and_the_summary_pool_seeds_and_levels():
    models, prompts = _tables(lambda depth, seed, p, rng: 2.0)
    tables = findings(models, prompts, temperature=0.7, n_boot=100)
    errors = tables["errors"].set_index("depth")
    assert list(errors.index) == ["1", "2", "4", "all"]
    assert errors["not_an_edge"].tolist() == pytest.approx([0.5] * 4)
    assert errors["missing_inclusion"].tolist() == pytest.approx([0.25] * 4)
    assert errors["unknown_concept"].tolist() == [0.0] * 4
    summary = tables["summary"]
    assert summary["n_seeds"].tolist() == [3, 3, 3] and summary["creativity"].tolist() == pytest.approx([2.0] * 3)
    assert summary["loss"].tolist() == pytest.approx([0.51] * 3) and summary["novelty_valid"].tolist() == [5.0] * 3


def test_cc_report_writes_every_table_and_figure_and_refuses_other_tables(tmp_path, capsys):
    models, prompts = _tables(lambda depth, seed, p, rng: (5.0 if depth == 2 else 1.0) + rng.normal(0, 0.5))
    models.to_csv(tmp_path / "scaling.csv", index=False)
    prompts.to_csv(tmp_path / "prompt_scores.csv", index=False)
    argv = ["cc-report", "--table", str(tmp_path / "scaling.csv"), "--out", str(tmp_path / "r"), "--n-boot", "200"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "budget 1e+13 FLOPs, 1M: best depth 2 (width 150)" in printed and "(clear)" in printed
    for name in ("summary.csv", "best_architectures.csv", "tradeoff.csv", "errors.csv"):
        assert len(pd.read_csv(tmp_path / "r" / name)) > 0
    for name in ("creativity_vs_depth.png", "errors.png", "tradeoff_1M.png"):
        assert (tmp_path / "r" / name).stat().st_size > 5000
    assert main([*argv, "--n-boot", "0"]) == 2
    assert "at least one bootstrap draw" in capsys.readouterr().err
    assert main([*argv, "--temperature", "1.0"]) == 2
    assert "no rows at temperature 1; the run has [0.7]" in capsys.readouterr().err
    prompts.drop(columns=["n_valid"]).to_csv(tmp_path / "prompt_scores.csv", index=False)
    assert main(argv) == 2
    assert "prompt_scores.csv is not a cc-scaling table of this version (missing n_valid)" in capsys.readouterr().err
    (tmp_path / "prompt_scores.csv").unlink()
    assert main(argv) == 2
    assert "file not found" in capsys.readouterr().err


def test_slope_leaves_out_undefined_points():
    x = np.array([[1.0, 1.0], [2.0, np.nan], [3.0, 2.0]])
    y = np.array([[5.0, 1.0], [3.0, 7.0], [1.0, 3.0]])
    assert slope(x, y).tolist() == pytest.approx([-2.0, 2.0])
    assert np.isnan(slope(np.array([[1.0], [np.nan]]), np.array([[1.0], [2.0]])))[0]


def test_intervals_stay_within_what_a_share_can_be():
    # Seeds that disagree completely (no walk fails by an invented edge, then every walk
    # does): the stretch for 3 seeds would carry the interval past 0 and 1.
    models, prompts = _tables(lambda depth, seed, p, rng: 2.0, depths=(1,))
    prompts["n_not_an_edge"] = np.where(prompts["seed"] == 0, 0, N_WALKS)
    prompts["n_missing_inclusion"] = 0
    row = findings(models, prompts, temperature=0.7, n_boot=300)["errors"].iloc[0]
    assert row["not_an_edge"] == pytest.approx(2 / 3)
    assert row["not_an_edge_ci_low"] == 0.0 and row["not_an_edge_ci_high"] == 1.0
