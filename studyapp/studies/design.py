"""Which generated samples people rate: a seeded, balanced subset of each item's samples.

A condition may generate many samples per item (mode-collapse metrics need dozens), while
the rater design needs only a few. The subset is drawn per item from the study's seed,
the task and the item only, never from the condition or the deployment: a steered
condition and its base twin (in every deployment that shares the base) are rated on the
same sample indices, which share seeds too (``services.sample_seed``), so the comparison
is paired and every item contributes the same number of stimuli per condition.
"""

from __future__ import annotations

import random


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
