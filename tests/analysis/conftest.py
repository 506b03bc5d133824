"""Fixtures for the analysis tests: small simulated exports and a cheap deterministic embedder."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from analysis.simulate import simulate_ratings


class HashingEmbedder:
    """Bag-of-words embedder: equal word multisets give equal vectors; disjoint ones are near-orthogonal.

    Stands in for MiniLM where a test is about the metric's arithmetic, not the model.
    """

    name = "hashing-test"
    dim = 256

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim))
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = np.linalg.norm(out[i])
            if norm:
                out[i] /= norm
        return out


@pytest.fixture
def hashing_embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="session")
def small_ratings() -> pd.DataFrame:
    return simulate_ratings(n_deployments=4, raters_per_deployment=8, stimuli_per_condition=4, seed=11)
