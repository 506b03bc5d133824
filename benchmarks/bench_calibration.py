"""Calibration of the rated-effects model: false positives, CI coverage and power, by simulation.

The paper's design (24 deployments x 30 raters, 5 items, each rater rating 5 base and 5
steered texts; 7,200 ratings per dimension) with rater SD 10, stimulus SD 8 and residual
SD 15 points, in three settings:

- ``none``: raters and items do not differ in how steering moves them;
- ``rater slopes``: by-rater slope SD 10;
- ``rater + item slopes``: by-rater slope SD 10 and by-item slope SD 5.

For each setting it fits ``--n-sim`` studies with no effect (the share of p < .05 is the
false-positive rate; the share of 95% CIs holding 0 is the coverage) and ``--n-sim``
studies with an effect of ``--effect-d`` (coverage of the true effect, and power), each
with the default model (the design's maximal structure, simplified by the stated rule)
and with random intercepts only (the platform's model before slopes). Every rate comes
with its Wilson 95% interval. Run::

    nice -n 10 .venv/bin/python benchmarks/bench_calibration.py --n-sim 400 --jobs 2 --out var/bench_calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.power import Components, simulate_fits, summarise_fits

SETTINGS = {
    "none": Components(sd_rater=10.0, sd_stimulus=8.0, sd_residual=15.0),
    "rater slopes": Components(sd_rater=10.0, sd_stimulus=8.0, sd_residual=15.0, sd_rater_slope=10.0),
    "rater + item slopes": Components(
        sd_rater=10.0, sd_stimulus=8.0, sd_residual=15.0, sd_rater_slope=10.0, sd_item_slope=5.0
    ),
}
MODELS = {"default": {}, "intercepts only": {"random": "intercepts"}}


def _chunk(args: tuple[str, float, int, int, dict]) -> pd.DataFrame:
    setting, effect_d, seed, n_sim, design = args
    fits = simulate_fits(
        n_sim=n_sim, effect_d=effect_d, components=SETTINGS[setting], models=MODELS, seed=seed, **design
    )
    return fits.assign(setting=setting, effect_d=effect_d)


def run(n_sim: int, effects: list[float], settings: list[str], design: dict, jobs: int, seed: int) -> pd.DataFrame:
    """Every (setting, effect) cell, split into chunks of seeds over ``jobs`` processes."""
    chunk = max(1, n_sim // (4 * jobs))
    cells = [(s, d) for s in SETTINGS for d in (0.0, *effects)]  # seeds depend on the cell, not on the selection
    tasks = [
        (setting, d, seed + 100_000 * k + start, min(chunk, n_sim - start), design)
        for k, (setting, d) in enumerate(cells)
        if setting in settings and (d == 0.0 or effects)
        for start in range(0, n_sim, chunk)
    ]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return pd.concat(pool.map(_chunk, tasks), ignore_index=True)


def summary(fits: pd.DataFrame) -> list[dict]:
    rows = []
    for setting in SETTINGS:
        for d, g in fits[fits["setting"] == setting].groupby("effect_d", sort=True):
            truth = float(str(d)) * SETTINGS[setting].total_sd
            for row in summarise_fits(g, truth=truth).to_dict("records"):
                rows.append({"setting": setting, "effect_d": d, "truth_points": truth, **row})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=400, help="studies per setting and effect (default 400)")
    parser.add_argument("--effect-d", type=float, default=0.15, help="effect of the power/coverage studies")
    parser.add_argument("--deployments", type=int, default=24)
    parser.add_argument("--raters", type=int, default=30, help="raters per deployment")
    parser.add_argument("--items", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help=f"comma-separated subset of: {', '.join(SETTINGS)}"
    )
    parser.add_argument("--null-only", action="store_true", help="only the studies with no effect")
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args()
    design = {"n_deployments": args.deployments, "raters_per_deployment": args.raters, "items": args.items}
    started = time.perf_counter()
    settings = [s.strip() for s in args.settings.split(",")]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    effects = [] if args.null_only else [args.effect_d]
    fits = run(args.n_sim, effects, settings, design, args.jobs, args.seed)
    rows = summary(fits)
    for row in rows:
        print(
            f"{row['setting']:>20} d={row['effect_d']:.2f} {row['model']:>15}: rejects {row['rejection']:.3f} "
            f"[{row['rejection_ci'][0]:.3f}, {row['rejection_ci'][1]:.3f}]  covers {row['coverage']:.3f} "
            f"[{row['coverage_ci'][0]:.3f}, {row['coverage_ci'][1]:.3f}]  median df {row['median_df']:.1f}",
            flush=True,
        )
    formulas = fits[fits["model"] == "default"].groupby("setting")["formula"].value_counts().rename("n")
    result = {
        "design": design,
        "components": {k: asdict(v) for k, v in SETTINGS.items()},
        "n_sim": args.n_sim,
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "default_formulas": formulas.reset_index().to_dict("records"),
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
