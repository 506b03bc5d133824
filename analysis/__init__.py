"""Statistics core of the creativity study platform: pure functions on long DataFrames.

Never imports Django, and never imports torch at import time (the web process imports
this package): the embedding model is loaded lazily inside the functions that need it.

Main entry points:

- :func:`analysis.metrics.stimulus_metrics`, :func:`analysis.metrics.diversity_by_group`
- the paper's three results: :func:`analysis.diversity_differences` (mode collapse,
  steered minus base), :func:`analysis.dat_table` (DAT valid share, score, percentile
  gain), :func:`analysis.mixed.condition_effects` (rated effects)
- :func:`analysis.report.write_report` and :func:`analysis.report.format_result_tables`
"""

import importlib
from typing import Any

# Each public name and the module that defines it. Imported on first use, so that importing
# one small part (``analysis.parsers`` from the generation library, ``analysis.cli``'s
# ``UsageError``) does not load pandas, scipy and statsmodels with it.
_EXPORTS = {
    "condition_effects": "analysis.mixed",
    "dat_table": "analysis.dat_results",
    "diversity_by_group": "analysis.metrics",
    "diversity_differences": "analysis.mode_collapse",
    "diversity_summary": "analysis.metrics",
    "fit_mixed": "analysis.mixed",
    "format_result_tables": "analysis.report",
    "prepare_ratings": "analysis.mixed",
    "stimulus_metrics": "analysis.metrics",
    "write_report": "analysis.report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value
