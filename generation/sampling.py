"""Batched, left-padded, per-request-seeded sampling with a KV cache.

``model.generate`` draws all rows of a batch from one random stream, so a response
would depend on which other requests shared its batch. Here every row has its own
``torch.Generator`` seeded from (study seed, item key, sample index), and draws exactly
one uniform number per decoding step whatever the other rows do. The same request
therefore gives the same text alone or in any batch (up to floating-point differences
between batch shapes, which are far below the sampling resolution in practice).

The seed deliberately ignores the condition: base and steered conditions of one study
share random numbers per (item, sample), a common-random-numbers design that makes
paired comparisons less noisy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from generation.types import DecodingSettings


def derive_row_seed(seed: int, item_key: str, sample_index: int) -> int:
    """A 63-bit generator seed for one (seed, item, sample index); stable across processes and platforms."""
    digest = hashlib.sha256(f"{seed}\0{item_key}\0{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


@dataclass(frozen=True)
class GeneratedText:
    """One row's result: the decoded text and its length in new tokens (stop token excluded)."""

    text: str
    n_new_tokens: int
    finished: bool  # stopped on an end-of-sequence token rather than on max_new_tokens


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends a response: the generation config's eos ids and the tokenizer's."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None), tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids


_NUCLEUS_CANDIDATES = 1024


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, falling back to its end-of-sequence id (pad positions are masked anyway)."""
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def encode_left_padded(
    tokenizer: Any, texts: Sequence[str], *, add_special_tokens: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask [B, T] with every row right-aligned (left padding).

    Left padding puts every row's last real token in the last column, where the next token
    is predicted and where activation steering reads the residual stream.
    """
    encoded = [tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"] for text in texts]
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(texts), width), pad_token_id(tokenizer), dtype=torch.long)
    attention_mask = torch.zeros((len(texts), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"text {row} encodes to no tokens")
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


def iter_prompt_batches(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    batch_size: int,
    progress: bool = False,
    desc: str = "prompts",
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Steering prompts as the model sees them, left-padded, batch by batch on the model's device.

    Yields ``(input_ids, attention_mask, position_ids)``; positions count real tokens only,
    so a prompt's activations do not depend on the padding its batch needed. Both steering
    methods read their statistics through this one loop.
    """
    from tqdm.auto import tqdm

    from generation.prompt_sets import render_steering_prompts

    device = next(model.parameters()).device
    rendered = render_steering_prompts(tokenizer, list(prompts))
    # A chat template already wrote the special tokens into the text.
    add_special_tokens = not getattr(tokenizer, "chat_template", None)
    for start in tqdm(range(0, len(rendered), batch_size), desc=desc, disable=not progress, leave=False):
        input_ids, mask = encode_left_padded(
            tokenizer, rendered[start : start + batch_size], add_special_tokens=add_special_tokens
        )
        input_ids, mask = input_ids.to(device), mask.to(device)
        yield input_ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def _choose_tokens(
    logits: torch.Tensor, generators: Sequence[torch.Generator], decoding: DecodingSettings
) -> torch.Tensor:
    """Next token per row from float32 logits [B, V]; one uniform draw per row per call."""
    if decoding.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / decoding.temperature, dim=-1)
    if decoding.top_p < 1.0:
        # The nucleus is usually a few dozen tokens: sorting only the top candidates is ~20x
        # cheaper than sorting a 50k vocabulary every step. When the candidates do not reach
        # top_p in some row, sort everything; the nucleus, and so the pick, is the same either way.
        probs_sorted, order = probs.topk(min(_NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
        if bool((probs_sorted.sum(dim=-1) < decoding.top_p).any()):
            probs_sorted, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the most likely token always stays).
        keep = (probs_sorted.cumsum(dim=-1) - probs_sorted) < decoding.top_p
        probs = probs_sorted * keep
    else:
        order = None
    cdf = probs.cumsum(dim=-1)
    uniforms = torch.stack([torch.rand((), generator=g) for g in generators]).to(cdf.device, cdf.dtype)
    # Inverse-CDF sampling: a per-row uniform picks the token, independent of other rows.
    picks = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True).clamp(max=cdf.shape[-1] - 1)
    if order is not None:
        picks = order.gather(-1, picks)
    return picks.squeeze(-1)


@torch.inference_mode()
def generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    row_seeds: Sequence[int],
    decoding: DecodingSettings,
    *,
    add_special_tokens: bool = False,
    stop_at_eos: bool = True,
) -> list[GeneratedText]:
    """Generate one response per prompt, left-padded in one batch, each row from its own seed.

    Long because each parameter is documented, and the decoding loop keeps its state
    (cache, mask, positions) in one place.

    Parameters
    ----------
    model, tokenizer
        A transformers causal LM (any steering hooks already attached) and its tokenizer.
    prompts
        Full prompt texts (chat template already applied).
    row_seeds
        One generator seed per prompt, e.g. from :func:`derive_row_seed`.
    decoding
        Sampling settings; ``greedy`` decoding ignores the seeds.
    add_special_tokens
        Whether the tokenizer adds BOS etc.; False for chat-templated prompts, which carry
        their special tokens in the text.
    stop_at_eos
        False generates exactly ``max_new_tokens`` per row (benchmarks compare equal work).
    """
    if len(prompts) != len(row_seeds):
        raise ValueError("one seed per prompt is required")
    if not prompts:
        return []
    device = next(model.parameters()).device
    input_ids, attention_mask = encode_left_padded(tokenizer, prompts, add_special_tokens=add_special_tokens)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    pad_id = pad_token_id(tokenizer)
    batch = len(prompts)
    # Positions count real tokens only, so a left-padded row sees the same positions as alone.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)

    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    generators = [torch.Generator().manual_seed(int(seed)) for seed in row_seeds]
    stops = stop_token_ids(model, tokenizer) if stop_at_eos else set()
    new_tokens: list[list[int]] = [[] for _ in prompts]
    finished = [False] * batch

    outputs = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    for step in range(decoding.max_new_tokens):
        next_tokens = _choose_tokens(outputs.logits[:, -1, :].float(), generators, decoding)
        _tokens_record(next_tokens.tolist(), stops, new_tokens=new_tokens, finished=finished)
        if all(finished) or step == decoding.max_new_tokens - 1:
            break  # no forward pass for a token nobody will use
        # Rows that already stopped keep feeding a pad token; their output is final and the
        # other rows never attend to it (each row attends to its own sequence only).
        next_tokens = torch.where(torch.tensor(finished, device=device), pad_id, next_tokens)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], dim=-1)
        position_ids = position_ids[:, -1:] + 1
        outputs = model(
            input_ids=next_tokens.unsqueeze(-1),
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=outputs.past_key_values,
            use_cache=True,
        )
    return _decoded(tokenizer, new_tokens, finished)


def _decoded(tokenizer: Any, new_tokens: list[list[int]], finished: list[bool]) -> list[GeneratedText]:
    """Each row's new tokens as text."""
    return [
        GeneratedText(
            text=tokenizer.decode(tokens, skip_special_tokens=True).strip(), n_new_tokens=len(tokens), finished=done
        )
        for tokens, done in zip(new_tokens, finished, strict=True)
    ]


def _tokens_record(tokens: list[int], stops: set[int], *, new_tokens: list[list[int]], finished: list[bool]) -> None:
    """Append each unfinished row's token, or mark the row finished at a stop token (in place)."""
    for row, token in enumerate(tokens):
        if finished[row]:
            continue
        if token in stops:
            finished[row] = True
        else:
            new_tokens[row].append(token)
