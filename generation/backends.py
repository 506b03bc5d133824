"""Generation backends: Hugging Face transformers (default) and vLLM (optional, for scale).

A backend turns full prompt texts plus one seed per prompt into responses. Weight-steered
checkpoints are ordinary checkpoints, so any backend serves them; activation steering
needs forward hooks and therefore the transformers backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch

from generation.loading import LoadedModel, load_model
from generation.sampling import GeneratedText, generate_batch
from generation.types import DecodingSettings

BACKENDS = ("hf", "vllm")


class GenerationBackend(Protocol):
    """What the pipeline needs from a backend."""

    tokenizer: Any
    model_sha256: str

    def generate(
        self, prompts: Sequence[str], row_seeds: Sequence[int], decoding: DecodingSettings
    ) -> list[GeneratedText]: ...


class HFBackend:
    """transformers model with this library's per-row-seeded sampler; optional activation steering.

    Parameters
    ----------
    loaded
        The model (base or weight-steered checkpoint).
    steering_vectors, coeff
        When given, ``coeff * v[L]`` is added to block L's output during generation.
    """

    def __init__(
        self, loaded: LoadedModel, steering_vectors: Mapping[int, torch.Tensor] | None = None, coeff: float = 0.0
    ) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.model_sha256 = loaded.sha256
        self.steering_vectors = steering_vectors
        self.coeff = coeff

    def steered(self) -> AbstractContextManager[None]:
        """The model steered by this backend's vectors (if any) while the context is open.

        Hooks live only for the ``with`` block: a failure can never leave a steered model behind.
        """
        if not self.steering_vectors:
            return nullcontext()
        from generation.activation_steering import steering

        return steering(self.loaded.model, self.steering_vectors, self.coeff)

    def generate(
        self, prompts: Sequence[str], row_seeds: Sequence[int], decoding: DecodingSettings
    ) -> list[GeneratedText]:
        chat = self.loaded.uses_chat_template
        with self.steered():
            return generate_batch(
                self.loaded.model, self.tokenizer, prompts, row_seeds, decoding, add_special_tokens=not chat
            )


class VLLMBackend:
    """vLLM engine for base, prompt, temperature and weight-steered conditions at scale.

    vLLM is not a dependency of this project: install it on the GPU workers that use this
    backend. Per-request seeds are passed through ``SamplingParams(seed=...)``, so outputs
    are reproducible per request, but they are not the same texts the transformers backend
    gives for the same seed (different samplers and kernels). Untested here: no GPU or vLLM
    in this project's CI.
    """

    def __init__(self, model_path: str | Path, model_sha256: str, **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM
        except ImportError as error:
            raise RuntimeError("the vllm backend needs the vllm package: pip install vllm on the GPU worker") from error
        self.engine = LLM(model=str(model_path), **engine_kwargs)
        self.tokenizer = self.engine.get_tokenizer()
        self.model_sha256 = model_sha256

    def generate(
        self, prompts: Sequence[str], row_seeds: Sequence[int], decoding: DecodingSettings
    ) -> list[GeneratedText]:
        from vllm import SamplingParams

        temperature = 0.0 if decoding.greedy else decoding.temperature
        params = [
            SamplingParams(temperature=temperature, top_p=decoding.top_p, max_tokens=decoding.max_new_tokens, seed=seed)
            for seed in row_seeds
        ]
        chat = bool(getattr(self.tokenizer, "chat_template", None))
        # Token ids, not text: vLLM would otherwise add a second BOS in front of a chat template.
        inputs = [
            {"prompt_token_ids": self.tokenizer(prompt, add_special_tokens=not chat)["input_ids"]} for prompt in prompts
        ]
        outputs = self.engine.generate(inputs, sampling_params=params, use_tqdm=False)
        return [
            GeneratedText(
                text=out.outputs[0].text.strip(),
                n_new_tokens=len(out.outputs[0].token_ids),
                finished=out.outputs[0].finish_reason == "stop",
            )
            for out in outputs
        ]


def make_backend(
    name: str,
    model: str | Path,
    *,
    steering_vectors: Mapping[int, torch.Tensor] | None = None,
    coeff: float = 0.0,
    weight_edit: str | Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> HFBackend | VLLMBackend:
    """Load ``model`` once behind the named backend (``hf`` or ``vllm``).

    ``weight_edit`` names a sparse weight edit (:mod:`generation.sparse_edit`) to apply to
    ``model``: in memory for ``hf``; for ``vllm``, which reads weights from disk, through a
    full checkpoint written once beside the edit.
    """
    if name == "hf":
        loaded = load_model(model, device=device, dtype=dtype)
        if weight_edit is not None:
            from generation.sparse_edit import apply_sparse_edit

            apply_sparse_edit(loaded, weight_edit)
        return HFBackend(loaded, steering_vectors, coeff)
    if name == "vllm":
        if steering_vectors:
            raise ValueError("activation steering needs forward hooks: use the hf backend")
        from generation.loading import resolve_model_path, weights_sha256

        path = resolve_model_path(model)
        if weight_edit is not None:
            from generation.sparse_edit import materialise_checkpoint

            path = materialise_checkpoint(model, weight_edit)
        if device not in (None, "cuda", "auto"):
            # vLLM takes its GPUs from the environment, not from an argument.
            raise ValueError(
                f"the vllm backend runs on CUDA (device 'cuda'); got {device!r}: choose GPUs with CUDA_VISIBLE_DEVICES"
            )
        return VLLMBackend(path, weights_sha256(path), **({"dtype": dtype} if dtype else {}))
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
