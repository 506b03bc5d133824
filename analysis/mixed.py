"""Linear mixed models of human ratings: one model per rated dimension.

The default model, in lme4 notation, is ``score ~ condition + (1 | rater) + (1 | stimulus)``
fitted by REML, with random intercepts for item and deployment as options. The fit is
lme4's profiled REML (see :mod:`analysis._reml`): it gives lme4's estimates (checked in
the tests and in ``benchmarks/bench_mixed.py``) in a fraction of a second on the N=720
design, whether raters are nested in deployments or cross them. ``engine="statsmodels"``
fits the same model with statsmodels ``MixedLM``, using the connected components of the
rater–stimulus graph (the deployments, when raters and stimuli are nested in them) as
independent groups with crossed variance components inside: exact, fast when the
components are small, and as slow as the naive single-group fit when they are not.
Fixed effects get t-based CIs and p-values with Satterthwaite degrees of freedom (as
lmerTest) from the default engine, Wald z from the statsmodels engine.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import patsy
import scipy.sparse as sp
import scipy.stats as st
from scipy.sparse.csgraph import connected_components

from analysis._frames import require_columns
from analysis._reml import fit_reml
from analysis.notices import (
    ConvergenceWarning,
    CopiedStimuliWarning,
    MissingReferenceWarning,
    collect_warnings,
)

Z95 = float(st.norm.ppf(0.975))


def wald_interval(estimate: float, se: float) -> dict[str, float]:
    """95% Wald interval and two-sided p of ``estimate`` with standard error ``se`` (p NaN when se is 0)."""
    p = float(2 * st.norm.sf(abs(estimate / se))) if se > 0 else float("nan")
    return {"ci_low": estimate - Z95 * se, "ci_high": estimate + Z95 * se, "p": p}


def prepare_ratings(
    ratings: pd.DataFrame,
    *,
    exclude_attention_failed: bool = True,
    exclude_incomplete: bool = False,
    attention_col: str = "attention_failed",
    complete_col: str = "rater_complete",
    rater_col: str = "rater",
    exclude_pilot: bool = True,
    pilot_col: str = "pilot",
    exclude_withdrawn: bool = True,
    withdrawn_col: str = "withdrawn",
) -> pd.DataFrame:
    """Apply the explicit preprocessing choices to a long ratings export.

    Parameters
    ----------
    ratings : pandas.DataFrame
        One row per rating.
    exclude_attention_failed : bool
        Drop every rating of a rater with any true value in ``attention_col`` (ignored
        when the column is absent).
    exclude_incomplete : bool
        Drop raters whose ``complete_col`` is false (ignored when the column is absent).
    exclude_pilot : bool
        Drop every rating of a rater with any true value in ``pilot_col``: a study's pilot
        tests the pages, its ratings are not data (ignored when the column is absent).
    exclude_withdrawn : bool
        Drop every rating of a rater with any true value in ``withdrawn_col``: a withdrawn
        participant's ratings are kept in the export but are not data (ignored when absent).

    Returns
    -------
    pandas.DataFrame
        The kept rows; ``attrs["excluded_raters"]`` records how many raters each rule removed.
    """
    keep = pd.Series(True, index=ratings.index)
    excluded = {}
    if exclude_withdrawn and withdrawn_col in ratings.columns:
        withdrawn = ratings[withdrawn_col].fillna(False).astype(bool).groupby(ratings[rater_col]).transform("any")
        excluded["withdrawn"] = int(ratings.loc[withdrawn, rater_col].nunique())
        keep &= ~withdrawn
    if exclude_pilot and pilot_col in ratings.columns:
        pilot = ratings[pilot_col].fillna(False).astype(bool).groupby(ratings[rater_col]).transform("any")
        excluded["pilot"] = int(ratings.loc[keep & pilot, rater_col].nunique())
        keep &= ~pilot
    if exclude_attention_failed and attention_col in ratings.columns:
        failed = ratings[attention_col].fillna(False).astype(bool).groupby(ratings[rater_col]).transform("any")
        excluded["attention_failed"] = int(ratings.loc[keep & failed, rater_col].nunique())
        keep &= ~failed
    if exclude_incomplete and complete_col in ratings.columns:
        complete = ratings[complete_col].fillna(False).astype(bool).groupby(ratings[rater_col]).transform("all")
        excluded["incomplete"] = int(ratings.loc[keep & ~complete, rater_col].nunique())
        keep &= complete
    out = ratings.loc[keep].copy()
    out.attrs["excluded_raters"] = excluded
    return out


def _reference_level(levels: Sequence[str], reference: str | None, explicit: bool) -> str:
    if reference is not None and reference in levels:
        return reference
    if explicit:
        raise ValueError(f"reference condition {reference!r} is not in the data; conditions are {sorted(levels)}")
    # A warning, not an error: the contrasts are still valid comparisons, only against another
    # arm, and the warning (stored with the fit, shown in the report) names which one.
    chosen = sorted(levels)[0]
    warnings.warn(
        MissingReferenceWarning(
            f"no {reference or 'base'!r} condition: contrasts are against {chosen!r} (alphabetically first of "
            f"{sorted(levels)}); pass --reference to choose"
        ),
        stacklevel=3,
    )
    return chosen


def _validate(
    df: pd.DataFrame, *, score_col: str, rater_col: str, stimulus_col: str, condition_col: str, label: str
) -> None:
    n_nan = int(df[score_col].isna().sum())
    if n_nan:
        raise ValueError(f"{label}: {n_nan} NaN value(s) in score column {score_col!r}; drop or impute them first")
    if not pd.api.types.is_numeric_dtype(df[score_col]):
        raise ValueError(f"{label}: score column {score_col!r} is not numeric")
    for col, what in ((rater_col, "rater"), (stimulus_col, "stimulus")):
        if df[col].isna().any():
            raise ValueError(f"{label}: missing {what} ids in column {col!r}")
        if df[col].nunique() < 2:
            raise ValueError(f"{label}: only one {what} ({col!r}); a random intercept needs at least two")
    if df[condition_col].isna().any():
        raise ValueError(f"{label}: missing values in condition column {condition_col!r}")
    if df[condition_col].nunique() < 2:
        only = df[condition_col].iloc[0] if len(df) else None
        raise ValueError(f"{label}: only one condition ({only!r}) in {condition_col!r}; nothing to compare")


def stimulus_factor(df: pd.DataFrame, *, stimulus_col: str = "stimulus", text_id_col: str | None = "text_id") -> str:
    """The column that identifies a stimulus for its random intercept.

    A base text copied into twin deployments is one text rated by the raters of both, so
    its copies share one random effect: ``text_id`` (the export's id of a generated text)
    when the column is present and complete, else ``stimulus``. Without ``text_id``, copies
    that can be recognised (same model, task, item and sample index of ``base`` in several
    deployments) are reported with a :class:`CopiedStimuliWarning`.
    """
    if text_id_col is not None and text_id_col in df.columns and df[text_id_col].notna().all():
        return text_id_col
    key = ["model", "task", "item", "sample_index"]
    if {"deployment", "condition", *key} <= set(df.columns):
        base = df[df["condition"].astype(str) == "base"]
        copies = base.groupby(key)["deployment"].nunique()
        if (copies > 1).any():
            warnings.warn(
                CopiedStimuliWarning(
                    f"{int((copies > 1).sum())} base stimuli appear in several deployments and the ratings have no "
                    f"{text_id_col!r} column: each copy gets its own random intercept (treated as independent)"
                ),
                stacklevel=3,
            )
    return stimulus_col


def _random_factors(
    df: pd.DataFrame,
    rater_col: str,
    stimulus_col: str,
    item_col: str,
    deployment_col: str,
    item: bool,
    deployment: bool,
) -> dict[str, str]:
    factors = {"rater": rater_col, "stimulus": stimulus_col}
    if item:
        factors["item"] = item_col
    if deployment:
        factors["deployment"] = deployment_col
    for name, col in factors.items():
        if col not in df.columns:
            raise ValueError(f"random intercept for {name} needs column {col!r}, which the ratings lack")
    return factors


def _components(codes: list[np.ndarray]) -> np.ndarray:
    """Connected components of the graph linking levels that share a rating."""
    sizes = [int(c.max()) + 1 for c in codes]
    offsets = np.cumsum([0, *sizes[:-1]])
    n, q = len(codes[0]), sum(sizes)
    rows = np.repeat(np.arange(n), len(codes))
    cols = np.column_stack([c + o for c, o in zip(codes, offsets, strict=True)]).ravel()
    incidence = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, q))
    _, labels = connected_components(incidence.T @ incidence, directed=False)
    return labels[codes[0] + offsets[0]]


def _fit_statsmodels(y: np.ndarray, X: pd.DataFrame, df: pd.DataFrame, factors: dict[str, str]) -> dict[str, Any]:
    import statsmodels.api as sm

    codes = [pd.factorize(df[col])[0] for col in factors.values()]
    groups = _components(codes)
    vc_data = pd.DataFrame({name: df[col].astype(str).to_numpy() for name, col in factors.items()})
    vc_data["_group"] = groups
    vc_formula = {name: f"0 + C({name})" for name in factors}
    model = sm.MixedLM.from_formula(
        "_y ~ 1", vc_formula=vc_formula, groups="_group", re_formula="0", data=vc_data.assign(_y=y)
    )
    # Swap in the real design matrix (below) so that term names and coding match the REML engine.
    # statsmodels orders variance components by the sorted vc_formula keys, not by insertion.
    vc_names = list(model.exog_vc.names)
    model = sm.MixedLM(y, X.reset_index(drop=True), groups=groups, exog_re=model.exog_re, exog_vc=model.exog_vc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(reml=True)
    by_name = dict(zip(vc_names, np.asarray(res.vcomp, float), strict=True))
    vc = {name: by_name[name] for name in factors}
    return {
        "beta": np.asarray(res.fe_params, float),
        "cov_beta": np.asarray(res.cov_params())[: X.shape[1], : X.shape[1]],
        "variances": vc,
        "sigma2": float(res.scale),
        "converged": bool(res.converged),
        "method": f"statsmodels MixedLM REML, {len(np.unique(groups))} independent group(s), crossed variances",
    }


def _model_formula(factors: dict[str, str], fixed: str) -> str:
    return fixed + "".join(f" + (1 | {name})" for name in factors)


def _fit_one(
    df: pd.DataFrame,
    *,
    fixed: str,
    score_col: str,
    factors: dict[str, str],
    engine: str,
) -> tuple[dict[str, Any], np.ndarray]:
    """Fit one model; returns the JSON-shaped result and the covariance of the fixed effects."""
    X = patsy.dmatrix(fixed, df, return_type="dataframe")
    # Interaction cells with no rating (a method never run on a task) are all-zero columns.
    X = X.loc[:, (X != 0).any(axis=0)]
    y = df[score_col].to_numpy(float)
    if np.linalg.matrix_rank(X.to_numpy()) < X.shape[1]:
        raise ValueError(f"the fixed effects {fixed!r} are not estimable from these ratings (rank-deficient design)")
    if engine == "reml":
        fit = fit_reml(y, X.to_numpy(), [pd.factorize(df[col])[0] for col in factors.values()])
        beta, cov, sigma2, dof = fit.beta, fit.cov_beta, fit.sigma2, fit.df
        variances = dict(zip(factors, fit.variances.tolist(), strict=True))
        method = "REML, profiled (lme4 formulation, Nelder–Mead on relative SDs)"
        inference = "95% CI and p from t with Satterthwaite df (as lmerTest)"
        converged = fit.converged
    elif engine == "statsmodels":
        out = _fit_statsmodels(y, X, df, factors)
        beta, cov, sigma2, variances = out["beta"], out["cov_beta"], out["sigma2"], out["variances"]
        method, converged = out["method"], out["converged"]
        dof = np.full(len(beta), np.inf)
        inference = "Wald 95% CI and p (normal)"
    else:
        raise ValueError(f"unknown engine {engine!r}; use 'reml' or 'statsmodels'")
    se = np.sqrt(np.diag(cov))
    terms = []
    for name, b, s, nu in zip(X.columns, beta, se, dof, strict=True):
        # t with infinite df is the normal: the Wald z test of large designs.
        crit = float(st.t.ppf(0.975, nu)) if np.isfinite(nu) else Z95
        p = float(2 * st.t.sf(abs(b / s), nu)) if np.isfinite(nu) else float(2 * st.norm.sf(abs(b / s)))
        terms.append(
            {
                "term": str(name),
                "estimate": float(b),
                "se": float(s),
                "ci_low": float(b - crit * s),
                "ci_high": float(b + crit * s),
                "p": p,
            }
        )
    if not converged:
        method += " (optimizer did not report convergence)"
        warnings.warn(ConvergenceWarning(f"{engine} optimizer did not report convergence"), stacklevel=2)
    return {
        "fixed_effects": terms,
        "variance_components": {**{k: float(v) for k, v in variances.items()}, "residual": float(sigma2)},
        "n_ratings": len(df),
        "n_raters": int(df[factors["rater"]].nunique()),
        "n_stimuli": int(df[factors["stimulus"]].nunique()),
        "method": f"{method}; {_model_formula(factors, 'score ~ ' + fixed)}; {inference}",
    }, cov


def fit_mixed(
    ratings: pd.DataFrame,
    *,
    dimension_col: str = "dimension",
    score_col: str = "score",
    rater_col: str = "rater",
    stimulus_col: str = "stimulus",
    condition_col: str = "condition",
    item_col: str = "item",
    deployment_col: str = "deployment",
    reference: str | None = "base",
    item_effect: bool = False,
    deployment_effect: bool = False,
    engine: str = "reml",
    text_id_col: str | None = "text_id",
) -> dict[str, dict[str, Any]]:
    """Fit ``score ~ condition + (1|rater) + (1|stimulus)`` by REML, once per dimension.

    Long because its parameters and results are documented here; the body is under 45 lines.

    Parameters
    ----------
    ratings : pandas.DataFrame
        Long export, one row per rating. Extra columns are ignored; ``item`` and
        ``deployment`` are only needed for their random intercepts.
    dimension_col, score_col, rater_col, stimulus_col, condition_col, item_col, deployment_col : str
        Column names.
    reference : str or None
        Reference level of the treatment coding. ``"base"`` (the default) falls back to
        the alphabetically first condition when absent; any other value must exist.
    item_effect, deployment_effect : bool
        Add ``(1 | item)`` / ``(1 | deployment)``. Off by default.
    engine : {"reml", "statsmodels"}
        ``"reml"``: profiled REML as in lme4 (fast for nested and crossed designs).
        ``"statsmodels"``: statsmodels MixedLM with connected components as groups.
    text_id_col : str or None
        When this column is present, it identifies the stimulus of the random intercept
        (copies of one base text in twin deployments are one stimulus); see
        :func:`stimulus_factor`.

    Returns
    -------
    dict
        ``{dimension: {"fixed_effects": [{"term", "estimate", "se", "ci_low", "ci_high", "p"}],
        "variance_components": {"rater", "stimulus", ..., "residual"}, "n_ratings",
        "n_raters", "n_stimuli", "method", "warnings"}}``. Condition contrasts are named
        ``condition[T.<level>]``; ``warnings`` lists every fallback of that fit as
        ``"<WarningName>: message"`` (missing reference, singular Hessian, copied stimuli,
        non-convergence), empty when there was none.

    Raises
    ------
    ValueError
        Missing columns, NaN scores, a single condition, rater or stimulus, an unknown reference.
    """
    require_columns(ratings, [dimension_col, score_col, rater_col, stimulus_col, condition_col], "ratings")
    if len(ratings) == 0:
        raise ValueError("ratings is empty")
    if ratings[dimension_col].isna().any():
        raise ValueError(f"{int(ratings[dimension_col].isna().sum())} rating(s) have no dimension ({dimension_col!r})")
    with collect_warnings() as shared:
        stimulus_col = stimulus_factor(ratings, stimulus_col=stimulus_col, text_id_col=text_id_col)
    factors = _random_factors(
        ratings, rater_col, stimulus_col, item_col, deployment_col, item_effect, deployment_effect
    )
    explicit = reference not in (None, "base")
    results: dict[str, dict[str, Any]] = {}
    for dim, df in ratings.groupby(dimension_col, sort=True):
        with collect_warnings() as found:
            results[str(dim)] = _fit_dimension(
                df,
                label=f"dimension {dim!r}",
                score_col=score_col,
                rater_col=rater_col,
                stimulus_col=stimulus_col,
                condition_col=condition_col,
                reference=reference,
                explicit=explicit,
                factors=factors,
                engine=engine,
            )
        results[str(dim)]["warnings"] = [*shared, *found]
    return results


def _fit_dimension(
    df: pd.DataFrame,
    *,
    label: str,
    score_col: str,
    rater_col: str,
    stimulus_col: str,
    condition_col: str,
    reference: str | None,
    explicit: bool,
    factors: dict[str, str],
    engine: str,
) -> dict[str, Any]:
    _validate(
        df,
        score_col=score_col,
        rater_col=rater_col,
        stimulus_col=stimulus_col,
        condition_col=condition_col,
        label=label,
    )
    levels = sorted(df[condition_col].astype(str).unique())
    ref = _reference_level(levels, reference, explicit)
    data = pd.DataFrame(
        {
            "condition": pd.Categorical(
                df[condition_col].astype(str), categories=[ref, *[x for x in levels if x != ref]]
            ),
            score_col: df[score_col].to_numpy(float),
            **{col: df[col].to_numpy() for col in factors.values()},
        }
    )
    return _fit_one(data, fixed="condition", score_col=score_col, factors=factors, engine=engine)[0]


# ----------------------------------------------------------------------------- tidy tables


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (statsmodels ``multipletests``)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, float)
    if len(p) == 0:
        return p
    return multipletests(p, method="holm")[1]


def zscore_within(
    ratings: pd.DataFrame, *, score_col: str = "score", rater_col: str = "rater", dimension_col: str = "dimension"
) -> pd.Series:
    """Ratings z-scored within rater and dimension, as the CreativityNeuro paper did.

    A rater who gave one constant score on a dimension carries no within-rater
    information; their z-scores are 0 rather than NaN so the row keeps its weight in
    nothing but the intercept.
    """
    grouped = ratings.groupby([rater_col, dimension_col])[score_col]
    sd = grouped.transform("std", ddof=1)
    z = (ratings[score_col] - grouped.transform("mean")) / sd
    return z.where(sd > 0, 0.0)


def condition_effects(
    ratings: pd.DataFrame,
    *,
    dimension_col: str = "dimension",
    score_col: str = "score",
    rater_col: str = "rater",
    stimulus_col: str = "stimulus",
    condition_col: str = "condition",
    reference: str | None = "base",
    fits: dict[str, dict[str, Any]] | None = None,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """The report's main table: one row per dimension and condition contrast.

    Long because its parameters and results are documented here; the body is under 45 lines.

    Columns: ``dimension, term, estimate, se, ci_low, ci_high, p, p_holm`` (Holm across
    dimensions, within each contrast), ``d_total`` (estimate over the square root of the
    model's total variance: rater + stimulus [+ item + deployment] + residual, with its
    CI scaled the same way), ``d_z`` with ``d_z_ci_low/high`` (the same model fitted to
    within-rater z-scores, the paper's scale), ``icc_rater``, ``icc_stimulus`` and
    ``n_ratings``.
    """
    common = {
        "dimension_col": dimension_col,
        "rater_col": rater_col,
        "stimulus_col": stimulus_col,
        "condition_col": condition_col,
        "reference": reference,
        **fit_kwargs,
    }
    if fits is None:
        fits = fit_mixed(ratings, score_col=score_col, **common)
    z = ratings.assign(_z=zscore_within(ratings, score_col=score_col, rater_col=rater_col, dimension_col=dimension_col))
    zfits = fit_mixed(z, score_col="_z", **common)
    rows = []
    for dim, fit in fits.items():
        vc = fit["variance_components"]
        total = sum(vc.values())
        zterms = {t["term"]: t for t in zfits[dim]["fixed_effects"]}
        for t in fit["fixed_effects"]:
            if t["term"] == "Intercept":
                continue
            zt = zterms[t["term"]]
            rows.append(
                {
                    "dimension": dim,
                    "term": t["term"],
                    **{k: t[k] for k in ("estimate", "se", "ci_low", "ci_high", "p")},
                    "d_total": t["estimate"] / math.sqrt(total),
                    "d_total_ci_low": t["ci_low"] / math.sqrt(total),
                    "d_total_ci_high": t["ci_high"] / math.sqrt(total),
                    "d_z": zt["estimate"],
                    "d_z_ci_low": zt["ci_low"],
                    "d_z_ci_high": zt["ci_high"],
                    "icc_rater": vc["rater"] / total,
                    "icc_stimulus": vc["stimulus"] / total,
                    "n_ratings": fit["n_ratings"],
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        table.insert(list(table.columns).index("p") + 1, "p_holm", np.nan)
        for _, idx in table.groupby("term").groups.items():
            table.loc[idx, "p_holm"] = holm(table.loc[idx, "p"])
    return table


def variance_components(fits: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Variance components and ICCs, one row per dimension and component.

    ``share`` is the component's share of the total variance, i.e. the ICC of that
    grouping factor (for ``rater``: the correlation of two ratings by the same rater of
    different stimuli; for ``stimulus``: of two raters rating the same stimulus).
    """
    rows = []
    for dim, fit in fits.items():
        vc = fit["variance_components"]
        total = sum(vc.values())
        for comp, var in vc.items():
            rows.append(
                {"dimension": dim, "component": comp, "variance": var, "sd": math.sqrt(var), "share": var / total}
            )
    return pd.DataFrame(rows)


def icc(fits: dict[str, dict[str, Any]], *, k_raters: int | None = None) -> pd.DataFrame:
    """ICCs from the variance components, one row per dimension.

    ``icc_stimulus`` = σ²_stimulus / total is the single-rating reliability of a
    stimulus' score (raters random, rater variance counted as error: ICC(2,1)-like);
    ``icc_stimulus_k`` is the reliability of the mean of ``k_raters`` ratings
    (Spearman–Brown; default: the mean number of ratings per stimulus).
    """
    rows = []
    for dim, fit in fits.items():
        vc = fit["variance_components"]
        total = sum(vc.values())
        k = k_raters or fit["n_ratings"] / fit["n_stimuli"]
        error = total - vc["stimulus"]
        rows.append(
            {
                "dimension": dim,
                "icc_rater": vc["rater"] / total,
                "icc_stimulus": vc["stimulus"] / total,
                "k_raters": k,
                "icc_stimulus_k": vc["stimulus"] / (vc["stimulus"] + error / k),
            }
        )
    return pd.DataFrame(rows)


def fit_by(
    ratings: pd.DataFrame, *, by: str = "deployment", dimension_col: str = "dimension", **fit_kwargs: Any
) -> pd.DataFrame:
    """Fit the default model separately within each level of ``by`` (e.g. per deployment).

    Returns a tidy table ``by, dimension, term, estimate, se, ci_low, ci_high, p`` of the
    condition contrasts; levels where a model cannot be fitted (one condition, one
    rater) are reported with ``error`` instead of being dropped silently.
    """
    require_columns(ratings, [by, dimension_col], "ratings")
    rows = []
    for level, df in ratings.groupby(by, sort=True):
        try:
            fits = fit_mixed(df, dimension_col=dimension_col, **fit_kwargs)
        except ValueError as exc:
            rows.append({by: level, "error": str(exc)})
            continue
        for dim, fit in fits.items():
            for t in fit["fixed_effects"]:
                if t["term"] != "Intercept":
                    rows.append({by: level, "dimension": dim, **t})
    return pd.DataFrame(rows)


def fit_pooled(
    ratings: pd.DataFrame,
    *,
    dimension_col: str = "dimension",
    score_col: str = "score",
    rater_col: str = "rater",
    stimulus_col: str = "stimulus",
    condition_col: str = "condition",
    deployment_col: str = "deployment",
    task_col: str = "task",
    item_col: str = "item",
    reference: str = "base",
    engine: str = "reml",
    item_effect: bool = False,
    text_id_col: str | None = "text_id",
) -> dict[str, dict[str, Any]]:
    """Pooled model across deployments with method x task terms, one per dimension.

    Long because its parameters and results are documented here; the body is under 45 lines.

    Conditions are the steering methods (``weight``, ``activation``, ``prompt`` …)
    compared with ``reference`` inside each deployment. The fixed part has a reference
    mean per task and the effect of every method within every task::

        score ~ 0 + task + task:condition + (1|rater) + (1|stimulus) + (1|deployment)

    so ``task[<task>]:condition[T.<method>]`` is the steering effect of that method on
    that task; the deployment intercept absorbs the differences between models. Method x
    task combinations absent from the data are left out. The returned dict has the shape
    of :func:`fit_mixed` plus ``"interaction"``: a Wald χ² test that all method x task
    effects are equal (``chi2``, ``df``, ``p``), and ``"contrasts"``: per task, each
    steering method against each other (e.g. weight minus activation) with its CI, from
    :func:`method_contrasts`. ``item_effect`` adds ``(1 | item)``; the stimulus factor is
    ``text_id`` when present (see :func:`stimulus_factor`).
    """
    require_columns(
        ratings, [dimension_col, score_col, rater_col, stimulus_col, condition_col, deployment_col, task_col], "ratings"
    )
    results = {}
    with collect_warnings() as shared:
        stimulus_col = stimulus_factor(ratings, stimulus_col=stimulus_col, text_id_col=text_id_col)
    factors = {"rater": rater_col, "stimulus": stimulus_col, "deployment": deployment_col}
    if item_effect:
        require_columns(ratings, [item_col], "ratings")
        factors["item"] = item_col
    for dim, d in ratings.groupby(dimension_col, sort=True):
        _validate(
            d,
            score_col=score_col,
            rater_col=rater_col,
            stimulus_col=stimulus_col,
            condition_col=condition_col,
            label=f"dimension {dim!r}",
        )
        levels = sorted(d[condition_col].astype(str).unique())
        if reference not in levels:
            raise ValueError(f"dimension {dim!r}: reference condition {reference!r} is not in the data ({levels})")
        data = pd.DataFrame(
            {
                "task": pd.Categorical(d[task_col].astype(str)),
                "condition": pd.Categorical(
                    d[condition_col].astype(str), categories=[reference, *[x for x in levels if x != reference]]
                ),
                score_col: d[score_col].to_numpy(float),
                **{col: d[col].to_numpy() for col in factors.values()},
            }
        )
        with collect_warnings() as found:
            fit, cov = _fit_one(
                data, fixed="0 + task + task:condition", score_col=score_col, factors=factors, engine=engine
            )
        steer = [i for i, t in enumerate(fit["fixed_effects"]) if ":condition[" in t["term"]]
        fit["interaction"] = _equal_effects_test(fit, cov, steer)
        fit["contrasts"] = method_contrasts(fit, cov)
        fit["warnings"] = [*shared, *found]
        results[str(dim)] = fit
    return results


def method_contrasts(fit: dict[str, Any], cov: np.ndarray) -> list[dict[str, Any]]:
    """Differences between steering methods within each task of a :func:`fit_pooled` fit.

    For every task and every pair of methods fitted on it (``a`` before ``b`` in sorted
    order; weight vs activation is ``activation`` vs ``weight`` reversed so that the
    contrast reads "weight minus activation"), ``estimate`` = effect(a) - effect(b) with a
    Wald 95% CI and p from the joint covariance of the fixed effects (the two effects are
    estimated from shared raters and deployments, so they are not independent).
    """
    terms = [t["term"] for t in fit["fixed_effects"]]
    beta = np.array([t["estimate"] for t in fit["fixed_effects"]])
    by_task: dict[str, dict[str, int]] = {}
    for i, term in enumerate(terms):
        if ":condition[T." in term:
            task = term.split("]:condition[")[0].removeprefix("task[")
            method = term.split("condition[T.")[1].rstrip("]")
            by_task.setdefault(task, {})[method] = i
    # "weight" first, so that the paper's contrast reads weight minus activation.
    order = {"weight": 0, "activation": 1}
    combos: list[tuple[str, str, np.ndarray]] = []
    for task, methods in sorted(by_task.items()):
        names = sorted(methods, key=lambda m: (order.get(m, 2), m))
        for a, b in itertools.combinations(names, 2):
            L = np.zeros(len(beta))
            L[methods[a]], L[methods[b]] = 1.0, -1.0
            combos.append((task, f"{a} - {b}", L))
    # Averaged over the tasks where both methods ran: the pooled method contrast.
    for contrast in sorted({c for _, c, _ in combos}):
        Ls = [L for _, c, L in combos if c == contrast]
        if len(Ls) > 1:
            combos.append(("all tasks (mean)", contrast, np.mean(Ls, axis=0)))
    rows = []
    for task, contrast, L in combos:
        est = float(L @ beta)
        se = float(np.sqrt(L @ cov @ L))
        rows.append(
            {
                "task": task,
                "contrast": contrast,
                "estimate": est,
                "se": se,
                **wald_interval(est, se),
            }
        )
    return rows


def _equal_effects_test(fit: dict[str, Any], cov: np.ndarray, steer: list[int]) -> dict[str, float]:
    """Wald χ² test of H0: all the given effects are equal (successive differences are zero)."""
    if len(steer) < 2:
        return {"chi2": float("nan"), "df": 0, "p": float("nan")}
    beta = np.array([t["estimate"] for t in fit["fixed_effects"]])
    L = np.zeros((len(steer) - 1, len(beta)))
    for r, (a, b) in enumerate(itertools.pairwise(steer)):
        L[r, a], L[r, b] = 1.0, -1.0
    diff = L @ beta
    chi2 = float(diff @ np.linalg.solve(L @ cov @ L.T, diff))
    dof = len(steer) - 1
    return {"chi2": chi2, "df": dof, "p": float(st.chi2.sf(chi2, dof))}
