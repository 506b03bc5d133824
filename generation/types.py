"""Plain data types shared by the pipeline, the samplers and the platform.

Kept free of torch so the web process (which stores and shows these values) can import
them without loading a deep-learning stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# Every steering method a condition can use, with what it does (the platform's choices and
# labels derive from this; studyapp.studies.vocabulary).
METHOD_DESCRIPTIONS = {
    "base": "Unsteered base model",
    "weight": "CreativityNeuro weight steering",
    "activation": "Contrastive activation addition",
    "prompt": "Prompted to be creative",
    "temperature": "Higher sampling temperature",
}
METHODS = tuple(METHOD_DESCRIPTIONS)


@dataclass(frozen=True)
class ConditionSpec:
    """One experimental condition: a steering method, the model it applies to and its parameters.

    Parameters
    ----------
    method
        ``"base"`` (unsteered), ``"weight"`` (CreativityNeuro weight edit), ``"activation"``
        (contrastive activation addition), ``"prompt"`` (the task prompt plus an instruction) or
        ``"temperature"`` (a different sampling temperature).
    model
        ``"embedded"``, a Hugging Face model directory, or a ``.gguf`` file.
    params
        weight: ``rho``, ``alpha``, ``prompt_set``, ``ranking``, ``module_patterns``, ``layers``;
        activation: ``prompt_set``, ``layers``, ``coeff``; prompt: ``instruction``;
        temperature: ``temperature``.
    artifact_path
        Reuse an existing artifact (steered checkpoint directory or steering-vector file)
        instead of building one.
    """

    method: str
    model: str = "embedded"
    params: Mapping[str, Any] = field(default_factory=dict)
    artifact_path: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown condition method {self.method!r}; expected one of {', '.join(METHODS)}")


@dataclass(frozen=True)
class Artifact:
    """What a steering method produced: a steered checkpoint directory or a steering-vector file."""

    path: str
    sha256: str
    manifest: dict


@dataclass(frozen=True)
class DecodingSettings:
    """Sampling settings; recorded with every output."""

    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    do_sample: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        """True when decoding picks the most likely token (no sampling, or temperature 0)."""
        return not self.do_sample or self.temperature == 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SampleRequest:
    """One response to generate: which item, which sample of it, and the study's seed."""

    item_key: str
    item_text: str
    sample_index: int
    seed: int


@dataclass(frozen=True)
class Sample:
    """One generated response with everything needed to trace and reproduce it."""

    item_key: str
    sample_index: int
    seed: int
    prompt: str
    text: str
    n_new_tokens: int
    decoding: dict
    model_sha256: str
    # What else shaped the text: method, parameters and artifact hash (e.g. the activation
    # coefficient, which lives outside the weights). Defaulted so the contract fields stay first.
    condition: dict = field(default_factory=dict)
    finished: bool = True  # False when the response was cut at max_new_tokens

    def as_dict(self) -> dict:
        return asdict(self)
