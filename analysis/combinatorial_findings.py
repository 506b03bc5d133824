"""The scaling experiment's three findings, each with its uncertainty (``cc-report``).

Input: a ``cc-scaling`` run folder's ``scaling.csv`` (one row per model, training seed,
constraint level and temperature) and ``prompt_scores.csv`` (one row per held-out prompt of
each). Models are compared within a *group*: one compute budget and one target size.

Uncertainty is a two-way bootstrap over training seeds and held-out prompts (how it is
built and why: docs/combinatorial.md, "How uncertain each number is"):

- prompts are resampled within each constraint level, with the same draw for every model
  and temperature of a group (all of them answered the same prompts);
- each model's training seeds are resampled on their own (its seeds are its own models),
  with the same draw for all its levels and temperatures (one trained model answers all);
- with few seeds the seed part of each replicate is stretched by the small-sample factor of
  :func:`analysis.mode_collapse.small_sample_factor`, so that it spreads as Student's t
  over seeds rather than as the too-narrow bootstrap of 3 values.

Every table's CI is the 2.5 and 97.5 percentiles of the replicates; the point estimate is
the full sample.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.combinatorial import WALK_ERRORS
from analysis.mode_collapse import small_sample_factor
from analysis.novelty import pareto_front

GROUP = ["budget", "target_params"]
ARCHITECTURE = ["depth", "width"]
# Metric -> (numerator, denominator) columns of prompt_scores.csv; None: each prompt counts once.
METRICS: dict[str, tuple[str, str | None]] = {
    "valid": ("valid", None),
    "utility": ("utility", None),
    "novelty": ("novelty", None),
    "creativity": ("creativity", None),
    "novelty_valid": ("novelty_valid_sum", "n_valid"),
    **{kind: (f"n_{kind}", "n") for kind in WALK_ERRORS},
}
# Every metric is at least 0; these are shares, at most 1. The seed stretch can carry a
# replicate past a bound, which no model could reach: replicates are clipped to them.
SHARES = {"valid", *WALK_ERRORS}
# The rule for the best architecture: the depths that, taken in order of their probability
# of being best (the best point estimate first), reach this probability together. The best is
# clear when it reaches it alone; the others in the set are tied with it.
BEST_SET_PROBABILITY = 0.8


@dataclass(frozen=True)
class ModelReplicates:
    """Bootstrap sums of one model (all its seeds) of a group.

    ``seeds_drawn[metric]`` and ``seeds_fixed[metric]`` hold (numerator, denominator) arrays
    indexed [temperature, level, replicate]; replicate 0 is the sample itself. In
    ``seeds_drawn`` both seeds and prompts are resampled, in ``seeds_fixed`` only prompts.
    """

    depth: int
    width: int
    n_seeds: int
    seeds_drawn: dict[str, tuple[np.ndarray, np.ndarray]]
    seeds_fixed: dict[str, tuple[np.ndarray, np.ndarray]]

    def statistic(self, metric: str, levels: Sequence[int] | slice = slice(None)) -> np.ndarray:
        """The metric over ``levels`` (their prompts pooled), [temperature, replicate]: the
        prompt-resampled value plus the seed resampling's deviation, stretched for few seeds,
        within the metric's range."""
        with np.errstate(invalid="ignore", divide="ignore"):
            drawn = [part[:, levels, :].sum(axis=1) for part in self.seeds_drawn[metric]]
            fixed = [part[:, levels, :].sum(axis=1) for part in self.seeds_fixed[metric]]
            value_drawn, value_fixed = drawn[0] / drawn[1], fixed[0] / fixed[1]
        stretch = small_sample_factor(self.n_seeds) if self.n_seeds > 1 else 0.0
        return np.clip(value_fixed + stretch * (value_drawn - value_fixed), 0.0, 1.0 if metric in SHARES else None)


@dataclass(frozen=True)
class GroupReplicates:
    """Every model of one group (budget, target size), on shared prompt draws."""

    budget: float
    target_params: int
    temperatures: tuple[float, ...]
    levels: tuple[tuple[int, int], ...]
    models: tuple[ModelReplicates, ...]


