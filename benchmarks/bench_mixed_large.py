"""The maximal mixed model on a design ten times the paper's, against lme4, with peak memory.

Design: 240 deployments x 30 raters x 30 stimuli (15 items x base and steered) = 7,200
raters and 216,000 ratings on one dimension (the paper: 720 raters, 7,200 ratings per
dimension); raters and stimuli nested in deployments, so 7,200 stimuli too, and by-rater
and by-item slopes in the simulated truth. The model is ``score ~ condition + (1 + steered
| rater) + (1 | stimulus) + (1 + steered | item)``; the engine keeps the stimulus block
sparse above ``analysis._reml.SPARSE_REST_LEVELS`` levels. Reports the fit time of
``fit_mixed`` (Satterthwaite df included), lme4's own ``lmer`` time and wall time through
``Rscript`` in the same run, their ratio, agreement, and the peak resident memory of this
process after the fit (before R runs: R is a separate process). Run::

    nice -n 10 .venv/bin/python benchmarks/bench_mixed_large.py --out var/bench_mixed_large.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_mixed import DESIGN, MAXIMAL, agreement  # the same design and checks as the paper-size benchmark

from analysis.lme4 import fit_lme4, lme4_available
from analysis.mixed import fit_mixed
from analysis.simulate import simulate_ratings


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=240)
    parser.add_argument("--raters", type=int, default=30, help="raters per deployment")
    parser.add_argument("--stimuli", type=int, default=15, help="stimuli per condition and deployment")
    parser.add_argument("--out", default="var/bench_mixed_large.json")
    args = parser.parse_args(argv)

    df = simulate_ratings(
        n_deployments=args.deployments,
        raters_per_deployment=args.raters,
        stimuli_per_condition=args.stimuli,
        dimensions=["originality"],
        seed=720,
        **DESIGN,
    )
    start = time.perf_counter()
    ours = fit_mixed(df, formula=MAXIMAL)["originality"]
    ours_s = time.perf_counter() - start
    peak_mb = _peak_mb()
    result = {
        "design": {"ratings": len(df), "raters": int(df["rater"].nunique()), "stimuli": int(df["stimulus"].nunique())},
        "fit_mixed_s": ours_s,
        "peak_rss_mb_after_fit": peak_mb,
        "fit_mixed": {"effect": ours["fixed_effects"][1], "random_effects": ours["random_effects"]},
        "warnings": ours["warnings"],
    }
    print(f"fit_mixed: {ours_s:.2f} s, peak RSS {peak_mb:.0f} MB, {len(df)} ratings", flush=True)
    ok, why = lme4_available()
    if ok:
        start = time.perf_counter()
        ref = fit_lme4(df, formula=MAXIMAL, tight=False)
        wall = time.perf_counter() - start
        result["lme4"] = {"fit_s": ref["lme4_seconds"], "lmertest_fit_s": ref["seconds"], "wall_s": wall}
        result["ratio_to_lme4_fit"] = ours_s / ref["lme4_seconds"]
        result |= agreement(ours, ref)
        result["effect_rel_diff"] = abs(ours["fixed_effects"][1]["estimate"] / ref["fixed"]["conditionweight"] - 1)
        print(
            f"lme4: fit {ref['lme4_seconds']:.2f} s, lmerTest {ref['seconds']:.2f} s (wall {wall:.1f} s); ratio "
            f"{result['ratio_to_lme4_fit']:.2f}; effect rel diff {result['effect_rel_diff']:.1e}, variances "
            f"{result['max_rel_diff_variance']:.1e}",
            flush=True,
        )
    else:
        result["lme4"] = f"not run: {why}"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
