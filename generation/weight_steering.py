"""CreativityNeuro: data-free contrastive weight steering (docs/generation.md, "CreativityNeuro weight steering").

For every selected linear layer of the decoder blocks:

1. Wanda importance ``S_ij = |W_ij| * ||X_j||_2``, with ``||X_j||_2`` the norm of input
   feature j over all token positions of a prompt set, once for the divergent prompts
   and once for the convergent ones.
2. ``mask = top_rho(S_div) AND NOT top_rho(S_conv)``, top-rho per whole matrix (default)
   or per output row.
3. ``W <- W * (1 + alpha * mask)``: the selected weights are scaled up, nothing is pruned.

Memory stays bounded: the forward hooks only accumulate one squared-norm vector per
layer (never activations), prompts go through in small batches, and scores and masks
exist for one matrix at a time.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from generation.atomic import atomic_directory
from generation.hooks import hooks_registered
from generation.loading import LoadedModel, find_decoder_layers, parse_layers, quiet_transformers, weights_sha256
from generation.prompt_sets import PromptSet, get_prompt_set
from generation.sampling import iter_prompt_batches

RANKINGS = ("matrix", "row")
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class WeightSteeringConfig:
    """Parameters of the weight edit.

    Parameters
    ----------
    rho
        Keep ratio: the fraction of weights taken as "top" under each prompt set.
    alpha
        Scale: selected weights are multiplied by ``1 + alpha``.
    prompt_set
        ``dat``, ``openended``, ``problem``, ``ideation`` or a set from ``prompt_file``.
    ranking
        ``"matrix"`` ranks weights over the whole matrix; ``"row"`` within each output row.
    module_patterns
        fnmatch patterns over module names relative to a decoder block
        (``self_attn.q_proj``, ``mlp.*``) or full names; default every linear layer.
    layers
        Decoder block indices (int, list, or ``"15-29"``); ``None`` for all.
    prompt_file
        A YAML file of prompt sets to use instead of the shipped ones.
    """

    rho: float = 0.1
    alpha: float = 1.0
    prompt_set: str = "dat"
    ranking: str = "matrix"
    module_patterns: tuple[str, ...] = ("*",)
    layers: Any = None
    prompt_file: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rho <= 1:
            raise ValueError(f"rho must be in [0, 1], got {self.rho}")
        if self.alpha < -1:
            raise ValueError(f"alpha must be >= -1 (alpha = -1 zeroes the selected weights), got {self.alpha}")
        if self.ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}, got {self.ranking!r}")
        if isinstance(self.module_patterns, str):
            object.__setattr__(self, "module_patterns", (self.module_patterns,))
        else:
            object.__setattr__(self, "module_patterns", tuple(self.module_patterns))
        if not self.module_patterns:
            raise ValueError("module_patterns must name at least one pattern")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> WeightSteeringConfig:
        """Build from a condition's ``params`` mapping; unknown keys are an error."""
        known = {"rho", "alpha", "prompt_set", "ranking", "module_patterns", "layers", "prompt_file"}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown weight-steering parameters: {', '.join(sorted(unknown))}")
        values = dict(params)
        for key in ("rho", "alpha"):
            if key in values:
                values[key] = float(values[key])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["module_patterns"] = list(self.module_patterns)
        return data


@dataclass(frozen=True)
class TargetLinear:
    """A linear layer selected for editing."""

    name: str  # qualified name in the model
    layer: int  # decoder block index
    module: nn.Module

    @property
    def weight_is_transposed(self) -> bool:
        """GPT-2's Conv1D stores the weight as [in, out], not nn.Linear's [out, in]."""
        return not isinstance(self.module, nn.Linear)


def select_target_linears(
    model: nn.Module, module_patterns: Sequence[str] = ("*",), layers: Any = None
) -> list[TargetLinear]:
    """The linear layers inside the chosen decoder blocks whose names match a pattern.

    Patterns are matched (fnmatch) against the name relative to the block, e.g.
    ``self_attn.o_proj`` or ``mlp.down_proj``, and against the full name.
    """
    blocks = find_decoder_layers(model)
    chosen = parse_layers(layers, len(blocks))
    block_prefix = {id(block): name for name, block in model.named_modules() if any(block is b for b in blocks)}
    targets = []
    for index in chosen:
        block = blocks[index]
        prefix = block_prefix[id(block)]
        for relative, module in block.named_modules():
            is_linear = isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
            if not relative or not is_linear:
                continue
            full = f"{prefix}.{relative}"
            if any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(full, p) for p in module_patterns):
                targets.append(TargetLinear(name=full, layer=index, module=module))
    if not targets:
        raise ValueError(f"no linear layer matches module patterns {list(module_patterns)} in layers {chosen}")
    return targets


