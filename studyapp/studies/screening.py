"""Reads for screening stimuli before raters see them: length and truncation per deployment and
condition, and the texts themselves, a page at a time.

Raters can notice when one condition writes longer answers, or answers cut off mid-sentence
by ``max_new_tokens``. The dashboard shows both per (deployment, condition) before slots are
built, and warns when the conditions of one deployment differ by more than
:data:`LENGTH_GAP_WARNING` in mean length (relative to the longer) or by more than
:data:`TRUNCATION_GAP_WARNING` in the share of cut-off responses. Excluded stimuli are
left out of the figures (they are never rated) and counted on their own. Only the study's
current generation round is screened (``Stimulus.objects.current()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.paginator import Page, Paginator
from django.db.models import Avg, Count, Q

from studyapp.studies.models import Deployment, Stimulus, Study

LENGTH_GAP_WARNING = 0.25  # mean words differ by more than 25% of the longer condition's mean
TRUNCATION_GAP_WARNING = 0.10  # shares of cut-off responses differ by more than 10 points


@dataclass(frozen=True)
class ConditionScreening:
    deployment: str
    condition: str
    n: int
    n_excluded: int
    mean_tokens: float | None
    mean_words: float | None
    n_truncated: int
    n_unknown: int  # stored before truncation was recorded
    n_mid_word: int = 0  # cut after a letter or digit: never rated unless the deployment accepts truncation
    accept_truncation: bool = False
    automatic_only: bool = False  # never rated: truncation has nothing to accept or refuse

    @property
    def truncated_share(self) -> float | None:
        known = self.n - self.n_unknown
        return self.n_truncated / known if known else None


@dataclass
class Screening:
    rows: list[ConditionScreening] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def study_screening(*, study: Study) -> Screening:
    """Length and truncation per (deployment, condition), with warnings; one query."""
    aggregated = (
        Stimulus.objects.current()
        .filter(deployment__study=study)
        .values("deployment__slug", "condition__key", "deployment__accept_truncation", "deployment__automatic_only")
        .annotate(
            n=Count("pk", filter=Q(excluded_at__isnull=True)),
            n_excluded=Count("pk", filter=Q(excluded_at__isnull=False)),
            mean_tokens=Avg("n_new_tokens", filter=Q(excluded_at__isnull=True)),
            mean_words=Avg("n_words", filter=Q(excluded_at__isnull=True)),
            n_truncated=Count("pk", filter=Q(excluded_at__isnull=True, finished=False)),
            n_unknown=Count("pk", filter=Q(excluded_at__isnull=True, finished__isnull=True)),
            n_mid_word=Count("pk", filter=Q(excluded_at__isnull=True, ends_mid_word=True)),
        )
        .order_by("deployment__slug", "condition__key")
    )
    screening = Screening()
    for row in aggregated:
        screening.rows.append(
            ConditionScreening(
                deployment=row["deployment__slug"],
                condition=row["condition__key"],
                n=row["n"],
                n_excluded=row["n_excluded"],
                mean_tokens=row["mean_tokens"],
                mean_words=row["mean_words"],
                n_truncated=row["n_truncated"],
                n_unknown=row["n_unknown"],
                n_mid_word=row["n_mid_word"],
                accept_truncation=row["deployment__accept_truncation"],
                automatic_only=row["deployment__automatic_only"],
            )
        )
    by_deployment: dict[str, list[ConditionScreening]] = {}
    for entry in screening.rows:
        by_deployment.setdefault(entry.deployment, []).append(entry)
    for deployment, rows in by_deployment.items():
        lengths = [(r.condition, r.mean_words) for r in rows if r.mean_words is not None]
        if len(lengths) > 1:
            shortest, longest = min(lengths, key=lambda x: x[1]), max(lengths, key=lambda x: x[1])
            if longest[1] > 0 and (longest[1] - shortest[1]) / longest[1] > LENGTH_GAP_WARNING:
                screening.warnings.append(
                    f"{deployment}: {longest[0]} responses average {longest[1]:.0f} words, "
                    f"{shortest[0]} {shortest[1]:.0f}: raters may notice the difference in length"
                )
        shares = [(r.condition, r.truncated_share) for r in rows if r.truncated_share is not None]
        if len(shares) > 1:
            low, high = min(shares, key=lambda x: x[1]), max(shares, key=lambda x: x[1])
            if high[1] - low[1] > TRUNCATION_GAP_WARNING:
                screening.warnings.append(
                    f"{deployment}: {high[1]:.0%} of {high[0]} responses are cut off by max_new_tokens, "
                    f"{low[1]:.0%} of {low[0]}: raise max_new_tokens or exclude and regenerate"
                )
    return screening


def excluded_stimuli(*, study: Study) -> list[Stimulus]:
    return list(
        Stimulus.objects.current()
        .filter(deployment__study=study, excluded_at__isnull=False)
        .select_related("deployment", "condition", "item")
        .prefetch_related("replacements")
        .order_by("excluded_at")
    )


TEXTS_PER_PAGE = 20
# Which texts the texts page lists: all of them, those cut by max_new_tokens, or the excluded ones.
TEXT_FILTERS = {
    "all": Q(),
    "cut": Q(finished=False, excluded_at__isnull=True),
    "excluded": Q(excluded_at__isnull=False),
}


def stimuli_texts_page(*, deployment: Deployment, condition_key: str, which: str, number: int | str) -> Page:
    """One page of a (deployment, condition)'s texts of the current round, in item and sample order.

    ``which``: a key of :data:`TEXT_FILTERS`; ``number``: the page, as Django's paginator reads
    it (an out-of-range or malformed number gives the nearest page).
    """
    stimuli = (
        Stimulus.objects.current()
        .filter(TEXT_FILTERS.get(which, Q()), deployment=deployment, condition__key=condition_key)
        .select_related("item", "replaces")
        .prefetch_related("replacements")
        .order_by("item__key", "sample_index", "pk")
    )
    return Paginator(stimuli, TEXTS_PER_PAGE).get_page(number)
