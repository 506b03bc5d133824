"""Statistics core of the creativity study platform: pure functions on long DataFrames.

Never imports Django, and never imports torch at import time (the web process imports
this package): the embedding model is loaded lazily inside the functions that need it.

Main entry points:

- :func:`analysis.metrics.stimulus_metrics`, :func:`analysis.metrics.diversity_by_group`
- :func:`analysis.mixed.fit_mixed`, :func:`analysis.mixed.condition_effects`
- :func:`analysis.report.write_report`
"""

from analysis.metrics import diversity_by_group, diversity_summary, stimulus_metrics
from analysis.mixed import condition_effects, fit_mixed, prepare_ratings

__all__ = [
    "condition_effects",
    "diversity_by_group",
    "diversity_summary",
    "fit_mixed",
    "prepare_ratings",
    "stimulus_metrics",
    "write_report",
]


def __getattr__(name: str):
    # matplotlib is only needed for the report: import it on first use.
    if name == "write_report":
        from analysis.report import write_report

        return write_report
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
