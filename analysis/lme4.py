"""The same model fitted by R's lme4 and lmerTest through ``Rscript``: the reference to validate against."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.formula import CONDITION, STEERED, parse_formula

# R writes its numbers with 17 significant digits into a small JSON document by hand, so that
# nothing beyond lme4 and lmerTest (Debian's r-cran-lme4, r-cran-lmertest) is needed.
_SCRIPT = r"""
suppressMessages({library(lme4); library(lmerTest)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
d$condition <- relevel(factor(d$condition), ref = args[3])
for (v in c("rater", "stimulus", "item", "deployment", "task")) if (v %in% names(d)) d[[v]] <- factor(d[[v]])
f <- as.formula(args[4])
ctrl <- if (args[5] == "tight") {
  lmerControl(optCtrl = list(xtol_abs = 1e-10, ftol_abs = 1e-12, xtol_rel = 0, ftol_rel = 0, maxeval = 1e5))
} else lmerControl()
lme4_seconds <- system.time(lme4::lmer(f, data = d, REML = TRUE, control = ctrl))[["elapsed"]]
fit_seconds <- system.time(m <- lmerTest::lmer(f, data = d, REML = TRUE, control = ctrl))[["elapsed"]]
co <- summary(m)$coefficients
vc <- as.data.frame(VarCorr(m))
num <- function(x) ifelse(is.na(x), "null", sprintf("%.17g", x))
str <- function(x) ifelse(is.na(x), "null", sprintf('"%s"', x))
named <- function(values) paste0("{", paste(sprintf('"%s": %s', rownames(co), num(values)), collapse = ", "), "}")
rows <- paste(sprintf('{"grp": %s, "var1": %s, "var2": %s, "vcov": %s}', str(vc$grp), str(vc$var1), str(vc$var2),
  num(vc$vcov)), collapse = ", ")
writeLines(paste0(
  '{"fixed": ', named(co[, "Estimate"]), ', "se": ', named(co[, "Std. Error"]), ', "df": ', named(co[, "df"]),
  ', "p": ', named(co[, "Pr(>|t|)"]), ', "vc": [', rows, '], "singular": ', tolower(isSingular(m)),
  ', "reml": ', num(REMLcrit(m)), ', "lme4_seconds": ', num(lme4_seconds), ', "seconds": ', num(fit_seconds), "}"
), args[2])
"""


def lme4_available() -> tuple[bool, str]:
    """Whether ``Rscript`` with lme4 and lmerTest can be run, and why not."""
    if shutil.which("Rscript") is None:
        return False, "Rscript not found (install r-base-core, r-cran-lme4 and r-cran-lmertest)"
    # Fixed arguments; Rscript is found on PATH (shutil.which above), as R installs it.
    probe = subprocess.run(
        ["Rscript", "-e", "library(lme4); library(lmerTest)"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        return False, "R packages lme4 and lmerTest not installed (apt-get install r-cran-lme4 r-cran-lmertest)"
    return True, ""


def intercepts_formula(*, item_effect: bool = False, deployment_effect: bool = False) -> str:
    formula = "score ~ condition + (1 | rater) + (1 | stimulus)"
    return formula + " + (1 | item)" * item_effect + " + (1 | deployment)" * deployment_effect


def r_formula(formula: str, conditions: list[str], reference: str) -> str:
    """The formula as lme4 reads it: ``condition`` in a random term becomes one numeric dummy per
    non-reference condition (``cond_<level>``), so that ``||`` splits it as it splits other slopes."""
    dummies = " + ".join(f"cond_{_r_name(c)}" for c in conditions if c != reference)

    def expand(match: re.Match[str]) -> str:
        lhs = re.sub(rf"\b{CONDITION}\b", dummies, match.group(1))
        return f"({lhs}{match.group(2)}{match.group(3)})"

    return re.sub(r"\(([^()|]*)(\|\|?)([^()|]*)\)", expand, formula)


def _r_name(level: str) -> str:
    return re.sub(r"\W", "_", level)


def fit_lme4(
    ratings: pd.DataFrame,
    *,
    formula: str | None = None,
    reference: str = "base",
    item_effect: bool = False,
    deployment_effect: bool = False,
    score_col: str = "score",
    tight: bool = True,
) -> dict[str, Any]:
    """Fit ``formula`` (default: random intercepts, see :func:`intercepts_formula`) with lme4 and lmerTest.

    ``ratings`` holds one dimension with the columns the formula names (``rater``, ``stimulus``,
    ``item``, ``deployment``, ``condition``; ``steered`` is derived here). ``tight`` runs lme4's
    optimiser to tolerances far below its defaults, so that a comparison measures the two
    implementations, not where two optimisers happened to stop. Returns ``{"fixed", "se",
    "df", "p": {name: value}, "vc": [{"grp", "var1", "var2", "vcov"}], "singular", "reml",
    "lme4_seconds", "seconds"}``; lme4 names the contrast ``condition<level>``.
    """
    formula = formula or intercepts_formula(item_effect=item_effect, deployment_effect=deployment_effect)
    parsed = parse_formula(formula)
    conditions = sorted(ratings["condition"].astype(str).unique())
    used = {t.group for t in parsed.random} | {e for t in parsed.random for e in t.slopes}
    used |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", parsed.fixed))
    data = ratings[[c for c in ratings.columns if c in used | {"condition"}]].copy()
    data["score"] = ratings[score_col].to_numpy(float)
    data[STEERED] = (ratings["condition"].astype(str) != reference).astype(float).to_numpy()
    for level in conditions:
        data[f"cond_{_r_name(level)}"] = (ratings["condition"].astype(str) == level).astype(float).to_numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path, out, script = Path(tmp, "d.csv"), Path(tmp, "out.json"), Path(tmp, "fit.R")
        data.to_csv(path, index=False)
        script.write_text(_SCRIPT)
        command = [str(script), str(path), str(out), reference, r_formula(formula, conditions, reference)]
        # A list of arguments, no shell: the reference level and formula reach R as plain strings.
        proc = subprocess.run(  # noqa: S603
            ["Rscript", *command, "tight" if tight else "default"],  # noqa: S607
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"lme4 failed: {proc.stderr.strip()[-500:]}")
        return json.loads(out.read_text())


def variance_of(ref: dict[str, Any], group: str, term: str, other: str | None = None) -> float:
    """A variance (or, with ``other``, a covariance) from lme4's ``VarCorr`` rows; our names:
    ``(Intercept)``, ``steered``, ``condition[T.<level>]`` (lme4: ``cond_<level>``)."""

    def r(name: str) -> str:
        return f"cond_{_r_name(name[len('condition[T.') : -1])}" if name.startswith("condition[T.") else name

    for row in ref["vc"]:
        # lme4 splits an uncorrelated term (1 + x || g) into groups g, g.1, ...
        if row["grp"] != group and not re.fullmatch(rf"{re.escape(group)}\.\d+", str(row["grp"])):
            continue
        pair = {row["var1"], row["var2"]}
        if (other is None and row["var1"] == r(term) and row["var2"] is None) or (
            other is not None and pair == {r(term), r(other)}
        ):
            return float(row["vcov"])
    raise KeyError(f"lme4 has no variance of {term!r}{f' and {other!r}' if other else ''} by {group!r}")