def group_replicates(cells: pd.DataFrame, *, n_boot: int, rng: np.random.Generator) -> GroupReplicates:
    """The bootstrap of one group's prompt rows (``prompt_scores.csv`` rows of one budget and
    target size). Raises ``ValueError`` naming a model whose prompt rows are incomplete."""
    temperatures = tuple(sorted(cells["temperature"].unique()))
    prompts = cells.drop_duplicates("prompt_id")[["prompt_id", "include", "exclude"]]
    prompts = prompts.sort_values(["include", "exclude", "prompt_id"])
    prompt_order = pd.Index(prompts["prompt_id"])
    sizes = prompts.groupby(["include", "exclude"], sort=True).size()
    levels = tuple((int(i), int(x)) for i, x in sizes.index)
    ends = np.cumsum(sizes.to_numpy())
    level_slices = [slice(int(end - size), int(end)) for end, size in zip(ends, sizes.to_numpy(), strict=True)]
    # Row 0 of every draw is the sample itself.
    prompt_weights = np.ones((n_boot + 1, len(prompt_order)))
    for part in level_slices:
        size = part.stop - part.start
        prompt_weights[1:, part] = rng.multinomial(size, np.full(size, 1 / size), size=n_boot)
    models = []
    for _, rows in cells.groupby(ARCHITECTURE, sort=True):
        depth, width = int(rows["depth"].iloc[0]), int(rows["width"].iloc[0])
        models.append(
            _model_replicates(rows, depth, width, temperatures, prompt_order, level_slices, prompt_weights, rng)
        )
    budget, target = cells["budget"].iloc[0], cells["target_params"].iloc[0]
    return GroupReplicates(float(budget), int(target), temperatures, levels, tuple(models))


def _model_replicates(
    rows: pd.DataFrame,
    depth: int,
    width: int,
    temperatures: tuple[float, ...],
    prompt_order: pd.Index,
    level_slices: list[slice],
    prompt_weights: np.ndarray,
    rng: np.random.Generator,
) -> ModelReplicates:
    """One model's sums: per metric, values [temperature, seed, prompt] weighted by the
    prompt draws, then summed over seeds as drawn (or all once)."""
    seeds = sorted(rows["seed"].unique())
    n_boot = prompt_weights.shape[0] - 1
    seed_weights = np.ones((n_boot + 1, len(seeds)))
    seed_weights[1:] = rng.multinomial(len(seeds), np.full(len(seeds), 1 / len(seeds)), size=n_boot)
    index = pd.MultiIndex.from_product([temperatures, seeds], names=["temperature", "seed"])
    drawn: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    fixed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for metric, columns in METRICS.items():
        parts_drawn, parts_fixed = [], []
        for column in columns:
            values = np.ones((len(temperatures), len(seeds), len(prompt_order)))
            if column is not None:
                table = rows.pivot_table(index=["temperature", "seed"], columns="prompt_id", values=column)
                table = table.reindex(index=index, columns=prompt_order)
                if table.isna().to_numpy().any():
                    raise ValueError(
                        f"depth {depth}, width {width}: prompt rows are missing for some seed or temperature "
                        "(an interrupted run? run cc-scaling again to finish it)"
                    )
                values = table.to_numpy(float).reshape(values.shape)
            # [temperature, seed, level, replicate]
            sums = np.stack([values[:, :, part] @ prompt_weights[:, part].T for part in level_slices], axis=2)
            parts_drawn.append(np.einsum("bs,tslb->tlb", seed_weights, sums) / len(seeds))
            parts_fixed.append(sums.mean(axis=1))
        drawn[metric], fixed[metric] = (parts_drawn[0], parts_drawn[1]), (parts_fixed[0], parts_fixed[1])
    return ModelReplicates(depth, width, len(seeds), drawn, fixed)


