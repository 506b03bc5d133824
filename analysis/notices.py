"""Named warnings: every fallback of the analysis is one of these, never a silent switch.

Each warning class names one situation. Functions that write JSON or a report collect
them with :func:`collect_warnings` and store them as ``"<Name>: <message>"`` strings, so
a reader sees the same text in ``python -m analysis mixed`` output, in ``results.json``
and in the report.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


class AnalysisWarning(UserWarning):
    """Base class: a result was computed, but differently from the default, or is weaker."""


class ZeroVectorWarning(AnalysisWarning):
    """An embedding vector is all zeros: it has no direction, so its similarities are undefined (NaN)."""


class SingularHessianWarning(AnalysisWarning):
    """The Hessian of the REML deviance could not be inverted: Satterthwaite df unknown, Wald z used."""


class MissingReferenceWarning(AnalysisWarning):
    """The default reference condition ``base`` is absent: another condition was used as reference."""


class CopiedStimuliWarning(AnalysisWarning):
    """Stimuli copied into twin deployments without a ``text_id``: counted as independent."""


class PooledModelWarning(AnalysisWarning):
    """The pooled method x task model could not be fitted: the report says why instead of dropping it."""


class NoPercentileWarning(AnalysisWarning):
    """DAT human percentiles cannot honestly be given (not the reference embedding)."""


class ApproximateNormsWarning(AnalysisWarning):
    """DAT percentiles use the shipped approximate human norms, not the published distribution."""


class ItemTextWarning(AnalysisWarning):
    """AUT originality needs the item text (the object), which the table lacks."""


class SmallSampleWarning(AnalysisWarning):
    """Too few units for a bootstrap confidence interval."""


class ConvergenceWarning(AnalysisWarning):
    """The optimiser did not report convergence."""


class SingularFitWarning(AnalysisWarning):
    """The final mixed model is singular (a variance at 0 or a correlation at ±1), as lme4's ``isSingular``."""


def warning_text(w: warnings.WarningMessage | Warning) -> str:
    """``"<Name>: <message>"`` for a caught warning or a warning instance."""
    message = w.message if isinstance(w, warnings.WarningMessage) else w
    return f"{type(message).__name__}: {message}"


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Collect the :class:`AnalysisWarning` s raised inside the block as ``"Name: message"`` strings.

    Each distinct text is kept once, in order. Other warnings pass through unchanged.
    """
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        yield found
    for w in caught:
        if issubclass(w.category, AnalysisWarning):
            text = warning_text(w)
            if text not in found:
                found.append(text)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
