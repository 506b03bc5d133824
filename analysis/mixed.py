"""Linear mixed models of human ratings: one model per rated dimension.

The default random structure follows the design: every grouping factor (rater, stimulus,
item) gets a random intercept and, where condition varies within its levels, a random
slope of the steered-vs-reference contrast, e.g.
``score ~ condition + (1 + steered | rater) + (1 | stimulus) + (1 + steered | item)``; a
singular fit is simplified by the one rule of :mod:`analysis.random_effects`, each step
recorded. The fit is lme4's profiled REML (:mod:`analysis._reml`), checked against lme4
and lmerTest in the tests and in ``benchmarks/bench_mixed.py``. Fixed effects get t-based
CIs and p-values with Satterthwaite degrees of freedom (as lmerTest). ``engine="statsmodels"``
fits the intercepts-only model with statsmodels ``MixedLM``, using the connected components
of the rater–stimulus graph as independent groups with crossed variance components inside
(Wald z inference).

A fit's result, per dimension: ``{"formula", "fixed_effects": [{"term", "estimate", "se",
"df", "ci_low", "ci_high", "p"}], "variance_components": {group intercept variances,
"residual"}, "random_effects": [{"group", "term", "variance", "sd"}], "correlations":
[{"group", "terms", "correlation"}], "model_selection": {"started_from", "design", "rule",
"steps", "singular"}, "converged", "optimizer", "n_ratings", "n_raters", "n_stimuli",
"method", "warnings"}``; condition contrasts are named ``condition[T.<level>]``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.stats as st
from scipy.sparse.csgraph import connected_components

from analysis._frames import require_columns
from analysis._reml import RemlFit
from analysis.formula import ModelFormula, RandomTerm, design_terms, parse_formula
from analysis.notices import (
    AnalysisWarning,
    ConvergenceWarning,
    CopiedStimuliWarning,
    MissingReferenceWarning,
    SingularFitWarning,
    collect_warnings,
)
from analysis.random_effects import (
    SIMPLIFICATION_RULE,
    FittedModel,
    ModelFrame,
    fit_frame,
    model_frame,
    random_effects_table,
    simplify_once,
    singular_effects,
    t_interval,
    warm_start,
    with_inference,
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


def _validate(df: pd.DataFrame, *, columns: Columns, label: str) -> None:
    score_col, condition_col = columns.score, columns.condition
    n_nan = int(df[score_col].isna().sum())
    if n_nan:
        raise ValueError(f"{label}: {n_nan} NaN value(s) in score column {score_col!r}; drop or impute them first")
    if not pd.api.types.is_numeric_dtype(df[score_col]):
        raise ValueError(f"{label}: score column {score_col!r} is not numeric")
    for col, what in ((columns.rater, "rater"), (columns.stimulus, "stimulus")):
        if df[col].isna().any():
            raise ValueError(f"{label}: missing {what} ids in column {col!r}")
        if df[col].nunique() < 2:
            raise ValueError(f"{label}: only one {what} ({col!r}); a random intercept needs at least two")
    if df[condition_col].isna().any():
        raise ValueError(f"{label}: missing values in condition column {condition_col!r}")
    if df[condition_col].nunique() < 2:
        only = df[condition_col].iloc[0] if len(df) else None
        raise ValueError(f"{label}: only one condition ({only!r}) in {condition_col!r}; nothing to compare")


@dataclass(frozen=True)
class Columns:
    """Where the ratings keep what a model needs (the names a formula uses are the keys of ``groups``)."""

    score: str = "score"
    condition: str = "condition"
    rater: str = "rater"
    stimulus: str = "stimulus"
    item: str = "item"
    deployment: str = "deployment"

    def group_columns(self) -> dict[str, str]:
        return {"rater": self.rater, "stimulus": self.stimulus, "item": self.item, "deployment": self.deployment}


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


def _fit_statsmodels(frame: ModelFrame) -> dict[str, Any]:
    """The intercept-only model with statsmodels MixedLM, connected components as independent groups."""
    import statsmodels.api as sm

    if any(t.effects != ("1",) for t in frame.terms):
        raise ValueError(
            "engine 'statsmodels' fits random intercepts only (MixedLM cannot fit correlated slopes of crossed "
            "factors): pass random='intercepts' (--random intercepts) or use engine 'reml'"
        )
    names = [t.group for t in frame.terms]
    codes = [b.codes for b in frame.blocks]
    groups = _components(codes)
    vc_data = pd.DataFrame({name: c.astype(str) for name, c in zip(names, codes, strict=True)})
    vc_data["_group"] = groups
    model = sm.MixedLM.from_formula(
        "_y ~ 1",
        vc_formula={name: f"0 + C({name})" for name in names},
        groups="_group",
        re_formula="0",
        data=vc_data.assign(_y=frame.y),
    )
    # Swap in the real design matrix (below) so that term names and coding match the REML engine.
    # statsmodels orders variance components by the sorted vc_formula keys, not by insertion.
    vc_names = list(model.exog_vc.names)
    X = frame.X.reset_index(drop=True)
    model = sm.MixedLM(frame.y, X, groups=groups, exog_re=model.exog_re, exog_vc=model.exog_vc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(reml=True)
    by_name = dict(zip(vc_names, np.asarray(res.vcomp, float), strict=True))
    return {
        "beta": np.asarray(res.fe_params, float),
        "cov_beta": np.asarray(res.cov_params())[: X.shape[1], : X.shape[1]],
        "variances": [by_name[name] for name in names],
        "sigma2": float(res.scale),
        "converged": bool(res.converged),
        "method": f"statsmodels MixedLM REML, {len(np.unique(groups))} independent group(s), crossed variances",
    }


def _model_data(df: pd.DataFrame, *, columns: Columns, reference: str, levels: Sequence[str]) -> pd.DataFrame:
    """The ratings under the names a formula uses: ``score``, ``condition`` (categorical, reference
    first), ``steered`` and the groups, beside every other column of ``df``."""
    data = df.reset_index(drop=True).copy()
    condition = df[columns.condition].astype(str).to_numpy()
    data["condition"] = pd.Categorical(condition, categories=[reference, *[x for x in levels if x != reference]])
    data["steered"] = (condition != reference).astype(float)
    data["score"] = df[columns.score].to_numpy(float)
    for name, col in columns.group_columns().items():
        if col in df.columns:
            data[name] = df[col].to_numpy()
    return data


def _fixed_terms(frame: ModelFrame, beta: np.ndarray, cov: np.ndarray, dof: np.ndarray) -> list[dict[str, Any]]:
    se = np.sqrt(np.diag(cov))
    return [
        {"term": str(name), "estimate": float(b), "se": float(s), "df": float(nu), **t_interval(float(b), float(s), nu)}
        for name, b, s, nu in zip(frame.X.columns, beta, se, dof, strict=True)
    ]


def _fit_engine(
    frame: ModelFrame, engine: str, fit: RemlFit | None = None, *, inference: bool = True
) -> tuple[dict[str, Any], np.ndarray, RemlFit | None]:
    """Fit ``frame`` with the chosen engine (or take the REML ``fit`` already made): the
    JSON-shaped parts, the covariance of β, the REML fit (None from statsmodels)."""
    if engine == "reml":
        fit = fit if fit is not None else fit_frame(frame, inference=inference)
        random, correlations = random_effects_table(frame, fit)
        parts = {
            "fixed_effects": _fixed_terms(frame, fit.beta, fit.cov_beta, fit.df),
            "random_effects": random,
            "correlations": correlations,
            "sigma2": fit.sigma2,
            "converged": fit.converged,
            "optimizer": fit.optimizer_message,
            "method": "REML, profiled (lme4 formulation, BOBYQA on the relative covariance factor)",
            "inference": "95% CI and p from t with Satterthwaite df (as lmerTest)"
            if inference
            else "estimates only (no Satterthwaite df: CIs and p from the normal)",
        }
        return parts, fit.cov_beta, fit
    if engine == "statsmodels":
        out = _fit_statsmodels(frame)
        random = [
            {"group": t.group, "term": "(Intercept)", "variance": float(v), "sd": math.sqrt(max(v, 0.0))}
            for t, v in zip(frame.terms, out["variances"], strict=True)
        ]
        parts = {
            "fixed_effects": _fixed_terms(frame, out["beta"], out["cov_beta"], np.full(len(out["beta"]), np.inf)),
            "random_effects": random,
            "correlations": [],
            "sigma2": out["sigma2"],
            "converged": out["converged"],
            "optimizer": "statsmodels MixedLM",
            "method": out["method"],
            "inference": "Wald 95% CI and p (normal)",
        }
        return parts, out["cov_beta"], None
    raise ValueError(f"unknown engine {engine!r}; use 'reml' or 'statsmodels'")


def _fit_model(data: pd.DataFrame, spec: ModelSpec, *, engine: str) -> FittedModel:
    """Fit one dimension's model as ``spec`` asks, simplified by the stated rule where it says so."""
    steps: list[dict[str, str]] = []
    formula = spec.formula
    frame = model_frame(data, formula, reference=spec.reference)
    fit = None
    with warnings.catch_warnings():
        # The rule's intermediate fits are not results: only the final fit's warnings count.
        warnings.simplefilter("ignore", AnalysisWarning)
        start = None
        while spec.simplify and engine == "reml":
            fit = fit_frame(frame, start=start, inference=False)
            simpler = simplify_once(frame, fit)
            if simpler is None:
                break
            terms, taken = simpler
            steps += [{"formula": str(formula), **s} for s in taken]
            formula = formula.with_random(terms)
            previous, frame = frame, model_frame(data, formula, reference=spec.reference)
            start, fit = warm_start(previous, fit, frame), None
    if fit is not None and spec.inference:  # the rule's last fit is the final model: add its inference only
        fit = with_inference(frame, fit)
    parts, cov, fit = _fit_engine(frame, engine, fit, inference=spec.inference)
    if not parts["converged"]:
        message = f"the optimiser did not report convergence: {parts['optimizer']}"
        warnings.warn(ConvergenceWarning(message), stacklevel=2)
    singular = singular_effects(frame, fit) if fit is not None else {}
    if singular:
        where = "; ".join(f"{frame.terms[j]}: {', '.join(n)}" for j, n in singular.items())
        warnings.warn(
            SingularFitWarning(
                f"singular fit ({where} at 0 or at a correlation of ±1): the variance parameters are on the boundary; "
                "simplify the formula (or pass simplify=True, --simplify)"
            ),
            stacklevel=2,
        )
    intercepts = {g: 0.0 for g in spec.groups_started}
    intercepts.update({r["group"]: r["variance"] for r in parts["random_effects"] if r["term"] == "(Intercept)"})
    result = {
        "formula": str(formula),
        "fixed_effects": parts["fixed_effects"],
        "variance_components": {**intercepts, "residual": float(parts["sigma2"])},
        "random_effects": parts["random_effects"],
        "correlations": parts["correlations"],
        "model_selection": {
            "started_from": str(spec.formula),
            "design": spec.design,
            "rule": SIMPLIFICATION_RULE if spec.simplify else None,
            "steps": steps,
            "singular": bool(singular),
        },
        "converged": bool(parts["converged"]),
        "optimizer": parts["optimizer"],
        "n_ratings": len(data),
        "n_raters": int(data["rater"].nunique()),
        "n_stimuli": int(data["stimulus"].nunique()),
        "method": f"{parts['method']}; {formula}; {parts['inference']}",
    }
    return FittedModel(result=result, cov=cov, reml=fit, steps=steps)


