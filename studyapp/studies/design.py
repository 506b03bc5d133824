"""Which generated samples people rate: a seeded, balanced subset of each item's samples.

A condition may generate many samples per item (mode-collapse metrics need dozens), while
the rater design needs only a few. The subset is drawn per item from the study's seed,
the task and the item only, never from the condition or the deployment: a steered
condition and its base twin (in every deployment that shares the base) are rated on the
same sample indices, which share seeds too (``generation_jobs.sample_seed``), so the comparison
is paired and every item contributes the same number of stimuli per condition.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from dataclasses import dataclass


def rated_sample_indices(
    *, study_seed: int, task_key: str, item_key: str, n_samples: int, n_rated: int | None
) -> list[int]:
    """The sample indices of one item that enter the rater design, ascending.

    ``n_rated`` None (or at least ``n_samples``) keeps every sample.
    """
    if n_rated is None or n_rated >= n_samples:
        return list(range(n_samples))
    # Seeded for reproducibility, not secrecy: anyone with the spec may recompute the subset.
    rng = random.Random(f"{study_seed}:{task_key}:{item_key}:rated")  # noqa: S311
    return sorted(rng.sample(range(n_samples), n_rated))


@dataclass(frozen=True)
class SampleRow:
    """What decides whether one stimulus is rated (read from the database by the caller)."""

    stimulus_id: int
    task_key: str
    item_key: str
    n_samples: int  # samples generated per item in its deployment
    sample_index: int
    replaces_id: int | None
    excluded: bool


def rated_stimulus_ids(*, rows: Iterable[SampleRow], study_seed: int, n_rated: int | None) -> set[int]:
    """The stimuli of a rated deployment that enter the rater design.

    Each item's rated subset of sample indices (:func:`rated_sample_indices`); a replacement
    generated for an excluded stimulus takes that stimulus' place (and a replacement's
    replacement too); excluded stimuli are never rated.
    """
    rows = list(rows)
    if n_rated is None:
        # Every sample is rated, stimuli made outside the spec's numbers too.
        return {row.stimulus_id for row in rows if not row.excluded}
    chosen = {
        row.stimulus_id
        for row in rows
        if row.replaces_id is None
        and row.sample_index
        in _indices(
            study_seed=study_seed,
            task_key=row.task_key,
            item_key=row.item_key,
            n_samples=row.n_samples,
            n_rated=n_rated,
        )
    }
    replacements: dict[int, list[int]] = {}
    for row in rows:
        if row.replaces_id is not None:
            replacements.setdefault(row.replaces_id, []).append(row.stimulus_id)
    frontier = list(chosen)
    while frontier:
        stimulus_id = frontier.pop()
        for replacement in replacements.get(stimulus_id, []):
            if replacement not in chosen:
                chosen.add(replacement)
                frontier.append(replacement)
    excluded = {row.stimulus_id for row in rows if row.excluded}
    return chosen - excluded


@functools.cache
def _indices(*, study_seed: int, task_key: str, item_key: str, n_samples: int, n_rated: int | None) -> frozenset[int]:
    return frozenset(
        rated_sample_indices(
            study_seed=study_seed, task_key=task_key, item_key=item_key, n_samples=n_samples, n_rated=n_rated
        )
    )
