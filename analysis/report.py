"""The HTML report: tables and matplotlib figures in one folder, ``index.html`` first.

Every table shown is also written as CSV beside the page (``main_table.csv`` is the
paper's main table), so a notebook or a reviewer can check the numbers.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.dat import dat_summary
from analysis.diversity import bootstrap_by
from analysis.metrics import METRIC_COLUMNS, diversity_by_group, diversity_summary, stimulus_metrics
from analysis.mixed import condition_effects, fit_by, fit_mixed, fit_pooled, icc, prepare_ratings, variance_components
from analysis.novelty import from_ratings, novelty_utility, plot_novelty_utility
from analysis.reliability import krippendorff_alpha
from analysis.robust import ordinal_sensitivity, rater_bootstrap

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 0.9rem; } img { max-width: 100%; }
"""


def _plt():
    import matplotlib

    # Reports are written by servers and workers without a display.
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _table(df: pd.DataFrame, digits: int = 3) -> str:
    if df is None or df.empty:
        return "<p class='note'>(nothing to show)</p>"
    return df.to_html(
        index=False,
        float_format=lambda x: f"{x:.{digits}g}" if abs(x) < 1e-3 else f"{x:.{digits}f}",
        border=0,
        na_rep="–",
    )


class _Page:
    def __init__(self, out: Path):
        self.out = out
        self.parts: list[str] = []

    def h(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def p(self, text: str, cls: str = "") -> None:
        self.parts.append(f"<p class='{cls}'>{html.escape(text)}</p>")

    def table(self, df: pd.DataFrame, name: str | None = None, digits: int = 3) -> None:
        if name is not None and df is not None:
            df.to_csv(self.out / f"{name}.csv", index=False)
        self.parts.append(_table(df, digits))

    def figure(self, fig, name: str, alt: str) -> None:
        fig.savefig(self.out / f"{name}.png", dpi=110, bbox_inches="tight")
        _plt().close(fig)
        self.parts.append(f"<img src='{name}.png' alt='{html.escape(alt)}'>")

    def write(self, title: str) -> Path:
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(self.parts)}</body></html>"
        )
        path = self.out / "index.html"
        path.write_text(page, encoding="utf8")
        return path


def _forest(by_dep: pd.DataFrame, overall: pd.DataFrame, by: str):
    plt = _plt()
    dims = sorted(overall["dimension"].unique())
    terms = sorted(overall["term"].unique())
    ok = by_dep[by_dep["term"].notna()] if "term" in by_dep else by_dep.iloc[:0]
    n_rows = max(1, ok[by].nunique() if len(ok) else 0) + 1
    fig, axes = plt.subplots(
        1, len(dims), figsize=(4 * len(dims), 0.3 * n_rows * len(terms) + 1.5), sharey=True, squeeze=False
    )
    for ax, dim in zip(axes[0], dims, strict=True):
        labels, y = [], 0
        for term in terms:
            sub = ok[(ok["dimension"] == dim) & (ok["term"] == term)].sort_values(by)
            for _, r in sub.iterrows():
                ax.errorbar(
                    r["estimate"],
                    -y,
                    xerr=[[r["estimate"] - r["ci_low"]], [r["ci_high"] - r["estimate"]]],
                    fmt="o",
                    color="C0",
                    ms=3,
                    capsize=2,
                )
                labels.append(f"{r[by]} {term.split('T.')[-1].rstrip(']')}")
                y += 1
            r = overall[(overall["dimension"] == dim) & (overall["term"] == term)].iloc[0]
            ax.errorbar(
                r["estimate"],
                -y,
                xerr=[[r["estimate"] - r["ci_low"]], [r["ci_high"] - r["estimate"]]],
                fmt="D",
                color="C3",
                ms=6,
                capsize=3,
            )
            labels.append(f"all {term.split('T.')[-1].rstrip(']')}")
            y += 1
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(dim)
        ax.set_xlabel("effect vs reference (scale points)")
        ax.set_yticks(-np.arange(len(labels)), labels, fontsize=7)
    fig.tight_layout()
    return fig


def _distributions(ratings: pd.DataFrame):
    plt = _plt()
    dims = sorted(ratings["dimension"].unique())
    fig, axes = plt.subplots(1, len(dims), figsize=(4 * len(dims), 3), squeeze=False)
    bins = np.linspace(ratings["score"].min(), ratings["score"].max(), 21)
    for ax, dim in zip(axes[0], dims, strict=True):
        d = ratings[ratings["dimension"] == dim]
        for cond, g in d.groupby("condition", sort=True):
            ax.hist(g["score"], bins=bins, density=True, histtype="step", lw=1.5, label=str(cond))
        ax.set_title(dim)
        ax.set_xlabel("score")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


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


