"""Benchmark the per-dimension mixed model on the N=720 design against lme4 and lmerTest in the same run.

Design: 24 deployments x 30 raters x 10 stimuli (5 items x base and steered) x 3 dimensions
= 21,600 ratings, raters and stimuli nested in deployments, items shared by all of them;
rater SD 10, stimulus SD 8, residual SD 15, and raters and items differing in how steering
moves them (by-rater slope SD 10, by-item slope SD 5). For each dimension it times

- the maximal model ``score ~ condition + (1 + steered | rater) + (1 | stimulus) +
  (1 + steered | item)`` with ``fit_mixed`` (Satterthwaite df included), with lme4's
  ``lmer`` and with lmerTest's ``lmer`` (lme4 plus what lmerTest needs for its df): the
  times R reports for the fits, default tolerances;
- the default analysis (``fit_mixed(df)``: the structure derived from the design, the
  simplification rule, inference);
- random intercepts only, with ``fit_mixed``, lme4, and statsmodels (deployments as groups);

and on ``--naive-dims`` dimensions (default 0: it takes minutes) the naive statsmodels
intercepts fit with one group. It checks agreement with lme4 and times the maximal model
where raters cross deployments. Run::

    .venv/bin/python benchmarks/bench_mixed.py --out var/bench_mixed.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.lme4 import fit_lme4, lme4_available, variance_of
from analysis.mixed import fit_mixed
from analysis.simulate import simulate_ratings

MAXIMAL = "score ~ condition + (1 + steered | rater) + (1 | stimulus) + (1 + steered | item)"
DESIGN: dict[str, Any] = {
    "sd_rater": 10.0, "sd_stimulus": 8.0, "sd_residual": 15.0, "sd_rater_slope": 10.0, "sd_item_slope": 5.0,
}  # fmt: skip


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, repeat: int = 1):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, statistics.median(times)


def _naive_fit(df):
    import statsmodels.formula.api as smf

    model = smf.mixedlm(
        "score ~ condition",
        df.assign(_one=1),
        groups="_one",
        re_formula="0",
        vc_formula={"rater": "0 + C(rater)", "stimulus": "0 + C(stimulus)"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(reml=True)
    return {"condition[T.weight]": float(res.fe_params.iloc[1]), "vc": np.asarray(res.vcomp).tolist()}


def agreement(ours: dict, ref: dict) -> dict[str, float]:
    """Largest relative differences from lme4: fixed effects, SEs, df, variances."""
    name = {"Intercept": "(Intercept)", "condition[T.weight]": "conditionweight"}

    def worst(key: str, ref_key: str) -> float:
        return max(abs(t[key] / ref[ref_key][name[t["term"]]] - 1) for t in ours["fixed_effects"])

    variances = [
        abs(r["variance"] - variance_of(ref, r["group"], r["term"]))
        / max(variance_of(ref, r["group"], r["term"]), 1e-9)
        for r in ours["random_effects"]
    ]
    return {
        "max_rel_diff_fixed": worst("estimate", "fixed"),
        "max_rel_diff_se": worst("se", "se"),
        "max_rel_diff_df": worst("df", "df"),
        "max_rel_diff_variance": max(variances),
        # Agreement is only defined away from the boundary: a singular fit's boundary parameters
        # sit wherever each optimiser stopped.
        "singular": {"ours": ours["model_selection"]["singular"], "lme4": ref["singular"]},
    }


def _dimension(df, dim: str, repeat: int, have_r: bool) -> dict:
    fit, t_max = _timed(lambda: fit_mixed(df, formula=MAXIMAL)[dim], repeat)
    default, t_default = _timed(lambda: fit_mixed(df)[dim], repeat)
    _, t_int = _timed(lambda: fit_mixed(df, random="intercepts")[dim], repeat)
    _, t_sm = _timed(lambda: fit_mixed(df, random="intercepts", engine="statsmodels")[dim])
    row = {
        "dimension": dim,
        "maximal_s": t_max,
        "default_s": t_default,
        "default_formula": default["formula"],
        "intercepts_s": t_int,
        "statsmodels_intercepts_s": t_sm,
    }
    if have_r:
        ref = fit_lme4(df, formula=MAXIMAL, tight=False)
        ref_int = fit_lme4(df, tight=False)
        row |= {
            "lme4_maximal_s": ref["lme4_seconds"],
            "lmertest_maximal_s": ref["seconds"],
            "lme4_intercepts_s": ref_int["lme4_seconds"],
            "maximal_vs_lme4": t_max / ref["lme4_seconds"],
            "maximal_vs_lmertest": t_max / ref["seconds"],
            **agreement(fit, ref),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-dims", type=int, default=0, help="dimensions to fit naively (0 skips; ~3 min each)")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats of our fits (median)")
    parser.add_argument("--deployments", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args()

    ratings = simulate_ratings(n_deployments=args.deployments, seed=args.seed, **DESIGN)
    dims = sorted(ratings["dimension"].unique())
    have_r, why = lme4_available()
    results: dict = {"design": f"{args.deployments} deployments x 30 raters x 10 stimuli x 3 dimensions", **DESIGN}
    results["n_ratings"] = len(ratings)
    rows = []
    for dim in dims:
        row = _dimension(ratings[ratings["dimension"] == dim], dim, args.repeat, have_r)
        rows.append(row)
        print(json.dumps(row), flush=True)
    results["peak_rss_mb"] = _peak_mb()
    for row in rows[: args.naive_dims]:
        df = ratings[ratings["dimension"] == row["dimension"]]
        naive, t_naive = _timed(lambda df=df: _naive_fit(df))
        row["naive_s"] = t_naive
        row["speedup_vs_naive"] = t_naive / row["intercepts_s"]
        print(json.dumps({"dimension": row["dimension"], "naive_s": t_naive, "naive": naive}), flush=True)
    results["per_dimension"] = rows
    crossed = simulate_ratings(
        n_deployments=args.deployments, seed=args.seed, raters_cross_deployments=True, dimensions=["x"], **DESIGN
    )
    cfit, t_cross = _timed(lambda: fit_mixed(crossed, formula=MAXIMAL)["x"], args.repeat)
    cross = {"n_ratings": len(crossed), "maximal_s": t_cross}
    if have_r:
        cref = fit_lme4(crossed, formula=MAXIMAL, tight=False)
        cross |= {
            "lme4_maximal_s": cref["lme4_seconds"],
            "lmertest_maximal_s": cref["seconds"],
            **agreement(cfit, cref),
        }
    results["crossed_design"] = cross
    if not have_r:
        results["lme4"] = f"skipped: {why}"
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
