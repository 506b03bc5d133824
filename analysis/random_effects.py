"""Fitting one mixed model from a formula: the model matrices, the fit, and the stated simplification rule.

:func:`model_frame` turns a :class:`~analysis.formula.ModelFormula` and a prepared ratings
frame into the arrays of :mod:`analysis._reml`, fits it, and, when asked, simplifies a
singular fit by one rule, recording each step and its reason:

1. a singular term with correlations loses its correlations (``(1 + x | g)`` becomes
   ``(1 + x || g)``);
2. once no singular term has correlations left, every effect whose variance is estimated
   at zero is dropped (a term left with no effect is dropped whole).

This is the zero-correlation-parameter step and the dropping of zero-variance components
of Bates, Kliegl, Vasishth & Baayen (2015, "Parsimonious mixed models"), applied only as
far as the fit is singular (lme4's ``isSingular``: an entry on the diagonal of a relative
covariance factor below 1e-4), as Matuschek et al. (2017) advise for keeping power.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import patsy
import scipy.stats as st

from analysis._reml import SINGULAR_TOL, RandomBlock, RemlFit, fit_reml
from analysis.formula import CONDITION, STEERED, ModelFormula, RandomTerm
from analysis.notices import SingularHessianWarning

Z95 = float(st.norm.ppf(0.975))
SIMPLIFICATION_RULE = (
    "singular fit (a variance at 0 or a correlation at ±1): drop the correlations of the singular terms, "
    "then drop effects whose variance is 0 (Bates et al. 2015; Matuschek et al. 2017)"
)


@dataclass
class ModelFrame:
    """A formula evaluated on the ratings: response, fixed-effect matrix, one block per random term."""

    y: np.ndarray
    X: pd.DataFrame
    terms: list[RandomTerm]
    blocks: list[RandomBlock]
    effect_names: list[list[str]]  # per term, the names of its columns


@dataclass
class FittedModel:
    """One fit: the JSON-shaped result and what later contrasts need (covariance, Satterthwaite)."""

    result: dict[str, Any]
    cov: np.ndarray
    reml: RemlFit | None = None
    steps: list[dict[str, str]] = field(default_factory=list)

    def contrast(self, L: np.ndarray) -> dict[str, float]:
        """Estimate, SE, 95% CI and p of ``L β``, with t on Satterthwaite df as lmerTest's contest1D."""
        beta = np.array([t["estimate"] for t in self.result["fixed_effects"]])
        est = float(L @ beta)
        se = float(np.sqrt(L @ self.cov @ L))
        df = self.reml.contrast_df(L) if self.reml is not None else float("inf")
        if not df > 0:  # NaN too: the Satterthwaite approximation has no answer here
            warnings.warn(
                SingularHessianWarning(f"Satterthwaite df undefined for the contrast {self._name(L)}: normal used"),
                stacklevel=2,
            )
            df = float("inf")
        return {"estimate": est, "se": se, "df": df, **t_interval(est, se, df)}

    def _name(self, L: np.ndarray) -> str:
        terms = [t["term"] for t in self.result["fixed_effects"]]
        return " ".join(f"{'+' if w > 0 else '-'}{abs(w):g}*{t}" for w, t in zip(L, terms, strict=True) if w)


def t_interval(estimate: float, se: float, df: float) -> dict[str, float]:
    """95% CI and two-sided p from t with ``df`` degrees of freedom (the normal when df is infinite or unknown)."""
    if not se > 0:
        return {"ci_low": estimate, "ci_high": estimate, "p": float("nan")}
    finite = bool(np.isfinite(df) and df > 0)
    crit = float(st.t.ppf(0.975, df)) if finite else Z95
    p = float(2 * (st.t.sf(abs(estimate / se), df) if finite else st.norm.sf(abs(estimate / se))))
    return {"ci_low": estimate - crit * se, "ci_high": estimate + crit * se, "p": p}


# --------------------------------------------------------------------------- model matrices


