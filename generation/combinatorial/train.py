"""A plain, fast training loop for the small decoders.

AdamW, linear warm-up then cosine decay, bf16 autocast on GPU, a checkpoint every
``checkpoint_every`` steps written atomically, and resume: a killed run started again
with the same arguments continues from its last checkpoint with the same batches (the
batch order is a pure function of the seed and the step).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from generation.combinatorial.lm import PAD, pad_batch


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``max_tokens`` (non-pad tokens) sets the length of the run."""

    max_tokens: int
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    min_lr_fraction: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200


@dataclass
class TrainResult:
    steps: int
    tokens: int
    final_loss: float
    seconds: float
    tokens_per_second: float
    resumed_from: int


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine down to ``min_lr_fraction``."""
    warmup = max(1, int(config.warmup_fraction * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return config.min_lr_fraction + (1 - config.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def _batch_order(n: int, epoch: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def train(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    config: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``model`` (a causal LM) on ``sequences`` for ``config.max_tokens`` non-pad tokens.

    The loss is next-token cross-entropy over non-pad targets. With ``checkpoint_dir`` the
    state (model, optimiser, step) is saved there every ``checkpoint_every`` steps and at
    the end, and a run finds and resumes from it. ``stop_after`` ends this call after that
    many steps without a final checkpoint, as a kill would (for time-sliced runs and tests).
    """
    device = torch.device(device)
    model.to(device)
    data = pad_batch(sequences)
    n = data.shape[0]
    lengths = (data != PAD).sum(1)
    tokens_per_step = float(lengths.float().mean()) * min(config.batch_size, n)
    total_steps = max(1, math.ceil(config.max_tokens / tokens_per_step))
    optimizer = _adamw(model, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, total_steps, config))
    start_step, tokens_seen = 0, 0
    ckpt = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        start_step, tokens_seen = _resume(ckpt, device, config, total_steps, model, optimizer, scheduler)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    batches_per_epoch = max(1, n // config.batch_size)
    model.train()
    loss_value = math.nan
    started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=start_step, disable=not progress, desc="train", unit="step")
    last_step = total_steps if stop_after is None else min(total_steps, start_step + stop_after)
    for step in range(start_step, last_step):
        batch = _batch(data, lengths, step, batches_per_epoch, config).to(device, non_blocking=True)
        loss_value, n_targets = _optimise_on(batch, model, optimizer, scheduler, config, use_bf16)
        tokens_seen += n_targets
        bar.update(1)
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{loss_value:.3f}")
        if ckpt is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == total_steps):
            _save(ckpt, model, optimizer, scheduler, step + 1, tokens_seen, config, total_steps)
    bar.close()
    seconds = time.perf_counter() - started
    trained = last_step - start_step
    return TrainResult(
        steps=last_step,
        tokens=tokens_seen,
        final_loss=loss_value,
        seconds=seconds,
        tokens_per_second=(trained * tokens_per_step) / seconds if seconds > 0 else math.nan,
        resumed_from=start_step,
    )


def _optimise_on(batch: torch.Tensor, model, optimizer, scheduler, config: TrainConfig, use_bf16: bool):
    """One optimiser step on next-token cross-entropy over the batch's non-pad targets;
    returns (loss, number of targets)."""
    targets = batch[:, 1:].clone()
    targets[targets == PAD] = -100
    with torch.autocast(device_type=batch.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        # Sequences are right-padded, so under the causal mask no real token sees a pad:
        # no attention mask is needed, and the mask-free attention path is much faster.
        logits = model(input_ids=batch[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    scheduler.step()
    return float(loss.detach()), int((targets != -100).sum())


def _adamw(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, layer norms)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "ln" in name else decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=config.betas,
        fused=device.type == "cuda",
    )


def _resume(ckpt: Path, device: torch.device, config: TrainConfig, total_steps: int, model, optimizer, scheduler):
    """Load a checkpoint's model, optimiser and schedule; returns (step, tokens seen)."""
    state = torch.load(ckpt, map_location=device, weights_only=False)
    here = {**asdict(config), "total_steps": total_steps}
    there = {**state["config"], "total_steps": state["total_steps"]}
    differ = [f"{key} {there.get(key)} there, {here.get(key)} here" for key in here if there.get(key) != here.get(key)]
    if differ:
        raise ValueError(
            f"{ckpt.parent} holds another run's checkpoint ({'; '.join(differ)}); remove it to start afresh"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state["tokens"]


def _batch(
    data: torch.Tensor, lengths: torch.Tensor, step: int, batches_per_epoch: int, config: TrainConfig
) -> torch.Tensor:
    """The batch of ``step``: a seeded shuffle per epoch, trimmed to its longest sequence."""
    epoch, within = divmod(step, batches_per_epoch)
    order = _batch_order(data.shape[0], epoch, config.seed)
    idx = order[within * config.batch_size : (within + 1) * config.batch_size]
    return data[idx][:, : int(lengths[idx].max())]


def _save(path: Path, model, optimizer, scheduler, step: int, tokens: int, config: TrainConfig, total: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "tokens": tokens,
            "config": asdict(config),
            "total_steps": total,
        },
        tmp,
    )
    # A kill mid-write leaves the previous checkpoint intact.
    os.replace(tmp, path)