def write_report(
    ratings: pd.DataFrame,
    stimuli: pd.DataFrame | None,
    out_dir: str | os.PathLike[str],
    *,
    reference: str = "base",
    exclude_attention_failed: bool = True,
    exclude_incomplete: bool = False,
    compute_metrics: bool = True,
    embedder=None,
    n_boot: int = 100,
    title: str = "Creativity study: analysis report",
    seed: int = 0,
) -> Path:
    """Write the HTML report of a study and return the path of ``index.html``.

    Parameters
    ----------
    ratings : pandas.DataFrame
        Long export: ``rater, deployment, condition, model, task, item, stimulus,
        dimension, score`` (extra columns used when present: ``attention_failed``,
        ``rater_complete``, ``seconds_on_page``).
    stimuli : pandas.DataFrame or None
        Stimulus table (``stimulus, condition, task, item, text`` ...); enables the
        diversity and automatic novelty–utility sections.
    out_dir : path
        Folder to write (created); holds ``index.html``, PNG figures and CSV tables.
    reference : str
        Reference condition.
    exclude_attention_failed, exclude_incomplete : bool
        Preprocessing choices, stated in the report.
    compute_metrics : bool
        Compute stimulus metrics (embedding model) when the stimulus table lacks them.
    embedder : Embedder or None
        Embedding for the metrics; None = embedded MiniLM.
    n_boot : int
        Rater-bootstrap resamples (0 skips the bootstrap).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = _Page(out)
    raw = ratings
    ratings = prepare_ratings(
        ratings, exclude_attention_failed=exclude_attention_failed, exclude_incomplete=exclude_incomplete
    )
    fits = fit_mixed(ratings, reference=reference)

    page.h("Data")
    excluded = ratings.attrs.get("excluded_raters", {})
    page.p(
        f"{len(raw)} ratings by {raw['rater'].nunique()} raters in the export; analysed: {len(ratings)} ratings by "
        f"{ratings['rater'].nunique()} raters of {ratings['stimulus'].nunique()} stimuli on "
        f"{ratings['dimension'].nunique()} dimension(s). Excluded raters: "
        + (", ".join(f"{k}: {v}" for k, v in excluded.items()) or "none")
        + f" (exclude_attention_failed={exclude_attention_failed}, exclude_incomplete={exclude_incomplete})."
    )

    page.h("Condition effects (main table)")
    main = condition_effects(ratings, fits=fits, reference=reference)
    # The fit states its own model and inference, so this text cannot drift from what was computed.
    fitted_with = next(iter(fits.values()))["method"] if fits else "no fit"
    page.p(
        f"Per dimension: {fitted_with}. p_holm: Holm across dimensions. d_total: estimate / sqrt(total model "
        "variance); d_z: the same model on within-rater z-scores.",
        "note",
    )
    page.table(main, "main_table")

    if "deployment" in ratings and ratings["deployment"].nunique() > 1:
        page.h("Effect per deployment (forest plot)")
        by_dep = fit_by(ratings, by="deployment", reference=reference)
        page.figure(_forest(by_dep, main, "deployment"), "forest", "effect per dimension and deployment")
        page.table(by_dep, "effects_by_deployment")

    page.h("Variance components and reliability")
    page.table(variance_components(fits), "variance_components")
    page.table(icc(fits), "icc")
    page.table(krippendorff_alpha(ratings), "krippendorff_alpha")

    page.h("Robustness")
    page.p("Proportional-odds model (scores binned to ordered levels), two-way cluster-robust SEs:", "note")
    page.table(ordinal_sensitivity(ratings, reference=reference), "ordinal_sensitivity")
    if n_boot > 0:
        page.p(f"Rater-clustered bootstrap ({n_boot} resamples of raters within deployment), percentile CI:", "note")
        page.table(rater_bootstrap(ratings, n_boot=n_boot, reference=reference, seed=seed), "rater_bootstrap")

    pooled = _pooled(ratings, reference)
    if pooled is not None:
        page.h("Pooled model across deployments (method x task)")
        page.p(
            "score ~ 0 + task + task:condition + (1|rater) + (1|stimulus) + (1|deployment): the effect of each "
            "method within each task; cells_equal: Wald test that all method x task effects are equal.",
            "note",
        )
        page.table(pooled, "pooled_model")

    page.h("Rating distributions by condition")
    page.figure(_distributions(ratings), "distributions", "rating distributions")

    metrics = None
    if stimuli is not None and len(stimuli):
        metrics = stimuli
        # An export made before the metrics task ran has the columns, but empty.
        missing = [c for c in METRIC_COLUMNS if c not in stimuli.columns or stimuli[c].isna().all()]
        if missing and compute_metrics and {"text", "task"} <= set(stimuli.columns):
            # The export's `item` is a key; `item_text` is the object as the model saw it.
            item_col = "item_text" if "item_text" in stimuli.columns else "item"
            computed = stimulus_metrics(stimuli, embedder=embedder, item_col=item_col)
            metrics = stimuli.drop(columns=missing, errors="ignore").join(computed[missing])
        page.h("Automatic metrics by condition")
        auto = _automatic_metrics(metrics, seed=seed)
        if auto is None:
            page.p("(no metric columns: pass a stimulus table with text and task, or with metric columns)", "note")
        else:
            page.p("Mean per condition x item, then mean over items with a bootstrap 95% CI resampling items.", "note")
            page.table(auto, "automatic_metrics")
        if "dat_valid" in metrics and metrics["dat_valid"].notna().any():
            page.p("DAT answers: invalid answers (fewer than 7 valid words) are counted, not dropped.", "note")
            page.table(dat_summary(_dat_rows(metrics)), "dat_validity")
        page.h("Diversity and mode collapse by condition")
        if {"text", "condition", "item"} <= set(stimuli.columns) and compute_metrics:
            div = diversity_by_group(stimuli, embedder=embedder)
            summary = diversity_summary(div, seed=seed)
            page.p("Per condition x item, then mean over items with a bootstrap 95% CI resampling items.", "note")
            page.table(summary, "diversity_summary")
            page.figure(_diversity_plot(summary), "diversity", "diversity metrics by condition")
        else:
            page.p("(the stimulus table has no text/condition/item columns)", "note")

    page.h("Novelty and utility")
    nu = _novelty_utility(ratings, metrics)
    if nu is None:
        page.p("Needs a rated utility dimension (usefulness/utility) or DAT stimuli with metrics.", "note")
    else:
        ax = plot_novelty_utility(nu, label_cols=[c for c in nu.columns if c in ("condition", "strength")])
        page.figure(ax.figure, "novelty_utility", "novelty against utility")
        page.table(nu, "novelty_utility")

    from analysis.combinatorial import report_section as combinatorial_section

    combinatorial_section(page, metrics)

    page.h("Rater quality")
    quality = rater_quality(raw)
    page.p(
        "consensus_r: correlation with the other raters' mean for the same stimulus; low values or a high "
        "share_modal_score (straight-lining) flag raters to inspect.",
        "note",
    )
    page.table(quality.describe().T.reset_index().rename(columns={"index": "measure"}), "rater_quality_summary")
    quality.to_csv(out / "rater_quality.csv", index=False)

    page.h("Methods")
    page.p(next(iter(fits.values()))["method"], "note")
    return page.write(title)


def _dat_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics[metrics["task"].astype(str).str.lower() == "dat"].assign(
        dat_valid=lambda d: d["dat_valid"].astype("boolean").fillna(False).astype(bool)
    )


def _automatic_metrics(metrics: pd.DataFrame, seed: int) -> pd.DataFrame | None:
    cols = [c for c in METRIC_COLUMNS if c in metrics and c != "dat_valid" and metrics[c].notna().any()]
    if not cols or not {"condition", "item"} <= set(metrics.columns):
        return None
    table = metrics[["condition", "item", *cols]].copy()
    table[cols] = table[cols].apply(pd.to_numeric, errors="coerce")
    per_item = table.groupby(["condition", "item"], as_index=False)[cols].mean()
    return bootstrap_by(per_item, metrics=cols, by="condition", unit="item", n_boot=1000, seed=seed)


def _pooled(ratings: pd.DataFrame, reference: str) -> pd.DataFrame | None:
    if not {"task", "deployment"} <= set(ratings.columns) or ratings["deployment"].nunique() < 2:
        return None
    try:
        fits = fit_pooled(ratings, reference=reference)
    except ValueError:
        return None  # e.g. no reference condition in some dimension: nothing to pool
    rows = []
    for dim, fit in fits.items():
        for t in fit["fixed_effects"]:
            if ":condition[" in t["term"]:
                rows.append({"dimension": dim, **t, **{f"cells_equal_{k}": v for k, v in fit["interaction"].items()}})
    return pd.DataFrame(rows)


def _diversity_plot(summary: pd.DataFrame):
    plt = _plt()
    metrics = [
        m
        for m in ("mean_pairwise_similarity", "vendi_score", "distinct_2", "share_clusters")
        if m in set(summary["metric"])
    ]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(3.2 * max(1, len(metrics)), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        d = summary[summary["metric"] == metric]
        x = np.arange(len(d))
        ax.errorbar(
            x, d["estimate"], yerr=[d["estimate"] - d["ci_low"], d["ci_high"] - d["estimate"]], fmt="o", capsize=3
        )
        ax.set_xticks(x, d["condition"].astype(str), rotation=30)
        ax.set_title(metric, fontsize=9)
    fig.tight_layout()
    return fig


def _novelty_utility(ratings: pd.DataFrame, metrics: pd.DataFrame | None) -> pd.DataFrame | None:
    dims = set(ratings["dimension"])
    utility = next((d for d in ("usefulness", "utility", "useful") if d in dims), None)
    if utility and "originality" in dims:
        wide = from_ratings(ratings, novelty_dim="originality", utility_dim=utility)
        return novelty_utility(wide, novelty_col="originality", utility_col=utility)
    if metrics is not None and "dat_valid" in metrics and metrics["dat_valid"].notna().any():
        group = ["condition", "strength"] if "strength" in metrics else ["condition"]
        return novelty_utility(_dat_rows(metrics), novelty_col="dat_score", utility_col="dat_valid", group_cols=group)
    return None