def model_frame(data: pd.DataFrame, formula: ModelFormula, *, reference: str) -> ModelFrame:
    """Evaluate ``formula`` on ``data`` (columns named as in the formula; ``condition`` categorical,
    reference first). ``ValueError`` names a missing column, an effect that does not vary within
    its group, or a group with too few levels, and says what to do."""
    _require(data, [formula.response], formula, "response")
    try:
        X = patsy.dmatrix(formula.fixed, data, return_type="dataframe", NA_action="raise")
    except patsy.PatsyError as exc:
        raise ValueError(f"fixed part {formula.fixed!r} of {formula}: {str(exc).splitlines()[0]}") from exc
    # Interaction cells with no rating (a method never run on a task) are all-zero columns.
    X = X.loc[:, (X != 0).any(axis=0)]
    if np.linalg.matrix_rank(X.to_numpy()) < X.shape[1]:
        raise ValueError(f"the fixed effects {formula.fixed!r} are not estimable from these ratings (rank-deficient)")
    blocks, names = [], []
    for term in formula.random:
        columns, effect_names = _term_columns(data, term, formula, reference=reference)
        codes, levels = pd.factorize(data[term.group])
        _check_term(term, codes, len(levels), columns, effect_names, formula)
        width = columns.shape[1]
        pattern = np.tril(np.ones((width, width), bool)) if term.correlated else np.eye(width, dtype=bool)
        blocks.append(RandomBlock(codes=codes, columns=columns, pattern=pattern))
        names.append(effect_names)
    return ModelFrame(
        y=data[formula.response].to_numpy(float), X=X, terms=list(formula.random), blocks=blocks, effect_names=names
    )


def _require(data: pd.DataFrame, columns: list[str], formula: ModelFormula, what: str) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(
            f"formula {formula}: {what} {', '.join(map(repr, missing))} is not a column of the ratings "
            f"(columns: {', '.join(sorted(map(str, data.columns)))})"
        )


def _term_columns(
    data: pd.DataFrame, term: RandomTerm, formula: ModelFormula, *, reference: str
) -> tuple[np.ndarray, list[str]]:
    _require(data, [term.group], formula, f"group of {term}")
    condition = data["condition"].astype(str).to_numpy()
    columns, names = [], []
    for effect in term.effects:
        if effect == "1":
            columns.append(np.ones(len(data)))
            names.append("(Intercept)")
        elif effect == STEERED:
            columns.append((condition != reference).astype(float))
            names.append(STEERED)
        elif effect == CONDITION:
            for level in sorted(set(condition) - {reference}):
                columns.append((condition == level).astype(float))
                names.append(f"condition[T.{level}]")
        else:
            _require(data, [effect], formula, f"slope variable of {term}")
            if not pd.api.types.is_numeric_dtype(data[effect]) or data[effect].isna().any():
                raise ValueError(
                    f"formula {formula}: slope variable {effect!r} of {term} must be numeric without gaps; "
                    f"for the condition contrast use 'steered' or 'condition'"
                )
            columns.append(data[effect].to_numpy(float))
            names.append(effect)
    return np.column_stack(columns), names


def _check_term(
    term: RandomTerm, codes: np.ndarray, levels: int, columns: np.ndarray, names: list[str], formula: ModelFormula
) -> None:
    if levels < 2:
        raise ValueError(
            f"formula {formula}: {term} needs at least two levels of {term.group!r}, the ratings have {levels}; "
            f"leave the term out"
        )
    for name, column in zip(names, columns.T, strict=True):
        if name == "(Intercept)":
            continue
        by_level = pd.Series(column).groupby(codes)
        if not (by_level.max() > by_level.min()).any():
            raise ValueError(
                f"formula {formula}: {name} does not vary within any {term.group} (each {term.group} sits in one "
                f"value of it), so {term} cannot estimate its slope; write {RandomTerm(term.group, ('1',))} instead"
            )
    n_effects = levels * columns.shape[1]
    if n_effects >= len(columns):
        raise ValueError(
            f"formula {formula}: {term} has {n_effects} random effects for {len(columns)} ratings; "
            f"the variances cannot be told from the residual: simplify the term"
        )


# --------------------------------------------------------------------------- one fit


def fit_frame(frame: ModelFrame, *, start: np.ndarray | None = None, inference: bool = True) -> RemlFit:
    return fit_reml(frame.y, frame.X.to_numpy(), frame.blocks, start=start, inference=inference)


def with_inference(frame: ModelFrame, fit: RemlFit) -> RemlFit:
    """The same fit with its Satterthwaite df (for the fit the simplification rule ended on)."""
    found = fit_reml(frame.y, frame.X.to_numpy(), frame.blocks, start=fit.theta, optimise=False)
    found.converged, found.optimizer_message = fit.converged, fit.optimizer_message
    found.n_evaluations += fit.n_evaluations
    return found


def warm_start(previous: ModelFrame, fit: RemlFit, frame: ModelFrame) -> np.ndarray:
    """θ for ``frame`` from the fit of a larger model: each kept effect starts at its estimated
    relative covariance (a simplification step refits from near its optimum, not from scratch)."""
    old = {t.group: j for j, t in enumerate(previous.terms)}
    theta = []
    for term, names, block in zip(frame.terms, frame.effect_names, frame.blocks, strict=True):
        j = old[term.group]
        keep = [previous.effect_names[j].index(n) for n in names]
        relative = fit.covariances[j][np.ix_(keep, keep)] / fit.sigma2
        if term.correlated:
            T = np.linalg.cholesky(relative + 1e-8 * np.eye(len(keep)))
        else:
            T = np.diag(np.sqrt(np.clip(np.diag(relative), 0.0, None)))
        # Away from the boundary, so that the search can still move every variance.
        T[np.diag_indices_from(T)] = np.maximum(np.diag(T), 0.05)
        rows, cols = block.theta_positions()
        theta.append(T[rows, cols])
    return np.concatenate(theta) if theta else np.zeros(0)


