"""The report's opening page: each finding as a sentence with its estimate, CI and model, then its limits.

Written like the results section of a paper about this one study, and generated from the
numbers the report computed (never from fixed text): the rated effect of each condition on
each dimension (the mixed model's final formula after its ``model_selection``), mode collapse
(steered minus base diversity) and the DAT gain, each with the figure that carries it; then
what the data cannot say (a non-significant effect, the width of the CIs, simplified singular
fits, few items, excluded or kept raters). ``results.json["summary"]`` holds the same.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ALPHA = 0.05
# Below this many Satterthwaite df, the CI is wide because few units (items) estimate the effect.
LOW_DF = 20
DIVERSITY_SHOWN = {
    "mean_pairwise_similarity": "mean pairwise similarity",
    "vendi_score": "Vendi score",
    "distinct_2": "distinct-2",
}


@dataclass(frozen=True)
class Scale:
    """A dimension's rating scale: its lowest and highest score."""

    low: float
    high: float

    @property
    def label(self) -> str:
        return f"{self.low:g}-{self.high:g}"

    @property
    def discrete(self) -> bool:
        """A Likert scale (a few whole points), drawn as bars on its points, not as a 0-100 histogram."""
        return self.high - self.low <= 10 and float(self.low).is_integer() and float(self.high).is_integer()


def dimension_scales(ratings: pd.DataFrame) -> dict[str, Scale]:
    """Each dimension's scale: the export's ``scale_min``/``scale_max`` (the study spec's), else the scores' range."""
    scales = {}
    for dim, df in ratings.groupby("dimension", sort=True):
        low, high = float(df["score"].min()), float(df["score"].max())
        if {"scale_min", "scale_max"} <= set(df.columns):
            given_low = pd.to_numeric(df["scale_min"], errors="coerce").dropna()
            given_high = pd.to_numeric(df["scale_max"], errors="coerce").dropna()
            if len(given_low) and len(given_high):
                low, high = float(given_low.min()), float(given_high.max())
        scales[str(dim)] = Scale(low, high)
    return scales


@dataclass
class DataFacts:
    """What was collected, what was analysed, and who the preprocessing left out (or kept)."""

    ratings_collected: int
    raters_collected: int
    ratings_analysed: int
    raters_analysed: int
    excluded_raters: dict[str, int]
    pilot: str  # "excluded", "kept" or "none" (no pilot raters in the export)
    simulated_raters: int
    n_items: int
    deployments: int

    @classmethod
    def of(cls, raw: pd.DataFrame, analysed: pd.DataFrame, *, exclude_pilot: bool) -> DataFacts:
        """The facts of an export and of the rows :func:`analysis.mixed.prepare_ratings` kept."""
        pilot_raters = _raters_with(raw, "pilot")
        return cls(
            ratings_collected=len(raw),
            raters_collected=int(raw["rater"].nunique()),
            ratings_analysed=len(analysed),
            raters_analysed=int(analysed["rater"].nunique()),
            excluded_raters={why: n for why, n in analysed.attrs.get("excluded_raters", {}).items() if n},
            pilot="none" if not pilot_raters else ("excluded" if exclude_pilot else "kept"),
            simulated_raters=_raters_with(analysed, "simulated"),
            n_items=int(analysed["item"].nunique()) if "item" in analysed else 0,
            deployments=int(analysed["deployment"].nunique()) if "deployment" in analysed else 1,
        )

    def sentence(self) -> str:
        excluded = ", ".join(f"{n} {why}" for why, n in self.excluded_raters.items() if n) or "none"
        return (
            f"{self.ratings_analysed} ratings analysed of {self.ratings_collected} collected, by "
            f"{self.raters_analysed} of {self.raters_collected} raters (raters excluded: {excluded}), "
            f"over {self.n_items} item(s) in {self.deployments} deployment(s)."
        )