def interval(replicates: np.ndarray) -> tuple[float, float, float]:
    """(estimate, 2.5%, 97.5%) from replicates [..., 0: the sample, 1..: draws]; NaN when a
    draw is undefined in half of them or more (e.g. no valid walk to take a novelty of)."""
    estimate = float(replicates[0])
    draws = replicates[1:]
    finite = draws[np.isfinite(draws)]
    if len(finite) == 0 or len(finite) < 0.5 * len(draws):
        return estimate, float("nan"), float("nan")
    low, high = np.quantile(finite, [0.025, 0.975])
    return estimate, float(low), float(high)


def best_depth(values: np.ndarray) -> tuple[int, np.ndarray, list[int]]:
    """The rule for the best architecture, on creativity replicates [model, replicate].

    Returns the index of the best point estimate (the first among equals), each model's
    probability of being best (its share of draws in which it has the highest value; a tie
    in a draw is shared equally), and the set of models that, taken best first and then in
    order of that probability, reach :data:`BEST_SET_PROBABILITY` together."""
    draws = values[:, 1:]
    top = draws == np.nanmax(draws, axis=0, keepdims=True)
    p_best = (top / top.sum(axis=0, keepdims=True)).mean(axis=1)
    best = int(np.argmax(values[:, 0]))
    order = [best] + [int(i) for i in np.argsort(-p_best, kind="stable") if i != best]
    chosen, total = [], 0.0
    for i in order:
        chosen.append(i)
        total += p_best[i]
        if total >= BEST_SET_PROBABILITY - 1e-12:
            break
    return best, p_best, chosen


def slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``y`` on ``x`` over the first axis, per replicate (the rest);
    points where either is undefined are left out, NaN with fewer than two points."""
    ok = np.isfinite(x) & np.isfinite(y)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        xm = np.where(ok, x, np.nan)
        ym = np.where(ok, y, np.nan)
        dx = xm - np.nanmean(xm, axis=0)
        dy = ym - np.nanmean(ym, axis=0)
        result = np.nansum(dx * dy, axis=0) / np.nansum(dx * dx, axis=0)
    return np.where((ok.sum(axis=0) >= 2) & np.isfinite(result), result, np.nan)


def _with_interval(row: dict, name: str, replicates: np.ndarray) -> None:
    row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = interval(replicates)


def summary_table(groups: Sequence[GroupReplicates], models: pd.DataFrame) -> pd.DataFrame:
    """Per model (budget, size, depth, width) and temperature, over its seeds and all levels'
    prompts: valid share, utility, novelty, novelty of valid walks, creativity with CIs, and
    the mean over seeds of its parameters, tokens and held-out loss (``models``: scaling.csv)."""
    per_model = models.drop_duplicates([*GROUP, *ARCHITECTURE, "seed"]).groupby([*GROUP, *ARCHITECTURE])
    trained = per_model[["params", "tokens", "loss"]].mean()
    trained["loss_sd"] = per_model["loss"].std()
    trained_by_model = {key: {str(k): v for k, v in values.items()} for key, values in trained.to_dict("index").items()}
    rows = []
    for group in groups:
        for model in group.models:
            for t, temperature in enumerate(group.temperatures):
                row: dict[str, Any] = {"budget": group.budget, "target_params": group.target_params}
                row |= {"depth": model.depth, "width": model.width, "temperature": temperature}
                row |= {"n_seeds": model.n_seeds}
                row |= trained_by_model[(group.budget, group.target_params, model.depth, model.width)]
                for metric in ("valid", "utility", "novelty", "novelty_valid", "creativity"):
                    _with_interval(row, metric, model.statistic(metric)[t])
                rows.append(row)
    return pd.DataFrame(rows)


def best_architectures(groups: Sequence[GroupReplicates], temperature: float) -> pd.DataFrame:
    """Per group, the best depth by creativity at ``temperature`` with its CI, every depth's
    probability of being best, ``clear`` and ``tied_depths`` (the rule: :func:`best_depth`)."""
    rows = []
    for group in groups:
        t = group.temperatures.index(temperature)
        values = np.stack([model.statistic("creativity")[t] for model in group.models])
        best, p_best, chosen = best_depth(values)
        model = group.models[best]
        row: dict[str, Any] = {"budget": group.budget, "target_params": group.target_params}
        row |= {"temperature": temperature, "depth": model.depth, "width": model.width, "n_seeds": model.n_seeds}
        _with_interval(row, "creativity", values[best])
        depths = [m.depth for m in group.models]
        row["p_best"] = float(p_best[best])
        row["clear"] = len(chosen) == 1
        row["tied_depths"] = ",".join(str(depths[i]) for i in sorted(chosen) if i != best)
        row["p_best_by_depth"] = ",".join(f"{d}:{p:.2f}" for d, p in zip(depths, p_best, strict=True))
        rows.append(row)
    return pd.DataFrame(rows)


def tradeoff_table(groups: Sequence[GroupReplicates]) -> pd.DataFrame:
    """Per model, temperature and constraint level: utility, novelty of valid walks and
    creativity with CIs; the slope of novelty on utility across levels (per model and
    temperature) and across temperatures (per model and level), with CIs."""
    rows = []
    for group in groups:
        for model in group.models:
            per_level = {
                metric: np.stack([model.statistic(metric, [k]) for k in range(len(group.levels))], axis=1)
                for metric in ("utility", "novelty_valid", "creativity")
            }  # [temperature, level, replicate]
            across_levels = slope(per_level["utility"].swapaxes(0, 1), per_level["novelty_valid"].swapaxes(0, 1))
            across_temperatures = slope(per_level["utility"], per_level["novelty_valid"])
            for (t, temperature), (k, (n_include, n_exclude)) in _pairs(group):
                row = {"budget": group.budget, "target_params": group.target_params, "depth": model.depth}
                row |= {"width": model.width, "temperature": temperature, "include": n_include, "exclude": n_exclude}
                for metric, values in per_level.items():
                    _with_interval(row, metric, values[t, k])
                _with_interval(row, "slope_levels", across_levels[t])
                _with_interval(row, "slope_temperatures", across_temperatures[k])
                rows.append(row)
    return pd.DataFrame(rows)


def _pairs(group: GroupReplicates) -> list[tuple[tuple[int, float], tuple[int, tuple[int, int]]]]:
    """Every (temperature index and value, level index and value) of a group."""
    return [(t, k) for t in enumerate(group.temperatures) for k in enumerate(group.levels)]


def error_table(groups: Sequence[GroupReplicates]) -> pd.DataFrame:
    """Per group and temperature, the share of walks failing for each reason (the first in
    the order of ``WALK_ERRORS``) with CIs, per depth and pooled over depths (``depth`` "all")."""
    rows = []
    for group in groups:
        for t, temperature in enumerate(group.temperatures):
            shares = {kind: np.stack([model.statistic(kind)[t] for model in group.models]) for kind in WALK_ERRORS}
            labels = [str(model.depth) for model in group.models]
            for i, depth in [*enumerate(labels), (None, "all")]:
                row = {"budget": group.budget, "target_params": group.target_params, "depth": depth}
                row["temperature"] = temperature
                for kind, values in shares.items():
                    _with_interval(row, kind, values.mean(axis=0) if i is None else values[i])
                rows.append(row)
    return pd.DataFrame(rows)


def _size_label(target: float) -> str:
    return f"{target / 1e6:g}M parameters"


def plot_creativity_vs_depth(summary: pd.DataFrame, best: pd.DataFrame, temperature: float):
    """Creativity against depth at ``temperature`` with its CI over seeds and prompts: one
    panel per target size, one line per budget. The best depth is a star (filled when it is
    clear), the depths tied with it are ringed, each labelled with its probability of being best."""
    import matplotlib.pyplot as plt

    sizes = sorted(summary["target_params"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.6 * len(sizes), 3.6), squeeze=False, sharey=True)
    rows = summary[summary["temperature"] == temperature]
    for ax, size in zip(axes[0], sizes, strict=True):
        for i, (budget, line) in enumerate(rows[rows["target_params"] == size].groupby("budget", sort=True)):
            line = line.sort_values("depth")
            colour = f"C{i}"
            err = np.vstack(
                [line["creativity"] - line["creativity_ci_low"], line["creativity_ci_high"] - line["creativity"]]
            )
            pick = best[(best["budget"] == budget) & (best["target_params"] == size)].iloc[0]
            label = f"{budget:.2g} FLOPs ({'clear' if pick['clear'] else 'not clear'})"
            ax.errorbar(line["depth"], line["creativity"], yerr=np.nan_to_num(err), marker="o", ms=4, capsize=3,
                        color=colour, label=label)  # fmt: skip
            p_of = dict(item.split(":") for item in str(pick["p_best_by_depth"]).split(","))
            tied = [int(d) for d in str(pick["tied_depths"]).split(",") if d not in ("", "nan")]
            for depth, value in zip(line["depth"], line["creativity"], strict=True):
                if depth == pick["depth"]:
                    ax.plot(depth, value, marker="*", ms=14, color=colour, mfc=colour if pick["clear"] else "white")
                elif depth in tied:
                    ax.plot(depth, value, marker="o", ms=11, color=colour, mfc="none")
                if depth == pick["depth"] or depth in tied:
                    ax.annotate(f"P={float(p_of[str(depth)]):.2f}", (depth, value), xytext=(5, 5),
                                textcoords="offset points", fontsize=7, color=colour)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(rows["depth"].unique()), [str(d) for d in sorted(rows["depth"].unique())])
        ax.set_xlabel("depth (layers)")
        ax.set_title(_size_label(size), fontsize=10)
        ax.legend(title="budget", fontsize=7, title_fontsize=8)
    axes[0][0].set_ylabel(f"creativity E[U·N] at T={temperature:g}")
    fig.tight_layout()
    return fig


def plot_tradeoff(tradeoff: pd.DataFrame, target_params: float):
    """The novelty-utility frontier of one model size: novelty of valid walks against utility,
    one panel per budget; colour: depth; marker: temperature; each point one constraint
    level; a solid line the least-squares line through the levels of one model at one
    temperature (its slope is ``slope_levels``); dashed: the Pareto front of all points."""
    import matplotlib.pyplot as plt

    rows = tradeoff[tradeoff["target_params"] == target_params]
    budgets = sorted(rows["budget"].unique())
    fig, axes = plt.subplots(1, len(budgets), figsize=(4.8 * len(budgets), 3.8), squeeze=False)
    depths = sorted(rows["depth"].unique())
    markers = dict(zip(sorted(rows["temperature"].unique()), ["v", "s", "o", "^", "D"], strict=False))
    for ax, budget in zip(axes[0], budgets, strict=True):
        panel = rows[rows["budget"] == budget]
        for (depth, temperature), line in panel.groupby(["depth", "temperature"], sort=True):
            line = line.dropna(subset=["utility", "novelty_valid"]).sort_values("utility")
            colour = f"C{depths.index(depth)}"
            ax.plot(line["utility"], line["novelty_valid"], markers[temperature], color=colour, ms=4, alpha=0.6,
                    label=f"L{depth}, T={temperature:g}")  # fmt: skip
            if len(line) >= 2 and line["utility"].nunique() > 1:
                fit = np.polyfit(line["utility"], line["novelty_valid"], 1)
                ends = line["utility"].iloc[[0, -1]].to_numpy()
                ax.plot(ends, np.polyval(fit, ends), "-", color=colour, lw=1)
        points = panel.dropna(subset=["novelty_valid"]).rename(columns={"novelty_valid": "novelty"})
        front = points[pareto_front(points)].sort_values("utility") if len(points) else points
        ax.plot(front["utility"], front["novelty"], "--", color="0.3", lw=1, label="Pareto front")
        ax.set_xlabel("utility E[U]")
        ax.set_title(f"{_size_label(target_params)}, {budget:.2g} FLOPs", fontsize=10)
    axes[0][0].set_ylabel("novelty of valid walks E[N | valid]")
    axes[0][-1].legend(fontsize=6, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def plot_errors(errors: pd.DataFrame, temperature: float):
    """Why walks fail, per model size and budget (pooled over depths) at ``temperature``:
    stacked shares of each first failure; the rest of each bar meets the prompt."""
    import matplotlib.pyplot as plt

    rows = errors[(errors["depth"] == "all") & (errors["temperature"] == temperature)]
    rows = rows.sort_values(["target_params", "budget"])
    labels = [f"{t / 1e6:g}M\n{b:.2g}" for t, b in zip(rows["target_params"], rows["budget"], strict=True)]
    fig, ax = plt.subplots(figsize=(1.1 * len(rows) + 3.2, 3.6))
    bottom = np.zeros(len(rows))
    for i, kind in enumerate(WALK_ERRORS):
        share = rows[kind].to_numpy(float)
        ax.bar(labels, share, bottom=bottom, color=plt.get_cmap("tab10")(i), label=kind)
        bottom += share
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"share of walks at T={temperature:g}")
    ax.set_xlabel("model size, budget (FLOPs)")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left", title="first failure", title_fontsize=8)
    fig.tight_layout()
    return fig


PROMPT_NEEDED = {"budget", "target_params", "depth", "width", "seed", "include", "exclude", "temperature", "prompt_id"}
TABLE_NEEDED = {"budget", "target_params", "depth", "width", "seed", "params", "tokens", "loss", "temperature"}


def check_run_tables(models: pd.DataFrame, prompts: pd.DataFrame) -> None:
    """``ValueError`` (one line) unless these are a cc-scaling run's two tables with rows."""
    needed_prompt = PROMPT_NEEDED | {c for pair in METRICS.values() for c in pair if c}
    for name, frame, needed in (("scaling.csv", models, TABLE_NEEDED), ("prompt_scores.csv", prompts, needed_prompt)):
        missing = sorted(needed - set(frame.columns))
        if missing:
            raise ValueError(f"{name} is not a cc-scaling table of this version (missing {', '.join(missing)})")
        if frame.empty:
            raise ValueError(f"{name} has no rows")