def random_effects_table(frame: ModelFrame, fit: RemlFit) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Variances (with SDs) of every random effect, and the correlations within each term."""
    variances, correlations = [], []
    for term, names, cov in zip(frame.terms, frame.effect_names, fit.covariances, strict=True):
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        for name, var, s in zip(names, np.diag(cov), sd, strict=True):
            variances.append({"group": term.group, "term": name, "variance": float(var), "sd": float(s)})
        if not term.correlated:
            continue
        for a in range(len(names)):
            for b in range(a):
                r = cov[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else float("nan")
                correlations.append({"group": term.group, "terms": [names[b], names[a]], "correlation": float(r)})
    return variances, correlations


def singular_effects(frame: ModelFrame, fit: RemlFit) -> dict[int, list[str]]:
    """Per random term (by index), the effects on the boundary: lme4's ``isSingular`` test, term by term."""
    out: dict[int, list[str]] = {}
    offset = 0
    for j, (block, names) in enumerate(zip(frame.blocks, frame.effect_names, strict=True)):
        rows, cols = block.theta_positions()
        theta = fit.theta[offset : offset + len(rows)]
        offset += len(rows)
        low = [names[r] for r, c, t in zip(rows, cols, theta, strict=True) if r == c and t < SINGULAR_TOL]
        if low:
            out[j] = low
    return out


# --------------------------------------------------------------------------- the simplification rule


def _singular_reason(term: RandomTerm, names: list[str], cov: np.ndarray, boundary: list[str], sigma2: float) -> str:
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    zero = [n for n, v in zip(names, np.diag(cov), strict=True) if v < SINGULAR_TOL**2 * sigma2]
    if zero:
        return "variance of " + ", ".join(zero) + f" by {term.group} estimated at 0"
    parts = []
    for a in range(len(names)):
        for b in range(a):
            r = cov[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else 0.0
            if abs(r) > 0.99:
                parts.append(f"correlation of {names[b]} and {names[a]} by {term.group} at {r:+.2f}")
    return "; ".join(parts) or f"{', '.join(boundary)} by {term.group} on the boundary"


def simplify_once(frame: ModelFrame, fit: RemlFit) -> tuple[list[RandomTerm], list[dict[str, str]]] | None:
    """One step of the rule, or ``None`` when the fit is not singular."""
    singular = singular_effects(frame, fit)
    if not singular:
        return None
    terms = list(frame.terms)
    steps = []
    correlated = [j for j in singular if terms[j].correlated and len(terms[j].effects) > 1]
    if correlated:
        for j in correlated:
            reason = _singular_reason(terms[j], frame.effect_names[j], fit.covariances[j], singular[j], fit.sigma2)
            new = RandomTerm(terms[j].group, terms[j].effects, correlated=False)
            steps.append({"action": f"drop the correlations: {terms[j]} -> {new}", "reason": reason})
            terms[j] = new
        return terms, steps
    dropped: list[int] = []
    for j, zero_names in singular.items():
        term = terms[j]
        reason = _singular_reason(term, frame.effect_names[j], fit.covariances[j], zero_names, fit.sigma2)
        droppable = _effects_named(term, frame.effect_names[j], zero_names)
        if not droppable:
            continue  # e.g. one arm of a `condition` slope at 0: the rule has no smaller term to offer
        kept: RandomTerm | None = term
        for effect in droppable:
            kept = kept.without(effect) if kept is not None else None
        if kept is None:
            steps.append({"action": f"drop {term}", "reason": reason})
            dropped.append(j)
        else:
            steps.append({"action": f"{term} -> {kept}", "reason": reason})
            terms[j] = kept
    if not steps:
        return None
    return [t for j, t in enumerate(terms) if j not in dropped], steps


def _effects_named(term: RandomTerm, names: list[str], zero_names: list[str]) -> list[str]:
    """The effects of ``term`` all of whose columns are at zero (``condition`` has one column per arm)."""
    out = []
    for effect in term.effects:
        mine = [n for n in names if _column_of(n) == effect]
        if mine and all(n in zero_names for n in mine):
            out.append(effect)
    return out


def _column_of(name: str) -> str:
    if name == "(Intercept)":
        return "1"
    return CONDITION if name.startswith("condition[T.") else name