def _raters_with(ratings: pd.DataFrame, flag: str) -> int:
    if flag not in ratings.columns or ratings.empty:
        return 0
    return int(ratings.loc[ratings[flag].fillna(False).astype(bool), "rater"].nunique())


@dataclass
class Finding:
    """One result in one sentence, with the numbers it states and where they come from."""

    result: str  # "rated effect", "method contrast", "mode collapse" or "DAT"
    label: str  # what was compared, e.g. "originality: weight - base"
    sentence: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    model: str
    figure: str | None = None
    significant: bool | None = None
    dimension: str | None = None


@dataclass
class Summary:
    """The opening page: the study, its data, the findings and what the data cannot say."""

    study: str
    data: DataFacts
    findings: list[Finding] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """``results.json["summary"]``."""
        return {
            "study": self.study,
            "data": vars(self.data) | {"sentence": self.data.sentence()},
            "findings": [vars(f) for f in self.findings],
            "limits": self.limits,
        }


def _num(x: float | None, digits: int = 2) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.{digits}f}"


def _signed(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def _p_text(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "p unknown"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _finite(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def condition_of(term: str) -> str:
    """``condition[T.weight]`` -> ``weight``."""
    return str(term).split("T.")[-1].rstrip("]")


def effect_findings(
    main: pd.DataFrame,
    fits: Mapping[str, Mapping[str, Any]],
    *,
    references: Mapping[str, str],
    scales: Mapping[str, Scale],
    figure: str | None,
) -> list[Finding]:
    """Per dimension and steered condition: the fitted effect against the reference, by the final model."""
    findings = []
    n_dims = main["dimension"].nunique() if len(main) else 0
    for row in main.to_dict("records"):
        dim, fit = str(row["dimension"]), fits[str(row["dimension"])]
        term = next(t for t in fit["fixed_effects"] if t["term"] == row["term"])
        estimate, low, high = float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"])
        p_holm = _finite(row.get("p_holm"))
        significant = p_holm is not None and p_holm < ALPHA
        verdict = (
            "a difference at the 5% level after Holm's correction"
            if significant
            else "not significant at the 5% level after Holm's correction"
        )
        scale = scales.get(dim)
        findings.append(
            Finding(
                result="rated effect",
                label=f"{dim}: {condition_of(row['term'])} - {references.get(dim, 'reference')}",
                sentence=(
                    f"{dim.capitalize()}: '{condition_of(row['term'])}' texts were rated {_num(abs(estimate))} points "
                    f"{'higher' if estimate >= 0 else 'lower'} than '{references.get(dim, 'reference')}' texts"
                    + (f" on the {scale.label} scale" if scale else "")
                    + f" (95% CI {_num(low)} to {_num(high)}; t({_num(term.get('df'), 1)}), "
                    f"{_p_text(_finite(row.get('p')))}, Holm-adjusted over {n_dims} dimension(s) "
                    f"{_p_text(p_holm)}; d_z = {_num(_finite(row.get('d_z')))}): {verdict}. "
                    f"Model: {fit['formula']}."
                ),
                estimate=estimate,
                ci_low=low,
                ci_high=high,
                model=str(fit["formula"]),
                figure=figure,
                significant=significant,
                dimension=dim,
            )
        )
    return findings


def contrast_findings(main: pd.DataFrame, pooled_fits: Mapping[str, Mapping[str, Any]] | None) -> list[Finding]:
    """Per dimension: one steering method against the other, from the pooled method x task model (once per pair)."""
    findings: list[Finding] = []
    if not pooled_fits or "contrast" not in main:
        return findings
    for row in main.to_dict("records"):
        contrast, estimate = row.get("contrast"), _finite(row.get("contrast_estimate"))
        if not contrast or estimate is None:
            continue
        first, second = str(contrast).split(" - ")
        if first < second:  # each pair once: "weight - activation", not also its negative
            continue
        low, high = float(row["contrast_ci_low"]), float(row["contrast_ci_high"])
        dim = str(row["dimension"])
        formula = str(pooled_fits[dim]["formula"])
        findings.append(
            Finding(
                result="method contrast",
                label=f"{dim}: {first} - {second}",
                sentence=(
                    f"{dim.capitalize()}, {first} against {second} steering: '{first}' texts were rated "
                    f"{_num(abs(estimate))} points {'higher' if estimate >= 0 else 'lower'} than '{second}' texts "
                    f"(95% CI {_num(low)} to {_num(high)}, "
                    f"{_p_text(_finite(row.get('contrast_p')))}; pooled method x task model: {formula})."
                ),
                estimate=estimate,
                ci_low=low,
                ci_high=high,
                model=formula,
                significant=not low <= 0 <= high,
                dimension=dim,
            )
        )
    return findings


DIVERSITY_MODEL = (
    "steered minus base of the same deployment and item, mean over items, then over models; "
    "bootstrap 95% CIs resampling models, then items"
)


def diversity_findings(diversity: Mapping[str, Any] | None, *, figure: str | None) -> list[Finding]:
    """Per steered condition: the change in the main diversity metrics against base, pooled over models."""
    if not diversity or not diversity.get("pooled"):
        return []
    pooled = pd.DataFrame(diversity["pooled"])
    by_model = pd.DataFrame(diversity.get("by_model") or [])
    findings = []
    for key, rows in pooled.groupby("condition", sort=True):
        condition = str(key)
        shown = rows[rows["metric"].isin(list(DIVERSITY_SHOWN))].set_index("metric")
        if shown.empty:
            continue
        ordered = [m for m in DIVERSITY_SHOWN if m in shown.index]
        parts = [
            f"{DIVERSITY_SHOWN[m]} {_signed(_finite(shown.loc[m, 'difference']), 3)} (95% CI "
            f"{_num(_finite(shown.loc[m, 'ci_low']), 3)} to {_num(_finite(shown.loc[m, 'ci_high']), 3)})"
            for m in ordered
        ]
        lead = shown.loc[ordered[0]]
        low, high = _finite(lead["ci_low"]), _finite(lead["ci_high"])
        n_models = by_model.loc[by_model["condition"] == condition, "model"].nunique() if len(by_model) else 0
        changed = low is not None and high is not None and not low <= 0 <= high
        findings.append(
            Finding(
                result="mode collapse",
                label=f"{condition} - base: {DIVERSITY_SHOWN[ordered[0]]}",
                sentence=(
                    f"Mode collapse, '{condition}' against 'base' over {n_models} model(s): " + "; ".join(parts) + ". "
                    "Lower similarity and a higher Vendi score and distinct-2 mean more varied texts; the "
                    f"{DIVERSITY_SHOWN[ordered[0]]} CI {'excludes' if changed else 'includes'} 0. "
                    f"Computed as {DIVERSITY_MODEL}."
                ),
                estimate=_finite(lead["difference"]),
                ci_low=low,
                ci_high=high,
                model=DIVERSITY_MODEL,
                figure=figure,
                significant=changed,
            )
        )
    return findings


def _share(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def dat_findings(dat: Mapping[str, Any] | None, *, figure: str | None) -> list[Finding]:
    """Per model and steered condition: valid answers, and the human-percentile gain over base (or why none)."""
    if not dat or not dat.get("rows"):
        return []
    rows = {(r["model"], r["condition"]): r for r in dat["rows"]}
    model_text = (
        "mean over answers; bootstrap 95% CIs resampling answers within items; gain: steered minus base percentile"
    )
    findings = []
    for (model, condition), row in sorted(rows.items()):
        base = rows.get((model, "base"))
        if condition == "base" or base is None:
            continue
        low, high = row["percentile_gain_ci"]
        gain = row["percentile_gain"]
        valid = (
            f"{_share(row['valid_share'])} of its {row['n']} answers were valid (7+ dictionary words; 95% CI "
            f"{_share(row['valid_share_ci'][0])} to {_share(row['valid_share_ci'][1])}) against "
            f"{_share(base['valid_share'])} of {base['n']} for 'base'"
        )
        if gain is not None:
            outcome = (
                f"its valid answers gained {_num(gain, 1)} human percentile points over 'base' (95% CI "
                f"{_num(_finite(low), 1)} to {_num(_finite(high), 1)}; norms: {dat.get('norms')})"
            )
        else:
            outcome = (
                f"mean score of valid answers {_num(_finite(row['score']), 1)} against "
                f"{_num(_finite(base['score']), 1)}, "
                f"no percentile gain ({dat.get('norms')})"
            )
        findings.append(
            Finding(
                result="DAT",
                label=f"{model}: {condition} - base, human percentile",
                sentence=f"DAT, model {model}, '{condition}': {valid}; {outcome}. Computed as {model_text}.",
                estimate=_finite(gain),
                ci_low=_finite(low),
                ci_high=_finite(high),
                model=model_text,
                figure=figure,
                significant=None if low is None or high is None else not low <= 0 <= high,
            )
        )
    return findings


def limits(
    effects: list[Finding],
    fits: Mapping[str, Mapping[str, Any]],
    data: DataFacts,
    diversity: Mapping[str, Any] | None,
) -> list[str]:
    """What the data cannot say, each point from this study's numbers."""
    found = [
        _not_significant(effects),
        _ci_width(effects, fits),
        _simplified(fits),
        _few_units(effects, fits, data),
        _raters(data),
        _one_model(diversity),
    ]
    return [text for text in found if text]


def _not_significant(effects: list[Finding]) -> str:
    rated = [f for f in effects if f.result == "rated effect"]
    null = [f for f in rated if not f.significant]
    if not null:
        return ""
    listed = "; ".join(f"{f.label} ({_num(f.ci_low)} to {_num(f.ci_high)})" for f in null)
    return (
        f"Not significant: {len(null)} of {len(rated)} rated effects ({listed}). A non-significant result is not "
        "evidence of no effect: every value in its CI, up to the upper end, is consistent with these data."
    )


def _ci_width(effects: list[Finding], fits: Mapping[str, Mapping[str, Any]]) -> str:
    widths, in_sd = [], []
    for f in effects:
        if f.result != "rated effect" or f.ci_low is None or f.ci_high is None:
            continue
        fit = fits.get(f.dimension or "")
        total = sum(fit["variance_components"].values()) if fit else float("nan")
        widths.append(f.ci_high - f.ci_low)
        in_sd.append((f.ci_high - f.ci_low) / 2 / math.sqrt(total) if total > 0 else float("nan"))
    if not widths:
        return ""
    return (
        f"Precision: the 95% CIs of the rated effects are {_num(min(widths))} to {_num(max(widths))} points wide "
        f"(half-widths of {_num(float(np.nanmin(in_sd)))} to {_num(float(np.nanmax(in_sd)))} SD of a rating); "
        "effects smaller than about the half-width cannot be told from zero in this study (the planning section "
        "gives the raters and items that could)."
    )


def _simplified(fits: Mapping[str, Mapping[str, Any]]) -> str:
    simplified, still = [], []
    for dim, fit in fits.items():
        selection = fit.get("model_selection", {})
        steps = selection.get("steps") or []
        if steps:
            simplified.append(f"{dim} ({len(steps)} step(s) to {fit['formula']})")
        if selection.get("singular"):
            still.append(dim)
    if not simplified and not still:
        return (
            "No fit was singular: each dimension kept the maximal random structure its design supports." if fits else ""
        )
    text = ""
    if simplified:
        text = (
            "Singular fits simplified: the maximal model was singular for " + "; ".join(simplified) + ". Its "
            "estimates assume the dropped random slopes or correlations are zero; each step and its reason are in "
            "the model table."
        )
    if still:
        text += f" Still singular after simplification: {', '.join(still)} (variances on the boundary)."
    return text.strip()


def _few_units(effects: list[Finding], fits: Mapping[str, Mapping[str, Any]], data: DataFacts) -> str:
    dfs = [
        t["df"]
        for fit in fits.values()
        for t in fit["fixed_effects"]
        if t["term"] != "Intercept" and _finite(t.get("df")) is not None
    ]
    if not dfs or min(dfs) >= LOW_DF:
        return ""
    return (
        f"Few units: with {data.n_items} item(s) and {data.raters_analysed} raters, the t df of the rated effects "
        f"are {_num(min(dfs), 1)} to {_num(max(dfs), 1)} (Satterthwaite), so the CIs use wide t quantiles; the "
        f"estimates speak for other items only as far as these {data.n_items} represent them."
    )


def _raters(data: DataFacts) -> str:
    excluded = ", ".join(f"{n} {why}" for why, n in data.excluded_raters.items())
    parts = [
        f"Raters: {data.raters_analysed} of {data.raters_collected} analysed; excluded by rule: {excluded or 'none'}."
    ]
    if data.pilot == "excluded":
        parts.append(
            f"{data.excluded_raters.get('pilot', 0)} pilot rater(s) excluded (a pilot tests the pages; "
            "--keep-pilot keeps them)."
        )
    elif data.pilot == "kept":
        parts.append("Pilot raters are kept (--keep-pilot): their ratings count as data here.")
    if data.simulated_raters:
        parts.append(
            f"{data.simulated_raters} of the {data.raters_analysed} analysed raters are simulated, and included: "
            "these numbers test the pipeline, they are not a study result."
        )
    else:
        parts.append("No analysed rater is simulated.")
    return " ".join(parts)


def _one_model(diversity: Mapping[str, Any] | None) -> str:
    by_model = (diversity or {}).get("by_model") or []
    models = sorted({str(r["model"]) for r in by_model})
    if len(models) != 1:
        return ""
    return (
        f"Mode collapse and the DAT come from one model ({models[0]}): their CIs cover its items and samples, "
        "not other models."
    )


RESULT_HEADINGS = {
    "rated effect": "Rated effects",
    "method contrast": "Steering methods compared",
    "mode collapse": "Mode collapse",
    "DAT": "DAT",
}


def summary_html(summary: Summary, figures: Mapping[str, str]) -> str:
    """The opening page: findings by result, their figures (``{png name: caption}``, those written), the limits."""
    parts = [
        "<section class='summary'>",
        f"<h2>Summary: {html.escape(summary.study)}</h2>",
        f"<p>{html.escape(summary.data.sentence())}</p>",
    ]
    for result, heading in RESULT_HEADINGS.items():
        sentences = [f.sentence for f in summary.findings if f.result == result]
        if sentences:
            parts.append(f"<h3>{heading}</h3>")
            parts += [f"<p class='finding'>{html.escape(s)}</p>" for s in sentences]
    if not summary.findings:
        parts.append("<p>No finding could be computed: see the sections below for why.</p>")
    used = [name for name in figures if any(f.figure == name for f in summary.findings)]
    if used:
        parts.append("<div class='figures'>")
        parts += [
            f"<figure class='{'wide' if name == 'forest' else ''}'><a href='{name}.png'>"
            f"<img src='{name}.png' alt='{html.escape(figures[name])}'></a>"
            f"<figcaption>{html.escape(figures[name])}</figcaption></figure>"
            for name in used
        ]
        parts.append("</div>")
    parts.append("<h3>What the data cannot say</h3><ul class='limits'>")
    parts += [f"<li>{html.escape(text)}</li>" for text in summary.limits]
    parts.append("</ul></section><h2>Full results</h2>")
    return "".join(parts)
