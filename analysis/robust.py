"""Robustness checks of the condition effect: an ordinal model and a rater-clustered bootstrap."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from analysis._frames import require_columns
from analysis.mixed import fit_mixed, wald_interval


def to_ordinal(scores: pd.Series, *, scale_min: float | None = None, scale_max: float | None = None, n_levels: int = 7):
    """Ordered categories for an ordinal model.

    Integer scores with at most 11 distinct values (Likert) are kept as they are; a
    continuous slider (e.g. 0–100) is cut into ``n_levels`` equal-width bins over
    ``[scale_min, scale_max]`` (default: the observed range).
    """
    values = scores.to_numpy(float)
    distinct = np.unique(values)
    if len(distinct) <= 11 and np.allclose(distinct, np.round(distinct)):
        codes = np.searchsorted(distinct, values)
    else:
        lo = np.nanmin(values) if scale_min is None else scale_min
        hi = np.nanmax(values) if scale_max is None else scale_max
        edges = np.linspace(lo, hi, n_levels + 1)[1:-1]
        codes = np.searchsorted(edges, values, side="right")
        codes = np.unique(codes, return_inverse=True)[1]  # drop empty bins: the model needs every level used
    return pd.Series(pd.Categorical(codes, ordered=True), index=scores.index)


def ordinal_sensitivity(
    ratings: pd.DataFrame,
    *,
    dimension_col: str = "dimension",
    score_col: str = "score",
    condition_col: str = "condition",
    rater_col: str = "rater",
    stimulus_col: str = "stimulus",
    reference: str = "base",
    n_levels: int = 7,
) -> pd.DataFrame:
    """Proportional-odds (logit) model of the ratings on condition, per dimension.

    statsmodels' ``OrderedModel`` has no random effects, so the crossed structure enters
    through two-way cluster-robust standard errors (by rater and by stimulus) instead.
    The question it answers: does the sign and significance of the condition effect
    survive treating the scale as ordinal rather than interval?

    Returns
    -------
    pandas.DataFrame
        ``dimension, term, log_odds, se, ci_low, ci_high, p, odds_ratio, n_levels``.
    """
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    require_columns(ratings, [dimension_col, score_col, condition_col, rater_col, stimulus_col], "ratings")
    rows = []
    for dim, df in ratings.groupby(dimension_col, sort=True):
        levels = sorted(df[condition_col].astype(str).unique())
        if len(levels) < 2:
            raise ValueError(f"dimension {dim!r}: only one condition; nothing to compare")
        ref = reference if reference in levels else levels[0]
        y = to_ordinal(df[score_col], n_levels=n_levels).reset_index(drop=True)
        X = pd.DataFrame(
            {f"{condition_col}[T.{lev}]": (df[condition_col].astype(str) == lev).to_numpy(float) for lev in levels}
        ).drop(columns=f"{condition_col}[T.{ref}]")
        groups = np.column_stack([pd.factorize(df[rater_col])[0], pd.factorize(df[stimulus_col])[0]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = OrderedModel(y, X, distr="logit").fit(
                method="bfgs", disp=False, maxiter=500, cov_type="cluster", cov_kwds={"groups": groups}
            )
        for term in X.columns:
            b, se = float(res.params[term]), float(res.bse[term])
            rows.append(
                {
                    "dimension": dim,
                    "term": term,
                    "log_odds": b,
                    "se": se,
                    **wald_interval(b, se),
                    "odds_ratio": float(np.exp(b)),
                    "n_levels": len(y.cat.categories),
                }
            )
    return pd.DataFrame(rows)


def rater_bootstrap(
    ratings: pd.DataFrame,
    *,
    n_boot: int = 200,
    rater_col: str = "rater",
    dimension_col: str = "dimension",
    strata_col: str | None = "deployment",
    level: float = 0.95,
    seed: int | None = 0,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Rater-clustered bootstrap of the condition effects of :func:`~analysis.mixed.fit_mixed`.

    Long because its parameters and results are documented here; the body is under 45 lines.

    Raters are resampled with replacement (within ``strata_col`` when present, so each
    deployment keeps its number of raters); a rater drawn twice enters as two raters.
    Every resample is refitted with the model the full data ended with (per dimension,
    its final formula: the structure is chosen once, not again per resample).

    Returns
    -------
    pandas.DataFrame
        ``dimension, term, estimate`` (full data), ``boot_mean, boot_se, ci_low, ci_high``
        (percentile), ``n_boot`` (successful resamples).
    """
    require_columns(ratings, [rater_col], "ratings")
    full = fit_mixed(ratings, rater_col=rater_col, dimension_col=dimension_col, **fit_kwargs)
    model_choices = ("formula", "random", "simplify", "item_effect", "deployment_effect")
    same_model = {k: v for k, v in fit_kwargs.items() if k not in model_choices}
    same_model |= {"rater_col": rater_col, "dimension_col": dimension_col}
    rng = np.random.default_rng(seed)
    by_rater = {r: g for r, g in ratings.groupby(rater_col, sort=False)}
    if strata_col is not None and strata_col in ratings.columns:
        strata = ratings.groupby(strata_col, sort=True)[rater_col].unique().tolist()
    else:
        strata = [ratings[rater_col].unique()]
    draws: dict[tuple[str, str], list[float]] = {}
    for _ in range(n_boot):
        parts = []
        for raters in strata:
            for k, r in enumerate(rng.choice(raters, size=len(raters), replace=True)):
                parts.append(by_rater[r].assign(**{rater_col: f"{r}#{k}"}))
        sample = pd.concat(parts, ignore_index=True)
        for dim, fit in full.items():
            try:
                refit = fit_mixed(
                    sample[sample[dimension_col] == dim], formula=fit["formula"], inference=False, **same_model
                )[dim]
            except ValueError:
                continue  # a resample that lost a condition: skip it, counted in n_boot
            for t in refit["fixed_effects"]:
                draws.setdefault((dim, t["term"]), []).append(t["estimate"])
    alpha = (1 - level) / 2
    rows = []
    for dim, fit in full.items():
        for t in fit["fixed_effects"]:
            if t["term"] == "Intercept":
                continue
            d = np.asarray(draws.get((dim, t["term"]), []))
            rows.append(
                {
                    "dimension": dim,
                    "term": t["term"],
                    "estimate": t["estimate"],
                    "boot_mean": float(d.mean()) if len(d) else np.nan,
                    "boot_se": float(d.std(ddof=1)) if len(d) > 1 else np.nan,
                    "ci_low": float(np.quantile(d, alpha)) if len(d) else np.nan,
                    "ci_high": float(np.quantile(d, 1 - alpha)) if len(d) else np.nan,
                    "n_boot": len(d),
                }
            )
    return pd.DataFrame(rows)
