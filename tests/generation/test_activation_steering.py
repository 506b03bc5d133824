"""Activation steering: the hook is a no-op at coeff 0, always removed, batch-invariant, padding-safe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generation.activation_steering import (
    SteeringVectors,
    compute_steering_vectors,
    last_token_activations,
    steering,
)
from generation.loading import find_decoder_layers
from generation.prompt_sets import get_prompt_set
from generation.sampling import derive_row_seed, encode_left_padded, generate_batch
from generation.task_families import build_prompt, get_task_family
from generation.types import DecodingSettings


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _forward(loaded, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = encode_left_padded(loaded.tokenizer, texts)
    with torch.no_grad():
        return loaded.model(input_ids=ids, attention_mask=mask).logits, mask


@pytest.fixture
def vectors(tiny_loaded) -> SteeringVectors:
    return compute_steering_vectors(tiny_loaded, prompt_set="dat", layers=[1, 2])


def test_vector_is_mean_divergent_minus_mean_convergent(tiny_loaded, vectors) -> None:
    prompts = get_prompt_set("dat")
    # One prompt at a time (no padding) as an independent reference for the batched sums.
    div = sum(last_token_activations(tiny_loaded.model, tiny_loaded.tokenizer, [p], [2])[2] for p in prompts.divergent)
    conv = sum(
        last_token_activations(tiny_loaded.model, tiny_loaded.tokenizer, [p], [2])[2] for p in prompts.convergent
    )
    expected = div / len(prompts.divergent) - conv / len(prompts.convergent)
    # Activations of this random model reach ~100: summation order alone moves the last digits.
    torch.testing.assert_close(vectors.vectors[2], expected, rtol=1e-4, atol=1e-3)
    assert vectors.layers == [1, 2]
    assert vectors.metadata["base_model"]["sha256"] == tiny_loaded.sha256


def test_coeff_zero_changes_nothing(tiny_loaded, vectors) -> None:
    texts = ["<|im_start|>user\nhello<|im_end|>\n", "a longer text about bricks and ropes"]
    plain, _ = _forward(tiny_loaded, texts)
    with steering(tiny_loaded.model, vectors, coeff=0.0):
        steered, _ = _forward(tiny_loaded, texts)
    assert torch.equal(plain, steered)


def test_steering_changes_logits_and_skips_padding(tiny_loaded, vectors) -> None:
    texts = ["short", "a much longer text about bricks, ropes and umbrellas"]
    plain, mask = _forward(tiny_loaded, texts)
    seen: list[torch.Tensor] = []
    block = find_decoder_layers(tiny_loaded.model)[2]
    only_block_2 = {2: vectors.vectors[2]}
    with steering(tiny_loaded.model, only_block_2, coeff=4.0):
        # Registered after the steering hook, so it sees the steered output of block 2.
        probe = block.register_forward_hook(lambda _m, _a, out: seen.append(out[0] if isinstance(out, tuple) else out))
        try:
            steered, _ = _forward(tiny_loaded, texts)
        finally:
            probe.remove()
    assert not torch.allclose(plain, steered)
    unsteered_block = []
    probe = block.register_forward_hook(lambda _m, _a, out: unsteered_block.append(out))
    try:
        _forward(tiny_loaded, texts)
    finally:
        probe.remove()
    difference = seen[0] - unsteered_block[0]
    padding = mask == 0
    assert padding.any()
    assert torch.equal(difference[padding], torch.zeros_like(difference[padding]))
    torch.testing.assert_close(difference[~padding], (4.0 * vectors.vectors[2]).expand_as(difference[~padding]))


def test_hooks_removed_after_exit_even_on_exception(tiny_loaded, vectors) -> None:
    before = _hook_count(tiny_loaded.model)
    with steering(tiny_loaded.model, vectors, coeff=2.0):
        assert _hook_count(tiny_loaded.model) == before + 3  # mask pre-hook + two blocks
    assert _hook_count(tiny_loaded.model) == before
    with pytest.raises(RuntimeError, match="boom"), steering(tiny_loaded.model, vectors, coeff=2.0):
        raise RuntimeError("boom")
    assert _hook_count(tiny_loaded.model) == before


def test_vector_for_another_model_is_refused_and_leaves_no_hook(tiny_loaded) -> None:
    before = _hook_count(tiny_loaded.model)
    with (
        pytest.raises(ValueError, match="made for another model"),
        steering(tiny_loaded.model, {1: torch.ones(5)}, coeff=1.0),
    ):
        pass
    assert _hook_count(tiny_loaded.model) == before


def test_batched_steered_generation_equals_one_by_one(tiny_loaded, vectors) -> None:
    family = get_task_family("aut")
    prompts = [build_prompt(tiny_loaded.tokenizer, family, item.text) for item in family.items[:4]]
    prompts[1] = build_prompt(tiny_loaded.tokenizer, family, "very long and unusual object of many words")
    seeds = [derive_row_seed(0, str(i), 0) for i in range(4)]
    decoding = DecodingSettings(max_new_tokens=10)
    model, tokenizer = tiny_loaded.model, tiny_loaded.tokenizer
    with steering(model, vectors, coeff=3.0):
        batched = generate_batch(model, tokenizer, prompts, seeds, decoding)
        alone = [generate_batch(model, tokenizer, [p], [s], decoding)[0] for p, s in zip(prompts, seeds, strict=True)]
    plain = generate_batch(model, tokenizer, prompts, seeds, decoding)
    assert batched == alone
    assert batched != plain


def test_save_and_load_are_bit_identical(vectors, tmp_path: Path) -> None:
    path = tmp_path / "vectors" / "dat.safetensors"
    digest = vectors.save(path)
    loaded = SteeringVectors.load(path)
    assert loaded.layers == vectors.layers
    assert all(torch.equal(loaded.vectors[layer], vectors.vectors[layer]) for layer in vectors.layers)
    assert loaded.metadata["sha256"] == digest
    assert loaded.metadata["parameters"]["layers"] == [1, 2]
    assert sorted(p.name for p in path.parent.iterdir()) == ["dat.json", "dat.safetensors"]


def test_default_layer_is_a_third_of_the_way_up(tiny_loaded) -> None:
    assert compute_steering_vectors(tiny_loaded).layers == [1]  # 4 layers // 3
