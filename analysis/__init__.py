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

from analysis.dat_table import dat_table
from analysis.metrics import diversity_by_group, diversity_summary, stimulus_metrics
from analysis.mixed import condition_effects, fit_mixed, prepare_ratings
from analysis.mode_collapse import diversity_differences

__all__ = [
    "condition_effects",
    "dat_table",
    "diversity_by_group",
    "diversity_differences",
    "diversity_summary",
    "fit_mixed",
    "format_result_tables",
    "prepare_ratings",
    "stimulus_metrics",
    "write_report",
]


def __getattr__(name: str):
    # matplotlib is only needed for the report: import it on first use.
    if name in ("write_report", "format_result_tables"):
        from analysis import report

        return getattr(report, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
