"""Novelty against utility per condition (and steering strength), with the Pareto front."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.mixed import Z95


def pareto_front(table: pd.DataFrame, *, x: str = "novelty", y: str = "utility") -> pd.Series:
    """True for rows not dominated by another row (higher-or-equal on both, higher on one)."""
    values = table[[x, y]].to_numpy(float)
    front = []
    for a, b in values:
        dominated = np.any((values[:, 0] >= a) & (values[:, 1] >= b) & ((values[:, 0] > a) | (values[:, 1] > b)))
        front.append(bool(np.isfinite(a) and np.isfinite(b) and not dominated))
    return pd.Series(front, index=table.index, name="pareto")


def novelty_utility(
    table: pd.DataFrame,
    *,
    novelty_col: str,
    utility_col: str,
    group_cols: Sequence[str] = ("condition",),
) -> pd.DataFrame:
    """Mean novelty and utility per group, with normal 95% CIs and the Pareto front.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per unit (stimulus), e.g. stimulus metrics (novelty ``aut_originality``
        or ``dat_score``; utility the 0/1 ``dat_valid``) or per-stimulus mean ratings
        (see :func:`from_ratings`).
    group_cols : sequence of str
        E.g. ``("condition",)`` or ``("condition", "strength")``.

    Returns
    -------
    pandas.DataFrame
        ``<group_cols>, novelty, novelty_ci_low/high, utility, utility_ci_low/high, n_novelty,
        n_utility`` (the non-missing values behind each mean: an invalid DAT answer has no
        score, so it is not in ``n_novelty``), ``n_rows`` (all rows of the group), ``pareto``.
    """
    group_cols = list(group_cols)
    df = table[[*group_cols, novelty_col, utility_col]].copy()
    df[novelty_col] = pd.to_numeric(df[novelty_col], errors="coerce")
    df[utility_col] = pd.to_numeric(df[utility_col].astype("Float64"), errors="coerce")
    rows = []
    for key, g in df.groupby(group_cols, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(group_cols, key, strict=True))
        for name, col in (("novelty", novelty_col), ("utility", utility_col)):
            v = g[col].dropna().to_numpy(float)
            row[f"n_{name}"] = len(v)  # the units behind the mean: missing values are not units
            m = float(v.mean()) if len(v) else np.nan
            se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan
            row.update({name: m, f"{name}_ci_low": m - Z95 * se, f"{name}_ci_high": m + Z95 * se})
        row["n_rows"] = len(g)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["pareto"] = pareto_front(out) if len(out) else pd.Series(dtype=bool)
    out.attrs.update({"novelty": novelty_col, "utility": utility_col})
    return out


def from_ratings(
    ratings: pd.DataFrame,
    *,
    novelty_dim: str = "originality",
    utility_dim: str = "usefulness",
    dimension_col: str = "dimension",
    score_col: str = "score",
    stimulus_col: str = "stimulus",
    keep_cols: Sequence[str] = ("condition",),
) -> pd.DataFrame:
    """Per-stimulus mean rating of a novelty and a utility dimension, in wide form."""
    missing = [d for d in (novelty_dim, utility_dim) if d not in set(ratings[dimension_col])]
    if missing:
        raise ValueError(f"dimension(s) {missing} not rated; dimensions are {sorted(set(ratings[dimension_col]))}")
    wide = ratings.pivot_table(index=stimulus_col, columns=dimension_col, values=score_col, aggfunc="mean")
    keys = ratings.groupby(stimulus_col)[list(keep_cols)].first()
    return keys.join(wide[[novelty_dim, utility_dim]]).reset_index()


def plot_novelty_utility(summary: pd.DataFrame, *, label_cols: Sequence[str] = ("condition",), path=None, ax=None):
    """Scatter of novelty against utility with CIs, Pareto front joined by a line."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for _, r in summary.iterrows():
        ax.errorbar(
            r["novelty"],
            r["utility"],
            xerr=[[r["novelty"] - r["novelty_ci_low"]], [r["novelty_ci_high"] - r["novelty"]]],
            yerr=[[r["utility"] - r["utility_ci_low"]], [r["utility_ci_high"] - r["utility"]]],
            fmt="o",
            color="C3" if r["pareto"] else "C0",
            capsize=3,
        )
        ax.annotate(
            " ".join(str(r[c]) for c in label_cols),
            (r["novelty"], r["utility"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    front = summary[summary["pareto"]].sort_values("novelty")
    ax.plot(front["novelty"], front["utility"], "--", color="C3", label="Pareto front")
    ax.set_xlabel(f"novelty ({summary.attrs.get('novelty', 'novelty')})")
    ax.set_ylabel(f"utility ({summary.attrs.get('utility', 'utility')})")
    ax.legend(loc="best", fontsize=8)
    if own:
        fig.tight_layout()
        if path is not None:
            fig.savefig(Path(path), dpi=110)
            plt.close(fig)
    return ax
