"""Power, calibration and design planning of the rated-effects model, by simulation.

Each simulated study follows the platform's design (:func:`analysis.simulate.simulate_ratings`:
deployments of raters who rate every stimulus of their deployment, items shared by all
deployments) with the variance components a pilot found, random slopes included: how
much raters and items differ in how steering moves them decides power as much as the
number of raters does, and with varying items it is the number of items that limits it.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats as st

from analysis.mixed import fit_mixed
from analysis.notices import AnalysisWarning
from analysis.simulate import simulate_ratings


@dataclass(frozen=True)
class Components:
    """Standard deviations of the model's variance components, in scale points."""

    sd_rater: float = 8.0
    sd_stimulus: float = 6.0
    sd_residual: float = 15.0
    sd_item: float = 0.0
    sd_rater_slope: float = 0.0
    sd_item_slope: float = 0.0

    @property
    def total_sd(self) -> float:
        """The SD that ``effect_d`` is in units of: rater, stimulus and residual (as :func:`simulate_ratings`)."""
        return float(np.sqrt(self.sd_rater**2 + self.sd_stimulus**2 + self.sd_residual**2))


def components_from_fit(fit: Mapping[str, Any]) -> Components:
    """The components a :func:`~analysis.mixed.fit_mixed` fit (one dimension) estimated; absent ones are 0."""
    sd = {(r["group"], r["term"]): r["sd"] for r in fit["random_effects"]}

    def slope(group: str) -> float:
        # One slope of steering, or one per arm (``condition[T.<arm>]``): their root mean square.
        arms = [v for (g, term), v in sd.items() if g == group and term.startswith("condition[T.")]
        return sd.get((group, "steered"), float(np.sqrt(np.mean(np.square(arms)))) if arms else 0.0)

    return Components(
        sd_rater=sd.get(("rater", "(Intercept)"), 0.0),
        sd_stimulus=sd.get(("stimulus", "(Intercept)"), 0.0),
        sd_residual=float(np.sqrt(fit["variance_components"]["residual"])),
        sd_item=sd.get(("item", "(Intercept)"), 0.0),
        sd_rater_slope=slope("rater"),
        sd_item_slope=slope("item"),
    )