@dataclass(frozen=True)
class ModelSpec:
    """Which model one dimension gets: the starting formula, whether the rule may simplify it,
    and (for a structure derived from the design) why each random term has its shape."""

    formula: ModelFormula
    simplify: bool
    reference: str
    design: list[dict[str, str]] | None = None
    inference: bool = True

    @property
    def groups_started(self) -> list[str]:
        return [t.group for t in self.formula.random]


def model_spec(
    data: pd.DataFrame,
    *,
    fixed: str,
    reference: str,
    formula: str | None = None,
    random: str = "maximal",
    item_effect: bool | None = None,
    deployment_effect: bool = False,
    deployment_in_model: bool = False,
    simplify: bool | None = None,
    inference: bool = True,
) -> ModelSpec:
    """The model for one dimension's prepared ratings (see :func:`fit_mixed` for the options).

    ``formula`` wins when given; else ``random="maximal"`` derives the random terms from the
    design (:func:`analysis.formula.design_terms`), ``random="intercepts"`` gives one intercept
    per group. Groups: rater and stimulus always, item when the ratings have two or more items
    (``item_effect`` None) or when asked, deployment when asked (or always: ``deployment_in_model``).
    """
    if formula is not None:
        return ModelSpec(parse_formula(formula), simplify=bool(simplify), reference=reference, inference=inference)
    if random not in ("maximal", "intercepts"):
        raise ValueError(f"random must be 'maximal' or 'intercepts', not {random!r}")
    groups, design = ["rater", "stimulus"], []
    wants_item = item_effect if item_effect is not None else random == "maximal"
    if wants_item:
        if "item" not in data.columns:
            if item_effect:
                raise ValueError("a random effect of item needs the ratings' 'item' column, which they lack")
            design.append({"term": "item", "reason": "the ratings have no item column: no item term"})
        elif data["item"].nunique() < 2 and not item_effect:
            design.append({"term": "item", "reason": "one item only: no item term (its variance is not estimable)"})
        else:
            groups.append("item")
    if deployment_effect or deployment_in_model:
        if "deployment" not in data.columns:
            raise ValueError("a random effect of deployment needs the ratings' 'deployment' column, which they lack")
        groups.append("deployment")
    if random == "intercepts":
        terms = [RandomTerm(g, ("1",)) for g in groups]
        return ModelSpec(
            ModelFormula("score", fixed, tuple(terms)), bool(simplify), reference, design=design, inference=inference
        )
    derived = design_terms(data, groups={g: g for g in groups}, condition_col="condition", reference=reference)
    design += [{"term": str(d.term), "reason": d.reason} for d in derived]
    return ModelSpec(
        ModelFormula("score", fixed, tuple(d.term for d in derived)),
        simplify=True if simplify is None else simplify,
        reference=reference,
        design=design,
        inference=inference,
    )


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
    formula: str | None = None,
    random: str = "maximal",
    simplify: bool | None = None,
    item_effect: bool | None = None,
    deployment_effect: bool = False,
    engine: str = "reml",
    text_id_col: str | None = "text_id",
    inference: bool = True,
) -> dict[str, dict[str, Any]]:
    """Fit a linear mixed model of the ratings by REML, once per dimension (result: module docstring).

    Long because its parameters are documented here; the body is under 20 lines.

    Parameters
    ----------
    ratings : pandas.DataFrame
        Long export, one row per rating. Extra columns are ignored unless a formula names them.
    dimension_col, score_col, rater_col, stimulus_col, condition_col, item_col, deployment_col : str
        Column names; a formula calls them ``score``, ``condition``, ``rater``, ``stimulus``,
        ``item`` and ``deployment`` whatever their names in the ratings.
    reference : str or None
        Reference level of the treatment coding. ``"base"`` (the default) falls back to
        the alphabetically first condition when absent; any other value must exist.
    formula : str or None
        A model in lme4's syntax (:mod:`analysis.formula`), fitted as given (simplified only
        with ``simplify=True``).
    random : {"maximal", "intercepts"}
        Without a formula: the structure derived from the design, or random intercepts only
        (the platform's model before random slopes).
    simplify : bool or None
        Simplify a singular fit. Default: on for the derived structure, off otherwise.
    item_effect : bool or None
        Random effects of item: by default whenever the ratings have two or more items
        (``random="maximal"``); ``True`` requires them, ``False`` leaves them out.
    deployment_effect : bool
        Add random effects of deployment (derived like the others).
    engine : {"reml", "statsmodels"}
        Profiled REML as lme4, or statsmodels MixedLM (random intercepts only).
    text_id_col : str or None
        When present, it identifies the stimulus (copies of one base text in twin
        deployments are one stimulus); see :func:`stimulus_factor`.
    inference : bool
        ``False``: estimates only, no Satterthwaite df (CIs and p use the normal), for
        resampling loops that read the estimates alone.

    Raises
    ------
    ValueError
        Missing columns, NaN scores, a single condition, rater or stimulus, an unknown
        reference, a formula naming a missing column or a slope that cannot vary.
    """
    columns = Columns(score_col, condition_col, rater_col, stimulus_col, item_col, deployment_col)
    _ratings_check(ratings, dimension_col=dimension_col, required=[score_col, rater_col, stimulus_col, condition_col])
    with collect_warnings() as shared:
        stimulus = stimulus_factor(ratings, stimulus_col=stimulus_col, text_id_col=text_id_col)
    columns = replace(columns, stimulus=stimulus)
    options = {"formula": formula, "random": random, "simplify": simplify, "inference": inference}
    options |= {"item_effect": item_effect, "deployment_effect": deployment_effect}
    explicit = reference not in (None, "base")
    results: dict[str, dict[str, Any]] = {}
    for dim, df in ratings.groupby(dimension_col, sort=True):
        with collect_warnings() as found:
            fitted = _fit_dimension(
                df, label=f"dimension {dim!r}", columns=columns, reference=reference, explicit=explicit,
                fixed="condition", engine=engine, options=options,
            )  # fmt: skip
        results[str(dim)] = fitted.result | {"warnings": [*shared, *found]}
    return results