def findings(
    models: pd.DataFrame, prompts: pd.DataFrame, *, temperature: float, n_boot: int = 1000, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """The report's tables: ``summary``, ``best_architectures``, ``tradeoff``, ``errors``.

    ``models`` is scaling.csv, ``prompts`` prompt_scores.csv; ``temperature`` picks the
    best architecture. Raises ``ValueError`` for tables that are not a run's, or a
    temperature the run did not sample at.
    """
    check_run_tables(models, prompts)
    if n_boot < 1:
        raise ValueError("the findings need at least one bootstrap draw (--n-boot 1 or more)")
    if temperature not in set(prompts["temperature"]):
        raise ValueError(f"no rows at temperature {temperature:g}; the run has {sorted(set(prompts['temperature']))}")
    rng = np.random.default_rng(seed)
    groups = [group_replicates(cells, n_boot=n_boot, rng=rng) for _, cells in prompts.groupby(GROUP, sort=True)]
    return {
        "summary": summary_table(groups, models),
        "best_architectures": best_architectures(groups, temperature),
        "tradeoff": tradeoff_table(groups),
        "errors": error_table(groups),
    }


def write_findings(tables: dict[str, pd.DataFrame], out, *, temperature: float) -> list[str]:
    """Each table as ``<name>.csv`` and the figures as PNG in ``out``; returns the file names."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
        written.append(f"{name}.csv")
    figures = {
        "creativity_vs_depth.png": plot_creativity_vs_depth(
            tables["summary"], tables["best_architectures"], temperature
        ),
        "errors.png": plot_errors(tables["errors"], temperature),
    }
    for size in sorted(tables["tradeoff"]["target_params"].unique()):
        figures[f"tradeoff_{size / 1e6:g}M.png"] = plot_tradeoff(tables["tradeoff"], size)
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)
    return written
