"""Contrastive activation addition (CAA, Rimsky et al. 2024) as the activation-steering baseline.

The vector for decoder block L is the mean residual-stream output of block L at the last
prompt token over the divergent prompts minus the same mean over the convergent prompts.
During generation :func:`steering` adds ``coeff * v`` to block L's output at every real
position (prompt and generated tokens) and leaves padding positions untouched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from generation.atomic import atomic_file
from generation.hooks import hooks_registered
from generation.loading import LoadedModel, find_decoder_layers, parse_layers
from generation.prompt_sets import get_prompt_set
from generation.sampling import iter_prompt_batches

DEFAULT_COEFF = 4.0


def default_layers(n_layers: int) -> list[int]:
    """One block a third of the way up: the public creativity example steered layer 8 of 32,
    and middle layers carry the most abstract, steerable features."""
    return [max(0, n_layers // 3)]


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once every needed activation is read."""


@dataclass
class SteeringVectors:
    """One steering vector per decoder block index, plus metadata describing how it was made."""

    vectors: dict[int, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def save(self, path: str | Path) -> str:
        """Write ``path`` (safetensors, float32) and ``path.with_suffix('.json')``; return the file's sha256.

        The JSON sidecar holds the metadata and the file's hash; the safetensors header holds
        the metadata too, so the vector file alone is self-describing. Each file is written
        under a temporary name and renamed, so a reader never sees a half-written one.
        """
        path = Path(path)
        tensors = {
            f"layer.{layer}": vector.detach().to("cpu", torch.float32).contiguous()
            for layer, vector in self.vectors.items()
        }
        sidecar = path.with_suffix(".json")
        # The vector file is renamed into place first, its sidecar (with its hash) last.
        with atomic_file(sidecar) as sidecar_staging, atomic_file(path) as staging:
            save_file(tensors, str(staging), metadata={"steering": json.dumps(self.metadata, sort_keys=True)})
            digest = hashlib.sha256(staging.read_bytes()).hexdigest()
            sidecar_staging.write_text(
                json.dumps({**self.metadata, "layers": self.layers, "sha256": digest}, indent=2, sort_keys=True) + "\n"
            )
        return digest

    @classmethod
    def load(cls, path: str | Path) -> SteeringVectors:
        """Read vectors saved by :meth:`save`; values come back bit-identical."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"steering-vector file {path} does not exist")
        tensors = load_file(str(path))
        vectors = {int(key.split(".", 1)[1]): value for key, value in tensors.items() if key.startswith("layer.")}
        sidecar = path.with_suffix(".json")
        metadata = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        return cls(vectors=vectors, metadata=metadata)


@torch.inference_mode()
def last_token_activations(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    layers: Sequence[int],
    *,
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "prompts",
) -> dict[int, torch.Tensor]:
    """Sum over ``prompts`` of each block's output at the last prompt token, in float32.

    Left padding puts every prompt's last token in the last column, so one slice reads it.
    Returns sums (not means) so callers can stream over prompt batches.
    """
    blocks = find_decoder_layers(model)
    device = next(model.parameters()).device
    hidden_size = int(getattr(model, "config", None).hidden_size)  # type: ignore[union-attr]
    sums = {layer: torch.zeros(hidden_size, dtype=torch.float32, device=device) for layer in layers}
    last_needed = max(layers)

    def make_hook(layer: int):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            sums[layer] += hidden[:, -1, :].float().sum(dim=0)
            if layer == last_needed:
                # Nothing above this block is read: skip the rest of the forward pass (3x faster
                # for a vector a third of the way up).
                raise _StopForward

        return hook

    with hooks_registered(blocks[layer].register_forward_hook(make_hook(layer)) for layer in layers):
        batches = iter_prompt_batches(model, tokenizer, prompts, batch_size=batch_size, progress=progress, desc=desc)
        for input_ids, mask, position_ids in batches:
            with suppress(_StopForward):
                model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False)
    return sums


def compute_steering_vectors(
    loaded: LoadedModel,
    *,
    prompt_set: str = "dat",
    layers: Any = None,
    prompt_file: str | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> SteeringVectors:
    """CAA vectors: mean last-token block output over divergent prompts minus over convergent prompts.

    Parameters
    ----------
    loaded
        The (unsteered) model.
    prompt_set
        A shipped family (``dat``, ``openended``, ``problem``, ``ideation``) or one from ``prompt_file``.
    layers
        Block indices (int, list, ``"8,12"``, ``"6-10"``); default one block a third of the way up.
    """
    prompts = get_prompt_set(prompt_set, prompt_file)
    n_layers = len(find_decoder_layers(loaded.model))
    chosen = default_layers(n_layers) if layers is None else parse_layers(layers, n_layers)
    divergent = last_token_activations(
        loaded.model,
        loaded.tokenizer,
        prompts.divergent,
        chosen,
        batch_size=batch_size,
        progress=progress,
        desc="divergent prompts",
    )
    convergent = last_token_activations(
        loaded.model,
        loaded.tokenizer,
        prompts.convergent,
        chosen,
        batch_size=batch_size,
        progress=progress,
        desc="convergent prompts",
    )
    vectors = {
        layer: (divergent[layer] / len(prompts.divergent) - convergent[layer] / len(prompts.convergent)).cpu()
        for layer in chosen
    }
    metadata = {
        "method": "activation",
        "algorithm": "caa-mean-difference-last-token",
        "parameters": {"prompt_set": prompt_set, "layers": chosen, "prompt_file": prompt_file},
        "prompt_set": {
            "name": prompts.name,
            "sha256": prompts.sha256,
            "n_divergent": len(prompts.divergent),
            "n_convergent": len(prompts.convergent),
        },
        "base_model": {"path": str(loaded.path), "sha256": loaded.sha256},
        "vector_norms": {str(layer): float(vector.norm()) for layer, vector in vectors.items()},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return SteeringVectors(vectors=vectors, metadata=metadata)


@contextmanager
def steering(model: nn.Module, vectors: Mapping[int, torch.Tensor] | SteeringVectors, coeff: float) -> Iterator[None]:
    """Add ``coeff * v[L]`` to the output of each steered block while the context is open.

    The model's ``attention_mask`` is read by a pre-hook on the model itself, so padding
    positions are left untouched whoever calls the model (this library's sampler or
    ``model.generate``). Every hook is removed on exit, also when the body raises.
    """
    if isinstance(vectors, SteeringVectors):
        vectors = vectors.vectors
    blocks = find_decoder_layers(model)
    parameter = next(model.parameters())
    scaled = {
        layer: (float(coeff) * vector.float()).to(parameter.device, parameter.dtype)
        for layer, vector in vectors.items()
    }
    current: dict[str, torch.Tensor | None] = {"mask": None}
    hidden_size = int(getattr(model, "config", None).hidden_size)  # type: ignore[union-attr]

    def remember_mask(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask")
        current["mask"] = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def make_hook(layer: int):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output
            addition = scaled[layer]
            mask = current["mask"]
            if mask is not None and mask.shape[0] == hidden.shape[0] and mask.shape[1] >= hidden.shape[1]:
                # The last hidden.shape[1] mask columns are the positions in this forward pass
                # (all of them at prefill, the newest one per decoding step).
                keep = mask[:, -hidden.shape[1] :].to(hidden.dtype).unsqueeze(-1)
                steered = hidden + keep * addition
            else:
                steered = hidden + addition
            return (steered, *output[1:]) if isinstance(output, tuple) else steered

        return hook

    for layer in scaled:
        if not 0 <= layer < len(blocks):
            raise ValueError(f"steering vector for layer {layer}, but the model has {len(blocks)} layers")
        if scaled[layer].shape[-1] != hidden_size:
            raise ValueError(
                f"steering vector for layer {layer} has size {scaled[layer].shape[-1]}, "
                f"the model's hidden size is {hidden_size}: it was made for another model"
            )
    handles = [
        model.register_forward_pre_hook(remember_mask, with_kwargs=True),
        *(blocks[layer].register_forward_hook(make_hook(layer)) for layer in scaled),
    ]
    with hooks_registered(handles):
        yield
