"""The HTML report: tables and matplotlib figures in one folder, ``index.html`` first.

It opens with a summary of the study (:mod:`analysis.report_summary`): each finding in a
sentence with its estimate, CI and model, the figures that carry them, and what the data
cannot say. The full results follow: the rated effects (main table, with the weight vs
activation contrast and every warning of the fits), mode collapse
(:func:`analysis.diversity_differences`) and, when the study has a DAT task, the DAT table
(:func:`analysis.dat_table`); then the other sections. ``results.json`` holds ``{"effects":
..., "diversity": ..., "dat": ..., "summary": ...}`` (``dat`` is null without a DAT task;
:func:`format_result_tables` prints the tables as text). When the ratings have a
``simulated`` column with any true value, the page and the tables say so at the top.

Every table shown is also written as CSV beside the page (``main_table.csv`` is the
paper's main table), so a notebook or a reviewer can check the numbers.
"""

from __future__ import annotations

import html
import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.dat import dat_summary
from analysis.dat_results import dat_table
from analysis.diversity import bootstrap_by
from analysis.jsonout import json_safe
from analysis.metrics import METRIC_COLUMNS, stimulus_metrics
from analysis.mixed import condition_effects, fit_by, fit_mixed, fit_pooled, icc, prepare_ratings, variance_components
from analysis.mode_collapse import diversity_differences
from analysis.notices import PooledModelWarning, collect_warnings, warning_text
from analysis.novelty import from_ratings, novelty_utility, plot_novelty_utility
from analysis.power import components_from_fit, design_advice, plot_design_advice
from analysis.random_effects import SIMPLIFICATION_RULE
from analysis.reliability import krippendorff_alpha, rater_quality
from analysis.report_summary import (
    DataFacts,
    Scale,
    Summary,
    condition_of,
    contrast_findings,
    dat_findings,
    dimension_scales,
    diversity_findings,
    effect_findings,
    limits,
    summary_html,
)
from analysis.robust import ordinal_sensitivity, rater_bootstrap

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 0.9rem; } img { max-width: 100%; }
.simulated { background: #fff3cd; border: 2px solid #c77700; padding: 0.8rem; font-weight: bold; }
.warnings { color: #8a4b00; }
.summary { border: 1px solid #ccc; background: #fcfcfc; padding: 0 1rem 0.5rem; }
.summary .figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.summary figure { flex: 1 1 18rem; margin: 0; } .summary figure.wide { flex-basis: 100%; }
.summary figcaption { font-size: 0.8rem; color: #555; }
table { display: block; overflow-x: auto; max-width: 100%; }
"""

SIMULATED_BANNER = "SIMULATED RATINGS: these ratings come from simulated raters, not people. Not a study result."


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

    def warnings(self, items: list[str]) -> None:
        if items:
            lis = "".join(f"<li>{html.escape(w)}</li>" for w in items)
            self.parts.append(f"<ul class='warnings'>{lis}</ul>")

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


def distributions_figure(ratings: pd.DataFrame, scales: Mapping[str, Scale]):
    """Score distributions by condition, one panel per dimension on that dimension's own scale.

    A Likert dimension (a few whole points) gets one bar per point of its scale; a slider
    20 bins over its range. Each axis spans the scale the raters saw, not the scores' range.
    """
    plt = _plt()
    dims = sorted(ratings["dimension"].unique())
    fig, axes = plt.subplots(1, len(dims), figsize=(4 * len(dims), 3), squeeze=False)
    for ax, dim in zip(axes[0], dims, strict=True):
        scale = scales[str(dim)]
        if scale.discrete:
            points = np.arange(scale.low, scale.high + 1)
            bins = np.append(points - 0.5, scale.high + 0.5)
            ax.set_xticks(points)
            ax.set_xlim(scale.low - 0.5, scale.high + 0.5)
        else:
            bins = np.linspace(scale.low, scale.high, 21)
            ax.set_xlim(scale.low, scale.high)
        d = ratings[ratings["dimension"] == dim]
        for cond, g in d.groupby("condition", sort=True):
            ax.hist(g["score"], bins=bins, density=True, histtype="step", lw=1.5, label=str(cond))
        ax.set_title(dim)
        ax.set_xlabel(f"score ({scale.label} scale)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def is_simulated(ratings: pd.DataFrame) -> bool:
    """True when the ratings have a boolean ``simulated`` column with any true value."""
    return "simulated" in ratings.columns and bool(ratings["simulated"].fillna(False).astype(bool).any())


def write_report(
    ratings: pd.DataFrame,
    stimuli: pd.DataFrame | None,
    out_dir: str | os.PathLike[str],
    *,
    reference: str = "base",
    exclude_attention_failed: bool = True,
    exclude_incomplete: bool = False,
    exclude_pilot: bool = True,
    compute_metrics: bool = True,
    embedder=None,
    n_boot: int = 100,
    study: str | None = None,
    title: str | None = None,
    seed: int = 0,
    model_options: Mapping[str, Any] | None = None,
    plan: bool = True,
    diversity_boot: int = 2000,
    dat_vectors: str | os.PathLike[str] | None = None,
    dat_words: str | os.PathLike[str] | None = None,
    dat_norms: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the HTML report of a study and ``results.json`` (module docstring); return ``index.html``'s path.

    Long because each option of the report is documented; the body is one call per step.

    Parameters
    ----------
    ratings, stimuli : pandas.DataFrame
        The long ratings export (``rater, deployment, condition, model, task, item, stimulus,
        dimension, score``; used when present: ``attention_failed, rater_complete, pilot,
        withdrawn, seconds_on_page, text_id, simulated, scale_min, scale_max``) and the stimulus
        table or None (``stimulus, deployment, condition, model, task, item, item_text, text``...;
        it enables the diversity, DAT and automatic-metric sections).
    out_dir : path
        Folder to write (created): ``index.html``, ``results.json``, PNG figures, CSV tables.
    reference, exclude_attention_failed, exclude_incomplete, exclude_pilot : str, bool
        The reference condition and the choice of raters (:func:`analysis.mixed.prepare_ratings`).
    compute_metrics, embedder : bool, Embedder or None
        Compute stimulus metrics absent from the table, with this embedding (None: MiniLM).
    n_boot, diversity_boot, seed : int
        Rater-bootstrap resamples (0 skips), resamples of the diversity and DAT tables, seed.
    study, title : str or None
        The study's name (title and summary) and the page's title (``"<study>: analysis report"``).
    model_options : mapping or None
        :func:`analysis.mixed.fit_mixed`'s model choices for the main model (default: the design's
        maximal structure, simplified by the stated rule; other models derive theirs the same way).
    plan : bool
        Add the planning section: power over raters x items at d = 0.3 (analytic).
    dat_vectors, dat_words, dat_norms : path or None
        The DAT table's word vectors (GloVe 840B 300d for human percentiles; default ``embedder``),
        dictionary (wamerican) and human norms (the shipped approximation).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = _Page(out)
    simulated = _simulated_banner(page, ratings)
    exclusions = {
        "exclude_attention_failed": exclude_attention_failed,
        "exclude_incomplete": exclude_incomplete,
        "exclude_pilot": exclude_pilot,
    }
    prepared, facts = _data_section(page, ratings, exclusions)
    effects = _effects_section(page, prepared, reference=reference, options=dict(model_options or {}))
    diversity = _diversity_section(page, stimuli, embedder=embedder, n_boot=diversity_boot, seed=seed)
    dat = _dat_section(
        page, stimuli, vectors=dat_vectors if dat_vectors is not None else embedder, words=dat_words,
        norms=dat_norms, n_boot=diversity_boot, seed=seed,
    )  # fmt: skip
    details = _Details(reference=reference, n_boot=n_boot, seed=seed, plan=plan, compute_metrics=compute_metrics)
    scales = _detail_sections(page, ratings, prepared, stimuli, effects, details, embedder=embedder)
    name = study or "unnamed study"
    summary = _summary(name, facts, effects, diversity, dat, scales=scales, ratings=prepared)
    results = {"effects": effects.results(simulated), "diversity": diversity, "dat": dat, "summary": summary.as_dict()}
    (out / "results.json").write_text(json.dumps(json_safe(results), indent=2) + "\n", encoding="utf8")
    written = {figure: caption for figure, caption in FIGURES.items() if (out / f"{figure}.png").is_file()}
    page.parts.insert(int(simulated), summary_html(summary, written))
    return page.write(("[SIMULATED RATINGS] " if simulated else "") + (title or f"{name}: analysis report"))


@dataclass(frozen=True)
class _Details:
    """The options of the sections after the three main results."""

    reference: str
    n_boot: int
    seed: int
    plan: bool
    compute_metrics: bool


def _detail_sections(
    page: _Page,
    ratings: pd.DataFrame,
    prepared: pd.DataFrame,
    stimuli: pd.DataFrame | None,
    effects: _Effects,
    details: _Details,
    *,
    embedder: Any,
) -> dict[str, Scale]:
    """Every section after the three main results, in order; returns each dimension's scale."""
    _deployment_section(page, prepared, effects.main, reference=details.reference, options=effects.derived_options)
    _reliability_section(page, prepared, effects.fits)
    if details.plan:
        _planning_section(page, prepared, effects.fits, seed=details.seed)
    _robustness_section(page, prepared, reference=details.reference, n_boot=details.n_boot, seed=details.seed)
    _pooled_section(page, effects)
    scales = dimension_scales(prepared)
    page.h("Rating distributions by condition")
    page.figure(distributions_figure(prepared, scales), "distributions", "rating distributions")
    metrics = _metrics_section(
        page, stimuli, compute_metrics=details.compute_metrics, embedder=embedder, seed=details.seed
    )
    _novelty_utility_section(page, prepared, metrics)

    from analysis.combinatorial import report_section as combinatorial_section

    combinatorial_section(page, metrics)
    _rater_quality_section(page, ratings)
    page.h("Methods")
    page.p(effects.model, "note")
    return scales


FIGURES = {
    "forest": "Rated effects per dimension: each deployment (dots) and all together (diamonds), 95% CIs",
    "diversity": "Mode collapse: steered minus base per diversity metric, 95% CIs",
    "dat": "DAT: valid answers and the percentile gain (or score) per model and condition, 95% CIs",
}


def _summary(
    study: str,
    facts: DataFacts,
    effects: _Effects,
    diversity: dict[str, Any],
    dat: dict[str, Any] | None,
    *,
    scales: dict[str, Scale],
    ratings: pd.DataFrame,
) -> Summary:
    """The opening page's findings and limits, from the numbers the sections computed."""
    rated = effect_findings(
        effects.main, effects.fits, references=_references(ratings, effects.main), scales=scales, figure="forest"
    )
    findings = [
        *rated,
        *contrast_findings(effects.main, effects.pooled_fits),
        *diversity_findings(diversity, figure="diversity"),
        *dat_findings(dat, figure="dat"),
    ]
    return Summary(study, facts, findings, limits(rated, effects.fits, facts, diversity))


def _references(ratings: pd.DataFrame, main: pd.DataFrame) -> dict[str, str]:
    """Each dimension's reference condition: the one condition that has no row of its own in the main table."""
    references = {}
    for dim, df in ratings.groupby("dimension", sort=True):
        steered = {condition_of(t) for t in main.loc[main["dimension"] == dim, "term"]} if len(main) else set()
        rest = sorted(set(df["condition"].astype(str)) - steered)
        if len(rest) == 1:
            references[str(dim)] = rest[0]
    return references


def _simulated_banner(page: _Page, ratings: pd.DataFrame) -> bool:
    """Whether the ratings are simulated; if so, the page says it first."""
    simulated = is_simulated(ratings)
    if simulated:
        page.p(SIMULATED_BANNER, "simulated")
    return simulated


def _data_section(page: _Page, raw: pd.DataFrame, exclusions: dict[str, bool]) -> tuple[pd.DataFrame, DataFacts]:
    """The ratings analysed (:func:`analysis.mixed.prepare_ratings` with ``exclusions``) and their
    facts, which the page states here and the summary again in its opening sentence."""
    ratings = prepare_ratings(
        raw,
        exclude_attention_failed=exclusions["exclude_attention_failed"],
        exclude_incomplete=exclusions["exclude_incomplete"],
        exclude_pilot=exclusions["exclude_pilot"],
    )
    facts = DataFacts.of(raw, ratings, exclude_pilot=exclusions["exclude_pilot"])
    page.h("Data")
    page.p(
        f"{facts.sentence()} The analysis rates {ratings['stimulus'].nunique()} stimuli on "
        f"{ratings['dimension'].nunique()} dimension(s); its choices: "
        + ", ".join(f"{k}={v}" for k, v in exclusions.items())
        + "."
    )
    return ratings, facts


@dataclass
class _Effects:
    """The rated effects: one fit per dimension, the main table, and the pooled method x task fits."""

    fits: dict[str, Any]
    main: pd.DataFrame
    pooled_fits: dict[str, Any] | None
    pooled_error: str
    warnings: list[str]
    derived_options: dict[str, Any]

    @property
    def model(self) -> str:
        # The fit states its own model and inference, so the report's text cannot drift from what was computed.
        return next(iter(self.fits.values()))["method"] if self.fits else "no fit"

    def results(self, simulated: bool) -> dict[str, Any]:
        """The ``effects`` part of ``results.json``."""
        return {
            "simulated": simulated,
            "model": self.model,
            "rows": _records(self.main),
            "models": model_rows(self.fits),
            "pooled": _records(_pooled_rows(self.pooled_fits)) if self.pooled_fits else [],
            "warnings": self.warnings,
        }


def _effects_section(page: _Page, ratings: pd.DataFrame, *, reference: str, options: dict[str, Any]) -> _Effects:
    """Result 1: fit the mixed model per dimension and the pooled one; show the main table and the models."""
    fits = fit_mixed(ratings, reference=reference, **options)
    page.h("1. Rated effects (main table)")
    main = condition_effects(ratings, fits=fits, reference=reference, **options)
    # The other models derive their own structure: a formula's fixed part is the main model's.
    derived: dict[str, Any] = {k: options[k] for k in ("random", "simplify", "item_effect") if k in options}
    pooled_fits, pooled_error = _pooled_fits(ratings, reference, derived)
    main = _with_method_contrasts(main, pooled_fits)
    effect_warnings = sorted({w for fit in fits.values() for w in fit.get("warnings", [])})
    if pooled_error:
        effect_warnings.append(pooled_error)
    if pooled_fits:
        effect_warnings += sorted({w for fit in pooled_fits.values() for w in fit.get("warnings", [])})
    effects = _Effects(fits, main, pooled_fits, pooled_error, effect_warnings, derived)
    page.p(
        "Per dimension, the mixed model below (estimates in scale points, 95% CI and p from t with Satterthwaite "
        "df). p_holm: Holm across dimensions. d_total: estimate / sqrt(variance of a reference rating: the "
        "random intercepts and the residual); d_z: the same model on within-rater z-scores. contrast_*: the "
        "difference between this steering method and the other one (weight - activation), from the pooled "
        "method x task model, averaged over the tasks where both ran.",
        "note",
    )
    page.table(main, "main_table")
    page.p(
        "The model of each dimension: the random structure starts from the maximal one the design supports "
        "(a random slope of steering by every group within which condition varies) and a singular fit is "
        f"simplified by one rule: {SIMPLIFICATION_RULE}. Each step and its reason:",
        "note",
    )
    page.table(_model_table(fits), "models")
    page.warnings(effect_warnings)
    return effects


def _diversity_section(
    page: _Page, stimuli: pd.DataFrame | None, *, embedder: Any, n_boot: int, seed: int
) -> dict[str, Any]:
    """Result 2, mode collapse, from the stimulus table; empty with a reason without one."""
    page.h("2. Mode collapse: steered minus base")
    if stimuli is None or not len(stimuli) or not {"text", "condition", "item"} <= set(stimuli.columns):
        page.p("(needs a stimulus table with text, condition and item columns; so does the DAT table)", "note")
        return {"by_model": [], "pooled": [], "warnings": ["no stimulus table given"]}
    diversity = diversity_differences(stimuli, n_boot=n_boot, seed=seed, embedder=embedder)
    page.p(
        "Per deployment, condition and item (each distinct text once), steered minus the base samples of the "
        "same deployment and item; per model: mean over items, bootstrap 95% CI resampling items; pooled: mean "
        "over models, bootstrap resampling models then items.",
        "note",
    )
    page.table(pd.DataFrame(diversity["pooled"]), "diversity_pooled")
    if diversity["pooled"]:
        page.figure(_diversity_plot(pd.DataFrame(diversity["pooled"])), "diversity", "steered minus base")
    page.table(pd.DataFrame(diversity["by_model"]), "diversity_by_model")
    page.warnings(diversity["warnings"])
    return diversity


def has_dat_task(stimuli: pd.DataFrame | None) -> bool:
    """Whether the stimulus table holds DAT answers (``task == "dat"``): a study without them has no DAT result."""
    if stimuli is None or not len(stimuli) or not {"task", "text", "condition"} <= set(stimuli.columns):
        return False
    return bool((stimuli["task"].astype(str).str.lower() == "dat").any())


def _dat_section(
    page: _Page,
    stimuli: pd.DataFrame | None,
    *,
    vectors: Any,
    words: str | os.PathLike[str] | None,
    norms: str | os.PathLike[str] | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any] | None:
    """Result 3, the DAT table and its figure; None (and no section) for a study without a DAT task."""
    if stimuli is None or not has_dat_task(stimuli):
        return None
    page.h("3. DAT: valid answers, score, human percentile")
    dat = dat_table(stimuli, vectors=vectors, words=words, norms=norms, n_boot=n_boot, seed=seed)
    page.p(f"Norms: {dat['norms']}", "note")
    page.table(_dat_frame(dat), "dat_table")
    figure = _dat_plot(dat)
    if figure is not None:
        page.figure(figure, "dat", "DAT valid share and percentile gain or score per condition")
    page.warnings(dat["warnings"])
    return dat


def _deployment_section(
    page: _Page, ratings: pd.DataFrame, main: pd.DataFrame, *, reference: str, options: dict[str, Any]
) -> None:
    """A forest plot of the effects: per deployment when there are several, else the overall effects alone."""
    if main.empty:
        return
    if "deployment" not in ratings or ratings["deployment"].nunique() <= 1:
        page.h("Effect per dimension (forest plot)")
        no_deployments = pd.DataFrame(columns=["deployment", "dimension", "term", "estimate", "ci_low", "ci_high"])
        page.figure(_forest(no_deployments, main, "deployment"), "forest", "effect per dimension")
        return
    page.h("Effect per deployment (forest plot)")
    # Within one deployment, deployment has a single level: the other groups' structure is derived as above.
    by_dep = fit_by(ratings, by="deployment", reference=reference, **options)
    page.figure(_forest(by_dep, main, "deployment"), "forest", "effect per dimension and deployment")
    page.table(by_dep, "effects_by_deployment")


def _reliability_section(page: _Page, ratings: pd.DataFrame, fits: dict[str, Any]) -> None:
    page.h("Variance components and reliability")
    page.table(variance_components(fits), "variance_components")
    page.table(icc(fits), "icc")
    page.table(krippendorff_alpha(ratings), "krippendorff_alpha")


PLAN_EFFECT_D = 0.3  # the smallest effect worth planning for, in SDs of a rating (the paper saw .36-.43)


def _planning_section(page: _Page, ratings: pd.DataFrame, fits: dict[str, Any], *, seed: int) -> None:
    """How many raters and items the next study needs, from this study's variance components."""
    if not fits:
        return
    dimension = "creativity" if "creativity" in fits else sorted(fits)[0]
    components = components_from_fit(fits[dimension])
    effect = PLAN_EFFECT_D * components.total_sd
    deployments = int(ratings["deployment"].nunique()) if "deployment" in ratings else 1
    page.h("Planning the next study: raters and items for 80% power")
    page.p(
        f"Power of the condition contrast in a study with {deployments} deployment(s), every rater rating each "
        f"item's base and steered text, with the variance components of '{dimension}' in this study, random "
        f"slopes included ({fits[dimension]['formula']}), for an effect of d = {PLAN_EFFECT_D} ({effect:.1f} "
        "points): the exact SE at those components and its Satterthwaite df (analytic, checked against "
        "simulation). `python -m analysis plan` gives the same for any effect, grid, or a pilot's export.",
        "note",
    )
    table = design_advice(
        components=components, effect_points=effect, raters_per_deployment=[10, 20, 30], items=[3, 5, 8],
        n_deployments=deployments, seed=seed,
    )  # fmt: skip
    page.figure(plot_design_advice(table), "planning", "power against raters per deployment, per number of items")
    shown = ["raters_per_deployment", "items", "ratings_per_dimension", "se", "df", "power", "reaches_target"]
    page.table(table[shown], "planning")


def _robustness_section(page: _Page, ratings: pd.DataFrame, *, reference: str, n_boot: int, seed: int) -> None:
    page.h("Robustness")
    page.p("Proportional-odds model (scores binned to ordered levels), two-way cluster-robust SEs:", "note")
    page.table(ordinal_sensitivity(ratings, reference=reference), "ordinal_sensitivity")
    if n_boot > 0:
        page.p(f"Rater-clustered bootstrap ({n_boot} resamples of raters within deployment), percentile CI:", "note")
        page.table(rater_bootstrap(ratings, n_boot=n_boot, reference=reference, seed=seed), "rater_bootstrap")


def _pooled_section(page: _Page, effects: _Effects) -> None:
    page.h("Pooled model across deployments (method x task)")
    if not effects.pooled_fits:
        page.p(f"Not fitted: {effects.pooled_error}", "warnings")
        return
    formulas = "; ".join(f"{dim}: {fit['formula']}" for dim, fit in effects.pooled_fits.items())
    page.p(
        f"The effect of each method within each task ({formulas}); cells_equal: Wald test that all method x task "
        "effects are equal.",
        "note",
    )
    page.table(_pooled_rows(effects.pooled_fits), "pooled_model")
    page.table(_model_table(effects.pooled_fits), "pooled_models")
    page.p("Method contrasts within each task (and averaged over tasks), t on Satterthwaite df:", "note")
    page.table(_contrast_rows(effects.pooled_fits), "method_contrasts")


def _metrics_section(
    page: _Page, stimuli: pd.DataFrame | None, *, compute_metrics: bool, embedder: Any, seed: int
) -> pd.DataFrame | None:
    """Automatic metrics per condition; returns the stimuli with their metrics (computed if missing)."""
    if stimuli is None or not len(stimuli):
        return None
    metrics = stimuli
    stimulus_warnings: list[str] = []
    # An export made before the metrics task ran has the columns, but empty.
    missing = [c for c in METRIC_COLUMNS if c not in stimuli.columns or stimuli[c].isna().all()]
    if missing and compute_metrics and {"text", "task"} <= set(stimuli.columns):
        with collect_warnings() as found:
            computed = stimulus_metrics(stimuli, embedder=embedder, item_text_col="item_text")
        stimulus_warnings += found
        metrics = stimuli.drop(columns=missing, errors="ignore").join(computed[missing])
    page.h("Automatic metrics by condition")
    auto = _automatic_metrics(metrics, seed=seed)
    if auto is None:
        page.p("(no metric columns: pass a stimulus table with text and task, or with metric columns)", "note")
    else:
        page.p("Mean per condition x item, then mean over items with a bootstrap 95% CI resampling items.", "note")
        page.table(auto, "automatic_metrics")
    page.warnings(stimulus_warnings)
    if "dat_valid" in metrics and metrics["dat_valid"].notna().any():
        page.p("DAT answers: invalid answers (fewer than 7 valid words) are counted, not dropped.", "note")
        page.table(dat_summary(_dat_rows(metrics)), "dat_validity")
    return metrics


def _novelty_utility_section(page: _Page, ratings: pd.DataFrame, metrics: pd.DataFrame | None) -> None:
    """Novelty against utility, when the study has a utility measure (a rated usefulness or utility
    dimension, or DAT answers' validity); without one the section is left out, not shown empty."""
    nu = _novelty_utility(ratings, metrics)
    if nu is None:
        return
    page.h("Novelty and utility")
    ax = plot_novelty_utility(nu, label_cols=[c for c in nu.columns if c in ("condition", "strength")])
    page.figure(ax.figure, "novelty_utility", "novelty against utility")
    page.table(nu, "novelty_utility")


def _rater_quality_section(page: _Page, raw: pd.DataFrame) -> None:
    """Per-rater checks over the whole export, excluded raters included."""
    page.h("Rater quality")
    quality = rater_quality(raw)
    page.p(
        "consensus_r: correlation with the other raters' mean for the same stimulus; low values or a high "
        "share_modal_score (straight-lining) flag raters to inspect.",
        "note",
    )
    page.table(quality.describe().T.reset_index().rename(columns={"index": "measure"}), "rater_quality_summary")
    quality.to_csv(page.out / "rater_quality.csv", index=False)


def model_rows(fits: dict[str, Any]) -> list[dict[str, Any]]:
    """Per dimension: the model fitted, where it started, and each simplification step with its reason."""
    rows = []
    for dim, fit in fits.items():
        selection = fit.get("model_selection", {})
        rows.append(
            {
                "dimension": dim,
                "formula": fit.get("formula", ""),
                "started_from": selection.get("started_from", ""),
                "steps": selection.get("steps", []),
                "singular": selection.get("singular", False),
            }
        )
    return rows


def _model_table(fits: dict[str, Any]) -> pd.DataFrame:
    rows = model_rows(fits)
    for row in rows:
        row["steps"] = "; ".join(f"{s['action']} ({s['reason']})" for s in row["steps"]) or "none"
    return pd.DataFrame(rows)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [] if df is None or df.empty else json_safe(df.to_dict("records"))


def _pooled_fits(ratings: pd.DataFrame, reference: str, options: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The pooled method x task fits, or None and the reason (never dropped silently)."""
    if not {"task", "deployment"} <= set(ratings.columns):
        return None, warning_text(PooledModelWarning("no pooled model: the ratings have no task/deployment columns"))
    if ratings["deployment"].nunique() < 2:
        return None, warning_text(PooledModelWarning("no pooled model: only one deployment"))
    try:
        return fit_pooled(ratings, reference=reference, **options), ""
    except ValueError as exc:
        warning = PooledModelWarning(f"the pooled method x task model could not be fitted: {exc}")
        warnings.warn(warning, stacklevel=2)
        return None, warning_text(warning)


def _pooled_rows(fits: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for dim, fit in fits.items():
        for t in fit["fixed_effects"]:
            if ":condition[" in t["term"]:
                rows.append({"dimension": dim, **t, **{f"cells_equal_{k}": v for k, v in fit["interaction"].items()}})
    return pd.DataFrame(rows)


def _contrast_rows(fits: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{"dimension": dim, **c} for dim, fit in fits.items() for c in fit.get("contrasts", [])])


def _with_method_contrasts(main: pd.DataFrame, pooled_fits: dict[str, Any] | None) -> pd.DataFrame:
    """Add, next to each steered-vs-base effect, its contrast with the other steering method."""
    cols = ["contrast", "contrast_estimate", "contrast_ci_low", "contrast_ci_high", "contrast_p"]
    main = main.copy()
    for col in cols:
        main[col] = None if col == "contrast" else np.nan
    if not pooled_fits or main.empty:
        return main
    contrasts = _contrast_rows(pooled_fits)
    if contrasts.empty:
        return main
    n_tasks = contrasts.groupby(["dimension", "contrast"])["task"].transform("size")
    # One contrast per dimension and pair: the mean over tasks, or the only task.
    chosen = contrasts[(contrasts["task"] == "all tasks (mean)") | (n_tasks == 1)]
    for i, row in main.iterrows():
        method = condition_of(row["term"])
        for _, c in chosen[chosen["dimension"] == row["dimension"]].iterrows():
            a, b = c["contrast"].split(" - ")
            if method not in (a, b):
                continue
            sign = 1.0 if method == a else -1.0
            other = b if method == a else a
            lo, hi = sorted((sign * c["ci_low"], sign * c["ci_high"]))
            main.loc[i, cols] = [f"{method} - {other}", sign * c["estimate"], lo, hi, c["p"]]
            break
    return main


def _dat_frame(dat: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for r in dat["rows"]:
        flat = {}
        for k, v in r.items():
            if k.endswith("_ci"):
                flat[f"{k}_low"], flat[f"{k}_high"] = v
            else:
                flat[k] = v
        rows.append(flat)
    return pd.DataFrame(rows)


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) >= 10 ** (-digits) or x == 0 else f"{x:.1e}"
    return str(x)


def _ci_text(lo: Any, hi: Any, digits: int = 2) -> str:
    """``[lo, hi]`` (or a dash when unknown)."""
    return "–" if lo is None or hi is None else f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    body = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    return "\n".join([line, *body]) if rows else line + "\n(no rows)"


TEXT_METRICS = ("distinct_2", "vendi_score", "mean_pairwise_similarity", "share_clusters", "dat_distinct_word_share")


def format_result_tables(results: dict[str, Any]) -> str:
    """The three result tables of ``results.json`` as plain text for a terminal.

    ``results`` is ``{"effects": ..., "diversity": ..., "dat": ...}`` as written by
    :func:`write_report`. Diversity shows the pooled rows of the main metrics
    (``TEXT_METRICS``); every warning is listed under its table; a study without a DAT
    task (``dat`` null) has no DAT table. Simulated ratings are announced above everything.
    """
    effects = results.get("effects") or {}
    diversity = results.get("diversity") or {}
    dat = results.get("dat")
    parts = []
    if effects.get("simulated"):
        bar = "!" * len(SIMULATED_BANNER)
        parts.append(f"{bar}\n{SIMULATED_BANNER}\n{bar}")
    parts += [_effects_text(effects), _warning_lines(effects.get("warnings", []))]
    parts += [_diversity_text(diversity), _warning_lines(diversity.get("warnings", []))]
    if dat is not None:
        parts += [_dat_text(dat), _warning_lines(dat.get("warnings", []))]
    return "\n\n".join(p for p in parts if p) + "\n"


def _effects_text(effects: dict[str, Any]) -> str:
    rows = [
        [
            str(r.get("dimension")),
            condition_of(r.get("term", "")) + " - base",
            _fmt(r.get("estimate")),
            _ci_text(r.get("ci_low"), r.get("ci_high")),
            _fmt(r.get("p_holm"), 4),
            _fmt(r.get("d_z")),
            str(r.get("contrast") or "–"),
            _fmt(r.get("contrast_estimate")),
            _ci_text(r.get("contrast_ci_low"), r.get("contrast_ci_high")),
        ]
        for r in effects.get("rows", [])
    ]
    headers = ["dimension", "effect", "estimate", "95% CI", "p_holm", "d_z", "vs other method", "diff", "95% CI"]
    models = [f"  {m['dimension']}: {m['formula']}" + _steps_text(m) for m in effects.get("models", [])]
    return (
        "1. Rated effects (mixed model per dimension; scale points)\n"
        + _text_table(headers, rows)
        + (
            "\nmodels (maximal structure of the design, simplified where singular):\n" + "\n".join(models)
            if models
            else ""
        )
    )


def _steps_text(model: dict[str, Any]) -> str:
    steps = model.get("steps") or []
    if not steps:
        return ""
    return "".join(f"\n      {s['action']} ({s['reason']})" for s in steps)


def _diversity_text(diversity: dict[str, Any]) -> str:
    rows = [
        [str(r["condition"]), str(r["metric"]), _fmt(r["difference"], 3), _ci_text(r["ci_low"], r["ci_high"], 3)]
        for r in diversity.get("pooled", [])
        if r["metric"] in TEXT_METRICS
    ]
    return "2. Mode collapse: steered minus base, pooled over models (bootstrap 95% CI)\n" + _text_table(
        ["condition", "metric", "difference", "95% CI"], rows
    )


def _dat_text(dat: dict[str, Any]) -> str:
    rows = [
        [
            str(r["model"]),
            str(r["condition"]),
            str(r["n"]),
            _fmt(r["valid_share"]),
            _ci_text(r["valid_share_ci"][0], r["valid_share_ci"][1]),
            _fmt(r["score"], 1),
            _ci_text(r["score_ci"][0], r["score_ci"][1], 1),
            _fmt(r["percentile"], 1),
            _ci_text(r["percentile_ci"][0], r["percentile_ci"][1], 1),
            _fmt(r["percentile_gain"], 1),
            _ci_text(r["percentile_gain_ci"][0], r["percentile_gain_ci"][1], 1),
        ]
        for r in dat.get("rows", [])
    ]
    headers = ["model", "condition", "n", "valid", "95% CI", "score", "95% CI", "pctile", "95% CI", "gain", "95% CI"]
    return "3. DAT per model and condition\n" + _text_table(headers, rows) + f"\nnorms: {dat.get('norms', 'none')}"


def _warning_lines(items: list[str]) -> str:
    return "\n".join(f"  warning: {w}" for w in items)


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


def _diversity_plot(pooled: pd.DataFrame):
    """Steered minus base per metric and condition, with the bootstrap CI; zero = no change."""
    plt = _plt()
    metrics = [
        m
        for m in ("mean_pairwise_similarity", "vendi_score", "distinct_2", "share_clusters")
        if m in set(pooled["metric"])
    ]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(3.2 * max(1, len(metrics)), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        d = pooled[pooled["metric"] == metric]
        x = np.arange(len(d))
        est = d["difference"].to_numpy(float)
        lo, hi = d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float)
        ax.errorbar(x, est, yerr=[np.nan_to_num(est - lo), np.nan_to_num(hi - est)], fmt="o", capsize=3)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(x, d["condition"].astype(str), rotation=30)
        ax.set_title(f"{metric}: steered - base", fontsize=9)
    fig.tight_layout()
    return fig


def _dat_plot(dat: dict[str, Any]):
    """Valid share per model and condition, and the percentile gain over base (or, without percentiles, the score)."""
    frame = _dat_frame(dat)
    if frame.empty:
        return None
    gains = frame[frame["percentile_gain"].notna()] if "percentile_gain" in frame else frame.iloc[:0]
    if len(gains):
        second, column, label = gains, "percentile_gain", "human percentile gain over base"
    else:
        second, column, label = frame, "score", "mean DAT score of valid answers (no percentiles)"
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), squeeze=False)
    for ax, rows, col, title in (
        (axes[0][0], frame, "valid_share", "share of valid answers"),
        (axes[0][1], second, column, label),
    ):
        est = pd.to_numeric(rows[col], errors="coerce").to_numpy(float)
        lo = pd.to_numeric(rows[f"{col}_ci_low"], errors="coerce").to_numpy(float)
        hi = pd.to_numeric(rows[f"{col}_ci_high"], errors="coerce").to_numpy(float)
        x = np.arange(len(rows))
        ax.errorbar(x, est, yerr=[np.nan_to_num(est - lo), np.nan_to_num(hi - est)], fmt="o", capsize=3)
        ax.set_xticks(x, [f"{m}\n{c}" for m, c in zip(rows["model"], rows["condition"], strict=True)], fontsize=7)
        ax.set_title(title, fontsize=9)
        if col == "percentile_gain":
            ax.axhline(0, color="grey", lw=0.8)
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
