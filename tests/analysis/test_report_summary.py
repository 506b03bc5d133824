"""The report's opening summary: each finding a sentence generated from the fitted numbers, and its limits.

Also what the report got wrong before: it named no study, drew a 1-5 Likert histogram on a
0-100 axis, gave a study without a DAT task a DAT section with a warning, and `analysis
report` had no `--keep-pilot`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd

from analysis.mixed import prepare_ratings
from analysis.report import distributions_figure, format_result_tables, write_report
from analysis.report_summary import DataFacts, dimension_scales, effect_findings, limits
from analysis.simulate import simulate_export
from tests.conftest import REPO_ROOT


def _export_with_pilot_and_likert(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """2 deployments (AUT, DAT); 'surprise' rated on a 1-5 Likert scale; one pilot rater."""
    ratings, stimuli = simulate_export(n_deployments=2, raters_per_deployment=6, seed=seed)
    likert = ratings["dimension"] == "surprise"
    ratings.loc[likert, "score"] = (1 + ratings.loc[likert, "score"] // 25).clip(1, 5)
    ratings.loc[likert, ["scale_min", "scale_max"]] = [1, 5]
    ratings["pilot"] = ratings["rater"] == ratings["rater"].iloc[-1]
    return ratings, stimuli


def test_the_summary_states_each_fitted_effect_with_its_ci_and_model(tmp_path, hashing_embedder):
    ratings, stimuli = _export_with_pilot_and_likert()
    path = write_report(
        ratings, stimuli, tmp_path / "r", embedder=hashing_embedder, n_boot=0, diversity_boot=50, plan=False,
        study="Steering pilot 3",
    )  # fmt: skip
    html = path.read_text()
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    summary = results["summary"]
    # The study is named in the title and the summary, which comes before the full tables.
    assert "<title>Steering pilot 3: analysis report</title>" in html
    assert html.index("Summary: Steering pilot 3") < html.index("Full results") < html.index("1. Rated effects")

    analysed = prepare_ratings(ratings)
    assert summary["data"]["ratings_analysed"] == len(analysed) < summary["data"]["ratings_collected"] == len(ratings)
    assert summary["data"]["excluded_raters"] == {"pilot": 1, "attention_failed": 1}
    rows = {r["dimension"]: r for r in results["effects"]["rows"]}
    formulas = {m["dimension"]: m["formula"] for m in results["effects"]["models"]}
    rated = [f for f in summary["findings"] if f["result"] == "rated effect"]
    assert {f["dimension"] for f in rated} == set(rows) == {"originality", "surprise", "creativity", "usefulness"}
    for finding in rated:
        row, sentence = rows[finding["dimension"]], finding["sentence"]
        direction = "higher" if row["estimate"] >= 0 else "lower"
        assert f"{abs(row['estimate']):.2f} points {direction} than 'base'" in sentence
        assert f"95% CI {row['ci_low']:.2f} to {row['ci_high']:.2f}" in sentence
        assert (
            f"Model: {formulas[finding['dimension']]}." in sentence and finding["model"] == formulas[row["dimension"]]
        )
        assert ("on the 1-5 scale" if row["dimension"] == "surprise" else "on the 0-100 scale") in sentence
        assert finding["significant"] == (row["p_holm"] < 0.05) and finding["figure"] == "forest"
        assert sentence.replace("'", "&#x27;") in html
    # Mode collapse and the DAT gain have their sentences and figures too.
    results_shown = {f["result"] for f in summary["findings"]}
    assert {"mode collapse", "DAT"} <= results_shown
    for name in ("forest", "diversity", "dat"):
        assert f"<img src='{name}.png'" in html.split("Full results")[0]
    # What the data cannot say, from these numbers.
    limits_text = " ".join(summary["limits"])
    for finding in (f for f in rated if not f["significant"]):
        assert f"{finding['ci_low']:.2f} to {finding['ci_high']:.2f}" in limits_text
    assert "not evidence of no effect" in limits_text or all(f["significant"] for f in rated)
    assert "1 pilot rater(s) excluded" in limits_text and "No analysed rater is simulated" in limits_text
    assert "Raters: 10 of 12 analysed; excluded by rule: 1 pilot, 1 attention_failed." in limits_text
    assert f"{len(analysed)} ratings analysed of {len(ratings)} collected" in html.split("Full results")[0]


def test_a_likert_dimension_is_drawn_on_its_own_points():
    ratings, _ = _export_with_pilot_and_likert()
    scales = dimension_scales(ratings)
    assert (scales["surprise"].low, scales["surprise"].high, scales["surprise"].discrete) == (1, 5, True)
    assert not scales["originality"].discrete
    axes = {ax.get_title(): ax for ax in distributions_figure(ratings, scales).axes}
    assert axes["surprise"].get_xlim() == (0.5, 5.5) and list(axes["surprise"].get_xticks()) == [1, 2, 3, 4, 5]
    assert axes["originality"].get_xlim() == (0, 100)
    # Without the scale columns, a dimension's axis is the range of its own scores, never another's.
    bare = dimension_scales(ratings.drop(columns=["scale_min", "scale_max"]))
    assert bare["surprise"].high <= 5


def test_a_study_without_a_dat_task_has_no_dat_section(tmp_path, hashing_embedder):
    ratings, stimuli = _export_with_pilot_and_likert()
    aut = stimuli[stimuli["task"] == "aut"]
    path = write_report(
        ratings, aut, tmp_path / "r", embedder=hashing_embedder, n_boot=0, diversity_boot=50, plan=False,
        exclude_pilot=False,
    )  # fmt: skip
    html = path.read_text()
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["dat"] is None and "3. DAT" not in html and "no DAT answers" not in html
    # The novelty-utility section stands on the rated usefulness here; without any utility
    # measure it is left out rather than shown asking for DAT stimuli.
    assert "Novelty and utility" in html and "DAT stimuli" not in html
    no_utility = ratings[ratings["dimension"] != "usefulness"]
    path = write_report(
        no_utility, aut, tmp_path / "r2", embedder=hashing_embedder, n_boot=0, diversity_boot=50, plan=False,
    )  # fmt: skip
    assert "Novelty and utility" not in path.read_text()
    assert not (tmp_path / "r" / "dat_table.csv").exists() and not (tmp_path / "r" / "dat.png").exists()
    text = format_result_tables(results)
    assert "2. Mode collapse" in text and "3. DAT" not in text
    # exclude_pilot=False keeps the pilot rater, and the summary says so.
    summary = results["summary"]
    assert summary["data"]["pilot"] == "kept" and "pilot" not in summary["data"]["excluded_raters"]
    assert summary["data"]["ratings_analysed"] == len(prepare_ratings(ratings, exclude_pilot=False))
    assert any("Pilot raters are kept" in text for text in summary["limits"])


def test_report_cli_keep_pilot_and_study(tmp_path):
    ratings, _ = _export_with_pilot_and_likert()
    ratings.to_csv(tmp_path / "pilot-ratings.csv", index=False)

    def run(out: str, *extra: str) -> dict:
        args = ["report", "--ratings", str(tmp_path / "pilot-ratings.csv"), "--out", str(tmp_path / out)]
        r = subprocess.run(
            [sys.executable, "-m", "analysis", *args, "--n-boot", "0", "--no-plan", *extra],
            cwd=REPO_ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return json.loads((tmp_path / out / "results.json").read_text())["summary"]

    kept, dropped = run("kept", "--keep-pilot", "--study", "Lab pilot"), run("dropped")
    pilot_ratings = int(ratings["pilot"].sum())
    assert kept["data"]["ratings_analysed"] == dropped["data"]["ratings_analysed"] + pilot_ratings
    assert (kept["data"]["pilot"], dropped["data"]["pilot"]) == ("kept", "excluded")
    assert kept["study"] == "Lab pilot" and dropped["study"] == "pilot-ratings.csv"


def _fit(formula: str, *, df: float, steps: int = 0, singular: bool = False) -> dict:
    return {
        "formula": formula,
        "fixed_effects": [{"term": "Intercept", "df": df}, {"term": "condition[T.weight]", "df": df}],
        "variance_components": {"rater": 16.0, "residual": 84.0},
        "model_selection": {"steps": [{"action": "drop", "reason": "at 0"}] * steps, "singular": singular},
    }


def test_the_sentences_and_limits_follow_the_numbers():
    main = pd.DataFrame(
        {
            "dimension": ["originality", "surprise"],
            "term": ["condition[T.weight]"] * 2,
            "estimate": [-6.5, 3.25],
            "ci_low": [-9.0, -1.5],
            "ci_high": [-4.0, 8.0],
            "p": [0.001, 0.2],
            "p_holm": [0.002, 0.2],
            "d_z": [-0.4, 0.1],
        }
    )
    fits = {
        "originality": _fit("score ~ condition + (1 | rater)", df=4.2, steps=2),
        "surprise": _fit("score ~ condition + (1 + steered | rater)", df=30.0, singular=True),
    }
    scales = {"originality": dimension_scales(pd.DataFrame({"dimension": ["x"], "score": [3.0]}))["x"]}
    found = effect_findings(main, fits, references={"originality": "base"}, scales=scales, figure=None)
    assert "rated 6.50 points lower than 'base' texts" in found[0].sentence and found[0].significant
    assert "a difference at the 5% level" in found[0].sentence and "t(4.2)" in found[0].sentence
    assert "3.25 points higher" in found[1].sentence and not found[1].significant
    data = DataFacts(100, 10, 80, 8, {"attention_failed": 2}, "none", 8, n_items=3, deployments=1)
    text = " ".join(limits(found, fits, data, None))
    assert "1 of 2 rated effects (surprise: weight - reference (-1.50 to 8.00))" in text
    assert "-9.00" not in text.split("Precision")[0]  # a significant effect is not listed as a null
    # CI widths in points and in SDs of a rating (sqrt(16 + 84) = 10): 5.00 and 9.50 wide.
    assert "5.00 to 9.50 points wide" in text and "0.25 to 0.47 SD" in text
    assert "originality (2 step(s) to score ~ condition + (1 | rater))" in text and "Still singular" in text
    assert "with 3 item(s) and 8 raters, the t df of the rated effects are 4.2 to 30.0" in text
    assert "8 of the 8 analysed raters are simulated" in text
    assert np.isclose(found[0].estimate, -6.5)