@torch.inference_mode()
def collect_input_norms(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[TargetLinear],
    *,
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "activation norms",
) -> dict[str, torch.Tensor]:
    """``||X_j||_2`` per input feature of each target layer over all real token positions of ``prompts``.

    Forward pre-hooks add each batch's squared activations into one float32 vector per
    layer; padding positions are excluded, so the result does not depend on batching.
    """
    device = next(model.parameters()).device
    sums = {t.name: torch.zeros(_in_features(t), dtype=torch.float32, device=device) for t in targets}
    current_mask: list[torch.Tensor] = []

    def make_hook(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].float()
            keep = current_mask[0].to(x.dtype).unsqueeze(-1)
            sums[name] += (x.pow(2) * keep).sum(dim=tuple(range(x.dim() - 1)))

        return hook

    with hooks_registered(t.module.register_forward_pre_hook(make_hook(t.name)) for t in targets):
        batches = iter_prompt_batches(model, tokenizer, prompts, batch_size=batch_size, progress=progress, desc=desc)
        for input_ids, mask, position_ids in batches:
            current_mask[:] = [mask]
            model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False)
    return {name: total.sqrt() for name, total in sums.items()}


def _in_features(target: TargetLinear) -> int:
    weight: torch.Tensor = target.module.weight  # type: ignore[assignment]
    return int(weight.shape[0] if target.weight_is_transposed else weight.shape[1])