def wilson(hits: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of a binomial proportion."""
    ci = st.binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def simulate_fits(
    *,
    n_sim: int,
    effect_d: float,
    components: Components,
    models: Mapping[str, Mapping[str, Any]],
    n_deployments: int = 24,
    raters_per_deployment: int = 30,
    items: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit every model of ``models`` (name -> keyword arguments of :func:`fit_mixed`) to ``n_sim``
    simulated studies; one row per study and model: ``estimate, se, df, ci_low, ci_high, p, formula``."""
    rows = []
    for i in range(n_sim):
        df = simulate_ratings(
            n_deployments=n_deployments,
            raters_per_deployment=raters_per_deployment,
            stimuli_per_condition=items,
            dimensions=["y"],
            effects=effect_d,
            seed=seed + i,
            **asdict(components),
        )
        for name, options in models.items():
            fit = fit_mixed(df, **options)["y"]
            term = fit["fixed_effects"][1]
            rows.append({"study": i, "model": name, **term, "formula": fit["formula"]})
    return pd.DataFrame(rows)


def summarise_fits(fits: pd.DataFrame, *, truth: float, alpha: float = 0.05) -> pd.DataFrame:
    """Per model: the share of studies rejecting H0 (effect 0) at ``alpha`` and the share of 95% CIs
    covering ``truth``, each with its Wilson 95% interval, and the mean estimate."""
    rows = []
    for name, g in fits.groupby("model", sort=False):
        n = len(g)
        rejected = int((g["p"] < alpha).sum())
        covered = int(((g["ci_low"] <= truth) & (truth <= g["ci_high"])).sum())
        rows.append(
            {
                "model": name,
                "n_sim": n,
                "rejection": rejected / n,
                "rejection_ci": wilson(rejected, n),
                "coverage": covered / n,
                "coverage_ci": wilson(covered, n),
                "mean_estimate": float(g["estimate"].mean()),
                "median_df": float(g["df"].median()),
            }
        )
    return pd.DataFrame(rows)


def power_by_simulation(
    *,
    effect_d: float = 0.3,
    n_deployments: int = 24,
    raters_per_deployment: int = 30,
    stimuli_per_condition: int = 5,
    components: Components | None = None,
    alpha: float = 0.05,
    n_sim: int = 200,
    seed: int = 0,
    model: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Share of simulated studies in which the condition effect is significant.

    Long because its parameters and results are documented here; the body is under 45 lines.

    Parameters
    ----------
    effect_d : float
        True effect in units of ``components.total_sd`` (d with the rater, stimulus and
        residual variance).
    n_deployments, raters_per_deployment, stimuli_per_condition : int
        The design: raters per deployment each rate ``2 * stimuli_per_condition`` stimuli;
        ``stimuli_per_condition`` is also the number of items.
    components : Components or None
        Assumed variance components, slopes included (a pilot's estimates, see
        :func:`components_from_fit`); default: intercepts only, SDs 8, 6, 15.
    alpha : float
        Two-sided significance level (use alpha / 3 to plan for Holm over three dimensions).
    n_sim : int
        Simulated studies.
    model : mapping or None
        Keyword arguments of :func:`fit_mixed` (default: its default, the design's maximal
        structure simplified by the rule).

    Returns
    -------
    pandas.DataFrame
        One row: the design, ``power``, its Wilson 95% interval ``power_ci_low/high``,
        ``mean_estimate_d`` and ``n_sim``.
    """
    components = components or Components()
    fits = simulate_fits(
        n_sim=n_sim, effect_d=effect_d, components=components, models={"model": dict(model or {})},
        n_deployments=n_deployments, raters_per_deployment=raters_per_deployment, items=stimuli_per_condition,
        seed=seed,
    )  # fmt: skip
    hits = int((fits["p"] < alpha).sum())
    low, high = wilson(hits, n_sim)
    return pd.DataFrame(
        [
            {
                "n_deployments": n_deployments,
                "raters_per_deployment": raters_per_deployment,
                "n_raters": n_deployments * raters_per_deployment,
                "items": stimuli_per_condition,
                "stimuli_per_rater": 2 * stimuli_per_condition,
                "effect_d": effect_d,
                "alpha": alpha,
                "power": hits / n_sim,
                "power_ci_low": low,
                "power_ci_high": high,
                "mean_estimate_d": float(fits["estimate"].mean() / components.total_sd),
                "n_sim": n_sim,
            }
        ]
    )


def power_curve(*, raters_per_deployment: list[int], **kwargs: Any) -> pd.DataFrame:
    """:func:`power_by_simulation` over several numbers of raters per deployment."""
    return pd.concat(
        [power_by_simulation(raters_per_deployment=r, **kwargs) for r in raters_per_deployment], ignore_index=True
    )


def analysis_formula(components: Components) -> str:
    """The model whose random part the components describe (uncorrelated slopes)."""
    terms = ["(1 + steered || rater)" if components.sd_rater_slope > 0 else "(1 | rater)", "(1 | stimulus)"]
    if components.sd_item_slope > 0:
        terms.append("(1 + steered || item)" if components.sd_item > 0 else "(0 + steered | item)")
    elif components.sd_item > 0:
        terms.append("(1 | item)")
    return "score ~ condition + " + " + ".join(terms)


def analytic_power(
    *,
    components: Components,
    effect_points: float,
    n_deployments: int,
    raters_per_deployment: int,
    items: int,
    alpha: float = 0.05,
    n_draws: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Power of the condition contrast without simulating studies to fit.

    The standard error of the contrast is exact for the design at the true variance
    components (the GLS covariance ``σ² (X'V⁻¹X)⁻¹`` that the REML fit would estimate); its
    Satterthwaite df is taken at the true components, the median over ``n_draws`` simulated
    rating sets (the deviance's curvature depends a little on the data; where it is not
    positive at the true components, as with three items, at the draw's own REML fit).
    Power is then the two-sided rejection probability of a noncentral t with that df. The
    simulation of :func:`power_by_simulation` checks it (tests).
    """
    se, dfs = float("nan"), []
    for draw in range(n_draws):
        ratings = simulate_ratings(
            n_deployments=n_deployments, raters_per_deployment=raters_per_deployment, stimuli_per_condition=items,
            dimensions=["y"], effects=0.0, seed=seed + draw, **asdict(components),
        )  # fmt: skip
        se, df = _contrast_se_df(ratings, components)
        dfs.append(df)
    df = float(np.nanmedian(dfs))
    crit = float(st.t.ppf(1 - alpha / 2, df))
    ncp = effect_points / se
    power = float(st.nct.sf(crit, df, ncp) + st.nct.cdf(-crit, df, ncp))
    return {"power": power, "se": se, "df": df}


def _contrast_se_df(ratings: pd.DataFrame, components: Components) -> tuple[float, float]:
    """SE of the condition contrast at the true components, and its Satterthwaite df there
    (or at the data's own REML fit where the curvature at the truth is not positive)."""
    from analysis._reml import _Problem, fit_reml, satterthwaite
    from analysis.formula import parse_formula
    from analysis.mixed import Columns, _model_data
    from analysis.random_effects import model_frame

    sd = {
        ("rater", "(Intercept)"): components.sd_rater,
        ("rater", "steered"): components.sd_rater_slope,
        ("stimulus", "(Intercept)"): components.sd_stimulus,
        ("item", "(Intercept)"): components.sd_item,
        ("item", "steered"): components.sd_item_slope,
    }
    sigma = components.sd_residual
    data = _model_data(ratings, columns=Columns(), reference="base", levels=["base", "weight"])
    frame = model_frame(data, parse_formula(analysis_formula(components)), reference="base")
    theta = np.array(
        [sd[(t.group, n)] / sigma for t, names in zip(frame.terms, frame.effect_names, strict=True) for n in names]
    )
    prob = _Problem(frame.y, frame.X.to_numpy(), frame.blocks)
    L = np.array([0.0, 1.0])
    se = float(np.sqrt(L @ prob.cov_beta_varpar(np.append(theta, sigma)) @ L))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnalysisWarning)
        pieces = satterthwaite(prob, theta, sigma)
        df = pieces.df(L) if pieces is not None else float("nan")
        if not (np.isfinite(df) and df > 0):
            df = fit_reml(frame.y, frame.X.to_numpy(), frame.blocks).contrast_df(L)
    return se, float(df)


def design_advice(
    *,
    components: Components,
    effect_points: float,
    raters_per_deployment: Sequence[int],
    items: Sequence[int],
    n_deployments: int = 24,
    alpha: float = 0.05,
    target: float = 0.8,
    method: str = "analytic",
    n_sim: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Power over a grid of raters per deployment and items, for an effect of ``effect_points``.

    ``method="analytic"`` (:func:`analytic_power`, a fraction of a second per cell) or
    ``"simulation"`` (:func:`power_by_simulation`, ``n_sim`` studies per cell fitted with the
    default model, with a Wilson interval). The rows are sorted by the number of ratings a
    study costs; ``reaches_target`` marks the cells whose power is at least ``target``.
    """
    if method not in ("analytic", "simulation"):
        raise ValueError(f"method must be 'analytic' or 'simulation', not {method!r}")
    rows = []
    for raters, n_items in itertools.product(raters_per_deployment, items):
        cell: dict[str, Any] = {"n_deployments": n_deployments, "raters_per_deployment": raters, "items": n_items}
        cell |= {"ratings_per_dimension": raters * n_deployments * 2 * n_items, "effect_points": effect_points}
        if method == "analytic":
            found = analytic_power(
                components=components, effect_points=effect_points, n_deployments=n_deployments,
                raters_per_deployment=raters, items=n_items, alpha=alpha, seed=seed,
            )  # fmt: skip
            rows.append(cell | found)
            continue
        sim = power_by_simulation(
            effect_d=effect_points / components.total_sd, n_deployments=n_deployments,
            raters_per_deployment=raters, stimuli_per_condition=n_items, components=components, alpha=alpha,
            n_sim=n_sim, seed=seed,
        ).iloc[0]  # fmt: skip
        rows.append(cell | {k: sim[k] for k in ("power", "power_ci_low", "power_ci_high")})
    table = pd.DataFrame(rows).sort_values(["ratings_per_dimension", "items"], ignore_index=True)
    table["reaches_target"] = table["power"] >= target
    return table


def plot_design_advice(table: pd.DataFrame, *, target: float = 0.8):
    """Power against raters per deployment, one line per number of items, the target as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for n_items, g in table.groupby("items"):
        g = g.sort_values("raters_per_deployment")
        err = [g["power"] - g["power_ci_low"], g["power_ci_high"] - g["power"]] if "power_ci_low" in g else None
        ax.errorbar(g["raters_per_deployment"], g["power"], yerr=err, marker="o", capsize=3, label=f"{n_items} items")
    ax.axhline(target, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("raters per deployment")
    ax.set_ylabel("power")
    ax.set_ylim(0, 1.02)
    effect = table["effect_points"].iloc[0] if len(table) else float("nan")
    ax.set_title(f"power for an effect of {effect:.1f} points", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
