"""Inter-rater reliability: Krippendorff's alpha (via the ``krippendorff`` package) and per-rater quality checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis._frames import require_columns

MAX_PACKAGE_VALUES = 500


def interval_alpha(reliability_data: np.ndarray) -> float:
    """Krippendorff's interval alpha in closed form, O(ratings) memory.

    ``reliability_data`` is coders x units with NaN for missing. With the squared
    difference metric, the observed disagreement is
    D_o = (1/n) Σ_u (1/(m_u - 1)) Σ_{i≠j in u} (v_i - v_j)² and the expected one
    D_e = (1/(n(n-1))) Σ_{i≠j} (v_i - v_j)² over all n pairable values (units with
    m_u >= 2), and Σ_{i≠j} (v_i - v_j)² = 2 (m Σv² - (Σv)²).
    """
    data = np.asarray(reliability_data, dtype=float)
    ok = np.isfinite(data)
    m_u = ok.sum(axis=0)
    keep = m_u >= 2
    v = np.where(ok, data, 0.0)[:, keep]
    m_u = m_u[keep]
    s1, s2 = v.sum(axis=0), (v * v).sum(axis=0)
    n = m_u.sum()
    if n < 2:
        raise ValueError("fewer than two pairable values")
    d_o = (2 * (m_u * s2 - s1 * s1) / (m_u - 1)).sum() / n
    total1, total2 = s1.sum(), s2.sum()
    d_e = 2 * (n * total2 - total1 * total1) / (n * (n - 1))
    if d_e == 0:
        raise ValueError("all values are equal: alpha is undefined")
    return float(1 - d_o / d_e)


def krippendorff_alpha(
    ratings: pd.DataFrame,
    *,
    dimension_col: str = "dimension",
    score_col: str = "score",
    rater_col: str = "rater",
    stimulus_col: str = "stimulus",
    levels: tuple[str, ...] = ("interval", "ordinal"),
) -> pd.DataFrame:
    """Krippendorff's alpha per dimension, at each level of measurement.

    The reliability matrix is raters x stimuli with missing cells for stimuli a rater
    did not see, which alpha handles natively. The ``krippendorff`` package builds a
    units x values x values array, so its memory grows with the square of the number of
    distinct values: for the ordinal level scores are rounded to whole scale points
    (a 0–100 slider has at most 101), and for the interval level with more than
    ``MAX_PACKAGE_VALUES`` distinct values (continuous scores) the exact closed form of
    :func:`interval_alpha` is used instead (tested equal to the package).

    Returns
    -------
    pandas.DataFrame
        ``dimension, alpha_<level>..., n_raters, n_stimuli, n_ratings``.
    """
    import krippendorff

    require_columns(ratings, [dimension_col, score_col, rater_col, stimulus_col], "ratings")
    rows = []
    for dim, df in ratings.groupby(dimension_col, sort=True):
        # Duplicate ratings of one stimulus by one rater (should not happen) are averaged.
        matrix = df.pivot_table(index=rater_col, columns=stimulus_col, values=score_col, aggfunc="mean")
        data = matrix.to_numpy(float)
        row: dict[str, object] = {"dimension": dim}
        for level in levels:
            values = np.round(data) if level == "ordinal" else data
            try:
                if level == "interval" and len(np.unique(values[np.isfinite(values)])) > MAX_PACKAGE_VALUES:
                    row[f"alpha_{level}"] = interval_alpha(values)
                    continue
                alpha = krippendorff.alpha(reliability_data=values, level_of_measurement=level)  # type: ignore[arg-type]
                row[f"alpha_{level}"] = float(alpha)
            except ValueError as exc:  # e.g. one distinct value: alpha is undefined
                row[f"alpha_{level}"] = np.nan
                row["note"] = str(exc)
        row.update({"n_raters": matrix.shape[0], "n_stimuli": matrix.shape[1], "n_ratings": len(df)})
        rows.append(row)
    return pd.DataFrame(rows)


def rater_quality(ratings: pd.DataFrame) -> pd.DataFrame:
    """One row per rater: volume, speed, spread, straight-lining, agreement with the others.

    ``consensus_r`` is the correlation of the rater's scores with the mean score the
    *other* raters gave the same stimulus on the same dimension (leave-one-out).
    """
    df = ratings.copy()
    key = ["stimulus", "dimension"]
    s = df.groupby(key)["score"].transform("sum")
    n = df.groupby(key)["score"].transform("count")
    df["_others"] = ((s - df["score"]) / (n - 1)).where(n > 1)
    rows = []
    for rater, g in df.groupby("rater", sort=True):
        ok = g[["score", "_others"]].dropna()
        r = ok["score"].corr(ok["_others"]) if len(ok) > 2 and ok["score"].std() > 0 else np.nan
        row: dict[str, Any] = {
            "rater": rater,
            "n_ratings": len(g),
            "score_sd": g["score"].std(),
            "share_modal_score": g["score"].value_counts(normalize=True).iloc[0],
            "consensus_r": r,
        }
        if "seconds_on_page" in g:
            row["median_seconds"] = g["seconds_on_page"].median()
        if "attention_failed" in g:
            row["attention_failed"] = bool(g["attention_failed"].fillna(False).astype(bool).any())
        rows.append(row)
    return pd.DataFrame(rows)