def _ratings_check(ratings: pd.DataFrame, *, dimension_col: str, required: list[str]) -> None:
    require_columns(ratings, [dimension_col, *required], "ratings")
    if len(ratings) == 0:
        raise ValueError("ratings is empty")
    if ratings[dimension_col].isna().any():
        raise ValueError(f"{int(ratings[dimension_col].isna().sum())} rating(s) have no dimension ({dimension_col!r})")


def _fit_dimension(
    df: pd.DataFrame,
    *,
    label: str,
    columns: Columns,
    reference: str | None,
    explicit: bool,
    fixed: str,
    engine: str,
    options: dict[str, Any],
) -> FittedModel:
    _validate(df, columns=columns, label=label)
    levels = sorted(df[columns.condition].astype(str).unique())
    ref = _reference_level(levels, reference, explicit)
    data = _model_data(df, columns=columns, reference=ref, levels=levels)
    try:
        spec = model_spec(data, fixed=fixed, reference=ref, **options)
        return _fit_model(data, spec, engine=engine)
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from exc


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
    random: str = "maximal",
    simplify: bool | None = None,
    item_effect: bool | None = None,
    text_id_col: str | None = "text_id",
) -> dict[str, dict[str, Any]]:
    """Pooled model across deployments with method x task terms, one per dimension.

    Long because its parameters and results are documented here; the body is under 45 lines.

    Conditions are the steering methods (``weight``, ``activation``, ``prompt`` …)
    compared with ``reference`` inside each deployment. The fixed part has a reference
    mean per task and the effect of every method within every task, and the random part
    follows the design as in :func:`fit_mixed`, with deployment among the groups::

        score ~ 0 + task + task:condition + (1 + steered | rater) + (1 | stimulus)
                + (1 + condition | item) + (1 + steered | deployment)

    so ``task[<task>]:condition[T.<method>]`` is the steering effect of that method on
    that task; the deployment intercept absorbs the differences between models and its
    slope the model-to-model spread of the effect. Method x task combinations absent from
    the data are left out. The returned dict has the shape of :func:`fit_mixed` plus
    ``"interaction"``: a Wald χ² test that all method x task effects are equal (``chi2``,
    ``df``, ``p``), and ``"contrasts"``: per task, each steering method against each other
    (e.g. weight minus activation) with its CI on Satterthwaite df, from
    :func:`method_contrasts`. ``random``, ``simplify`` and ``item_effect`` as in
    :func:`fit_mixed`; the stimulus factor is ``text_id`` when present.
    """
    require_columns(
        ratings, [dimension_col, score_col, rater_col, stimulus_col, condition_col, deployment_col, task_col], "ratings"
    )
    with collect_warnings() as shared:
        stimulus_col = stimulus_factor(ratings, stimulus_col=stimulus_col, text_id_col=text_id_col)
    columns = Columns(score_col, condition_col, rater_col, stimulus_col, item_col, deployment_col)
    options = {"random": random, "simplify": simplify, "item_effect": item_effect, "deployment_in_model": True}
    results = {}
    for dim, d in ratings.groupby(dimension_col, sort=True):
        with collect_warnings() as found:
            fitted = _fit_dimension(
                d.assign(task=d[task_col].astype(str)), label=f"dimension {dim!r}", columns=columns,
                reference=reference, explicit=True, fixed="0 + task + task:condition", engine=engine, options=options,
            )  # fmt: skip
        fit = fitted.result
        steer = [i for i, t in enumerate(fit["fixed_effects"]) if ":condition[" in t["term"]]
        fit["interaction"] = _equal_effects_test(fitted, steer)
        fit["contrasts"] = method_contrasts(fitted)
        fit["warnings"] = [*shared, *found]
        results[str(dim)] = fit
    return results


