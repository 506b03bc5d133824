"""Inter-rater reliability: Krippendorff's alpha (via the ``krippendorff`` package)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.mixed import _check_columns


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
    did not see, which alpha handles natively. For the ordinal level, scores are
    rounded to whole scale points first: ordinal alpha's cost grows with the square of
    the number of distinct values, and a 0–100 slider has at most 101.

    Returns
    -------
    pandas.DataFrame
        ``dimension, alpha_<level>..., n_raters, n_stimuli, n_ratings``.
    """
    import krippendorff

    _check_columns(ratings, [dimension_col, score_col, rater_col, stimulus_col])
    rows = []
    for dim, df in ratings.groupby(dimension_col, sort=True):
        # Duplicate ratings of one stimulus by one rater (should not happen) are averaged.
        matrix = df.pivot_table(index=rater_col, columns=stimulus_col, values=score_col, aggfunc="mean")
        data = matrix.to_numpy(float)
        row: dict[str, object] = {"dimension": dim}
        for level in levels:
            values = np.round(data) if level == "ordinal" else data
            try:
                alpha = krippendorff.alpha(reliability_data=values, level_of_measurement=level)  # type: ignore[arg-type]
                row[f"alpha_{level}"] = float(alpha)
            except ValueError as exc:  # e.g. one distinct value: alpha is undefined
                row[f"alpha_{level}"] = np.nan
                row["note"] = str(exc)
        row.update({"n_raters": matrix.shape[0], "n_stimuli": matrix.shape[1], "n_ratings": len(df)})
        rows.append(row)
    return pd.DataFrame(rows)
