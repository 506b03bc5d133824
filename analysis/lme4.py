"""The same model fitted by R's lme4 through ``Rscript``: the reference to validate against."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
d$condition <- relevel(factor(d$condition), ref = args[3])
for (v in c("rater", "stimulus", "item", "deployment")) if (v %in% names(d)) d[[v]] <- factor(d[[v]])
f <- as.formula(args[4])
fit_time <- system.time(m <- lmer(f, data = d, REML = TRUE))[["elapsed"]]
vc <- as.data.frame(VarCorr(m))
out <- list(
  fixed = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
  vc = setNames(as.list(vc$vcov), vc$grp), seconds = fit_time, reml = REMLcrit(m)
)
writeLines(paste0("{", paste(
  sprintf('"%s": %s', names(out), sapply(out, function(x) {
    if (is.list(x)) paste0("{", paste(sprintf('"%s": %.17g', names(x), unlist(x)), collapse = ", "), "}")
    else sprintf("%.17g", x)
  })), collapse = ", "), "}"), args[2])
"""


def lme4_available() -> tuple[bool, str]:
    """Whether ``Rscript`` with lme4 can be run, and why not."""
    if shutil.which("Rscript") is None:
        return False, "Rscript not found (install r-base-core and r-cran-lme4)"
    # Fixed arguments; Rscript is found on PATH (shutil.which above), as R installs it.
    probe = subprocess.run(
        ["Rscript", "-e", "library(lme4)"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        return False, "R package lme4 not installed (apt-get install r-cran-lme4)"
    return True, ""


def fit_lme4(
    ratings: pd.DataFrame,
    *,
    reference: str = "base",
    item_effect: bool = False,
    deployment_effect: bool = False,
    score_col: str = "score",
) -> dict[str, Any]:
    """Fit ``score ~ condition + (1|rater) + (1|stimulus) [+ (1|item)] [+ (1|deployment)]`` with lme4.

    ``ratings`` holds one dimension. Returns ``{"fixed": {name: est}, "se": {...},
    "vc": {"rater", "stimulus", ..., "Residual"}, "seconds": lmer time, "reml": criterion}``;
    lme4 names the contrast ``condition<level>``.
    """
    formula = "score ~ condition + (1 | rater) + (1 | stimulus)"
    formula += " + (1 | item)" * item_effect + " + (1 | deployment)" * deployment_effect
    cols = ["rater", "stimulus", "condition"] + ["item"] * item_effect + ["deployment"] * deployment_effect
    with tempfile.TemporaryDirectory() as tmp:
        data, out, script = Path(tmp, "d.csv"), Path(tmp, "out.json"), Path(tmp, "fit.R")
        ratings[cols].assign(score=ratings[score_col].to_numpy(float)).to_csv(data, index=False)
        script.write_text(_SCRIPT)
        # A list of arguments, no shell: the reference level and formula reach R as plain strings.
        proc = subprocess.run(  # noqa: S603
            ["Rscript", str(script), str(data), str(out), reference, formula],  # noqa: S607
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"lme4 failed: {proc.stderr.strip()[-500:]}")
        return json.loads(out.read_text())
