"""Benchmark the per-dimension mixed model on the N=720 design against naive statsmodels and lme4.

Design: 24 deployments x 30 raters x 10 stimuli (5 per condition) x 3 dimensions = 21,600
ratings; raters and stimuli nested in deployments. For each dimension it times

- ``fit_mixed`` (profiled REML, the library's default engine),
- ``fit_mixed(engine="statsmodels")`` (MixedLM with deployments as groups),
- lme4's ``lmer`` through Rscript (the time R reports for the fit itself, and the wall
  time including R's start-up),

and on ``--naive-dims`` dimensions (default 1: it takes minutes) the naive statsmodels
fit: one group holding every rating, raters and stimuli as crossed variance components.
It checks agreement with lme4 and repeats the fit for a design where raters cross
deployments. Run::

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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.lme4 import fit_lme4, lme4_available
from analysis.mixed import fit_mixed
from analysis.simulate import simulate_ratings


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


def _agreement(ours: dict, ref: dict) -> dict[str, float]:
    fixed = {"Intercept": "(Intercept)", "condition[T.weight]": "conditionweight"}
    fe = max(
        abs(t["estimate"] - ref["fixed"][fixed[t["term"]]]) / max(1.0, abs(ref["fixed"][fixed[t["term"]]]))
        for t in ours["fixed_effects"]
    )
    vc = max(
        abs(ours["variance_components"]["residual" if k == "Residual" else k] - v) / v for k, v in ref["vc"].items()
    )
    return {"max_rel_diff_fixed": fe, "max_rel_diff_variance": vc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-dims", type=int, default=1, help="dimensions to fit naively (0 skips; ~3 min each)")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats of the fast fits (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args()

    ratings = simulate_ratings(seed=args.seed)
    dims = sorted(ratings["dimension"].unique())
    have_r, why = lme4_available()
    results: dict = {"design": "24 deployments x 30 raters x 10 stimuli x 3 dimensions", "n_ratings": len(ratings)}
    rows = []
    for dim in dims:
        df = ratings[ratings["dimension"] == dim]
        fit, t_ours = _timed(lambda df=df, dim=dim: fit_mixed(df)[dim], args.repeat)
        _, t_sm = _timed(lambda df=df, dim=dim: fit_mixed(df, engine="statsmodels")[dim], 1)
        row = {"dimension": dim, "ours_s": t_ours, "statsmodels_grouped_s": t_sm}
        if have_r:
            wall = time.perf_counter()
            ref = fit_lme4(df)
            row["lme4_fit_s"] = ref["seconds"]
            row["lme4_wall_s"] = time.perf_counter() - wall
            row.update(_agreement(fit, ref))
        rows.append(row)
        print(json.dumps(row), flush=True)
    results["peak_rss_mb_fast_fits"] = _peak_mb()
    for row in rows[: args.naive_dims]:
        df = ratings[ratings["dimension"] == row["dimension"]]
        naive, t_naive = _timed(lambda df=df: _naive_fit(df))
        row["naive_s"] = t_naive
        row["speedup_vs_naive"] = t_naive / row["ours_s"]
        print(json.dumps({"dimension": row["dimension"], "naive_s": t_naive, "naive": naive}), flush=True)
    results["per_dimension"] = rows
    results["peak_rss_mb_with_naive"] = _peak_mb()

    crossed = simulate_ratings(seed=args.seed, raters_cross_deployments=True, dimensions=["originality"])
    cfit, t_cross = _timed(lambda: fit_mixed(crossed)["originality"], args.repeat)
    cross = {"n_ratings": len(crossed), "ours_s": t_cross}
    if have_r:
        cref = fit_lme4(crossed)
        cross.update({"lme4_fit_s": cref["seconds"], **_agreement(cfit, cref)})
    results["crossed_design"] = cross
    if not have_r:
        results["lme4"] = f"skipped: {why}"
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