def method_contrasts(fitted: FittedModel) -> list[dict[str, Any]]:
    """Differences between steering methods within each task of a :func:`fit_pooled` fit.

    For every task and every pair of methods fitted on it (``a`` before ``b`` in sorted
    order; weight vs activation is ``activation`` vs ``weight`` reversed so that the
    contrast reads "weight minus activation"), ``estimate`` = effect(a) - effect(b) with a
    95% CI and p from t on its Satterthwaite df (lmerTest's ``contest1D``), from the joint
    covariance of the fixed effects (the two effects share raters, items and deployments).
    """
    terms = [t["term"] for t in fitted.result["fixed_effects"]]
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
            L = np.zeros(len(terms))
            L[methods[a]], L[methods[b]] = 1.0, -1.0
            combos.append((task, f"{a} - {b}", L))
    # Averaged over the tasks where both methods ran: the pooled method contrast.
    for contrast in sorted({c for _, c, _ in combos}):
        Ls = [L for _, c, L in combos if c == contrast]
        if len(Ls) > 1:
            combos.append(("all tasks (mean)", contrast, np.mean(Ls, axis=0)))
    return [{"task": task, "contrast": contrast, **fitted.contrast(L)} for task, contrast, L in combos]


def _equal_effects_test(fitted: FittedModel, steer: list[int]) -> dict[str, float]:
    """Wald χ² test of H0: all the given effects are equal (successive differences are zero)."""
    if len(steer) < 2:
        return {"chi2": float("nan"), "df": 0, "p": float("nan")}
    beta = np.array([t["estimate"] for t in fitted.result["fixed_effects"]])
    L = np.zeros((len(steer) - 1, len(beta)))
    for r, (a, b) in enumerate(itertools.pairwise(steer)):
        L[r, a], L[r, b] = 1.0, -1.0
    diff = L @ beta
    chi2 = float(diff @ np.linalg.solve(L @ fitted.cov @ L.T, diff))
    dof = len(steer) - 1
    return {"chi2": chi2, "df": dof, "p": float(st.chi2.sf(chi2, dof))}