def _top_mask(scores: torch.Tensor, rho: float, ranking: str) -> torch.Tensor:
    """Boolean mask of the top ``rho`` share of ``scores`` [out, in], per matrix or per row."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if ranking == "matrix":
        k = int(rho * scores.numel())
        if k > 0:
            mask.view(-1)[torch.topk(scores.view(-1), k, sorted=False).indices] = True
    else:
        k = int(rho * scores.shape[1])
        if k > 0:
            mask.scatter_(1, torch.topk(scores, k, dim=1, sorted=False).indices, True)
    return mask


def edit_mask(
    weight: torch.Tensor,
    norm_divergent: torch.Tensor,
    norm_convergent: torch.Tensor,
    rho: float,
    ranking: str = "matrix",
) -> torch.Tensor:
    """``top_rho(|W| * ||X_div||) AND NOT top_rho(|W| * ||X_conv||)`` for one weight [out, in]."""
    magnitude = weight.detach().abs().float()
    top_divergent = _top_mask(magnitude * norm_divergent.float().unsqueeze(0), rho, ranking)
    top_convergent = _top_mask(magnitude * norm_convergent.float().unsqueeze(0), rho, ranking)
    return top_divergent & ~top_convergent


@dataclass
class WeightEdit:
    """An applied edit: counts for the manifest, and what is needed to undo it exactly."""

    n_considered: int = 0
    n_edited: int = 0
    per_layer: dict[int, dict[str, int]] = field(default_factory=dict)
    per_module: dict[str, dict[str, int]] = field(default_factory=dict)  # by name inside the block
    # Flat indices and original values of edited entries: undo restores the exact bits,
    # which dividing by (1 + alpha) would not.
    _saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list, repr=False)
    # Flat indices of the edited entries per target (with record_indices): the sparse artifact.
    indices: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def share_edited(self) -> float:
        return self.n_edited / self.n_considered if self.n_considered else 0.0

    @torch.no_grad()
    def undo(self) -> None:
        """Restore every edited weight to its value before the edit."""
        for weight, indices, values in reversed(self._saved):
            weight.view(-1)[indices] = values
        self._saved.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "n_weights_considered": self.n_considered,
            "n_weights_edited": self.n_edited,
            "share_edited": self.share_edited,
            "per_layer": {str(layer): counts for layer, counts in sorted(self.per_layer.items())},
            "per_module": dict(sorted(self.per_module.items())),
        }


@torch.no_grad()
def apply_weight_edit(
    targets: Sequence[TargetLinear],
    norms_divergent: dict[str, torch.Tensor],
    norms_convergent: dict[str, torch.Tensor],
    *,
    rho: float,
    alpha: float,
    ranking: str = "matrix",
    keep_undo: bool = False,
    record_indices: bool = False,
    progress: bool = False,
) -> WeightEdit:
    """Edit the targets in place: ``W *= 1 + alpha * mask``, one matrix at a time.

    With ``keep_undo`` the returned :class:`WeightEdit` can restore the original weights
    (the sweep uses this to try many settings from one set of norms). With ``record_indices``
    it keeps the flat indices of the edited entries per target, which is all a sparse
    artifact needs besides the factor.
    """
    edit = WeightEdit()
    factor = 1.0 + alpha
    for target in tqdm(targets, desc="weight edit", disable=not progress, leave=False):
        weight = target.module.weight
        oriented = weight.t() if target.weight_is_transposed else weight
        mask = edit_mask(oriented, norms_divergent[target.name], norms_convergent[target.name], rho, ranking)
        if target.weight_is_transposed:
            mask = mask.t()
        indices = mask.reshape(-1).nonzero().squeeze(-1)
        count = int(indices.numel())
        if record_indices:
            edit.indices[target.name] = indices.cpu()
        if count and alpha != 0:
            flat = weight.data.view(-1)
            if keep_undo:
                edit._saved.append((weight.data, indices, flat[indices].clone()))
            flat[indices] = flat[indices] * factor
        edit.n_considered += weight.numel()
        edit.n_edited += count
        layer_counts = edit.per_layer.setdefault(target.layer, {"considered": 0, "edited": 0})
        layer_counts["considered"] += weight.numel()
        layer_counts["edited"] += count
        relative = target.name.split(f".{target.layer}.", 1)[-1]
        module_counts = edit.per_module.setdefault(relative, {"considered": 0, "edited": 0})
        module_counts["considered"] += weight.numel()
        module_counts["edited"] += count
    return edit


@dataclass
class WandaNorms:
    """Input-feature norms of every target layer under the divergent and the convergent prompts."""

    targets: list[TargetLinear]
    divergent: dict[str, torch.Tensor]
    convergent: dict[str, torch.Tensor]
    prompt_set: PromptSet


def compute_norms(
    loaded: LoadedModel, config: WeightSteeringConfig, *, batch_size: int = 8, progress: bool = False
) -> WandaNorms:
    """Select the targets and collect their input norms under both halves of the prompt set."""
    prompt_set = get_prompt_set(config.prompt_set, config.prompt_file)
    targets = select_target_linears(loaded.model, config.module_patterns, config.layers)
    divergent = collect_input_norms(
        loaded.model,
        loaded.tokenizer,
        prompt_set.divergent,
        targets,
        batch_size=batch_size,
        progress=progress,
        desc="divergent prompts",
    )
    convergent = collect_input_norms(
        loaded.model,
        loaded.tokenizer,
        prompt_set.convergent,
        targets,
        batch_size=batch_size,
        progress=progress,
        desc="convergent prompts",
    )
    return WandaNorms(targets, divergent, convergent, prompt_set)


def steer_weights(
    loaded: LoadedModel, config: WeightSteeringConfig, *, batch_size: int = 8, progress: bool = False
) -> dict[str, Any]:
    """Apply the CreativityNeuro edit to ``loaded.model`` in place; return the manifest.

    The manifest records the method, every parameter, the prompt set and its hash, the
    base model's weight hash, the share of weights edited and counts per layer and module.
    """
    return compute_weight_edit(loaded, config, batch_size=batch_size, progress=progress)[1]


def compute_weight_edit(
    loaded: LoadedModel,
    config: WeightSteeringConfig,
    *,
    batch_size: int = 8,
    record_indices: bool = False,
    progress: bool = False,
) -> tuple[WeightEdit, dict[str, Any]]:
    """:func:`steer_weights`, also returning the :class:`WeightEdit` (with its indices if asked)."""
    norms = compute_norms(loaded, config, batch_size=batch_size, progress=progress)
    edit = apply_weight_edit(
        norms.targets,
        norms.divergent,
        norms.convergent,
        rho=config.rho,
        alpha=config.alpha,
        ranking=config.ranking,
        record_indices=record_indices,
        progress=progress,
    )
    return edit, {
        "method": "weight",
        "algorithm": "creativityneuro-wanda-set-difference",
        "parameters": config.as_dict(),
        "prompt_set": {
            "name": norms.prompt_set.name,
            "sha256": norms.prompt_set.sha256,
            "n_divergent": len(norms.prompt_set.divergent),
            "n_convergent": len(norms.prompt_set.convergent),
        },
        "base_model": {"path": str(loaded.path), "sha256": loaded.sha256},
        "layers": sorted({t.layer for t in norms.targets}),
        **edit.stats(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def save_steered_checkpoint(loaded: LoadedModel, manifest: dict[str, Any], out_dir: str | Path) -> str:
    """Save the edited model as an ordinary checkpoint (safetensors, config, tokenizer) plus ``manifest.json``.

    Written atomically. Returns the steered weights' hash, which is also stored in the
    manifest as ``sha256``. ``AutoModelForCausalLM.from_pretrained`` and vLLM load the
    directory unchanged.
    """
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as staging, quiet_transformers():
        loaded.model.save_pretrained(staging)
        loaded.tokenizer.save_pretrained(staging)
        for child in staging.iterdir():
            child.chmod(0o644)  # safetensors writes owner-only files; workers of other users read them
        digest = weights_sha256(staging)
        complete = {**manifest, "sha256": digest}
        # The manifest is written last: its presence marks the checkpoint complete.
        (staging / MANIFEST_NAME).write_text(json.dumps(complete, indent=2, sort_keys=True) + "\n")
    return digest
