"""Seeded sampling: the same request gives the same text alone or in any batch; other samples differ."""

from __future__ import annotations

import pytest

from generation.pipeline import ConditionSpec, DecodingSettings, SampleRequest, iter_samples
from generation.sampling import derive_row_seed, generate_batch
from generation.task_families import build_prompt, get_task_family

DECODING = DecodingSettings(max_new_tokens=12)


def _requests(n_items: int = 3, n_samples: int = 2, seed: int = 0) -> list[SampleRequest]:
    family = get_task_family("aut")
    return [
        SampleRequest(item.key, item.text, index, seed) for item in family.items[:n_items] for index in range(n_samples)
    ]


def _texts(tiny_model_dir, requests, batch_size, decoding=DECODING, method="base", params=None) -> list[str]:
    spec = ConditionSpec(method=method, model=str(tiny_model_dir), params=params or {})
    batches = iter_samples(spec, None, get_task_family("aut"), requests, decoding, batch_size=batch_size)
    return [sample.text for batch in batches for sample in batch]


def test_row_seed_depends_on_seed_item_and_sample_index() -> None:
    base = derive_row_seed(0, "brick", 0)
    assert base == derive_row_seed(0, "brick", 0)
    assert (
        len({base, derive_row_seed(1, "brick", 0), derive_row_seed(0, "shoe", 0), derive_row_seed(0, "brick", 1)}) == 4
    )
    assert 0 <= base < 2**63


def test_same_seed_same_output_and_other_samples_differ(tiny_model_dir) -> None:
    requests = _requests()
    first = _texts(tiny_model_dir, requests, batch_size=6)
    again = _texts(tiny_model_dir, requests, batch_size=6)
    assert first == again
    assert first[0] != first[1]  # same item, sample index 0 and 1
    assert len(set(first)) == len(first)


def test_output_does_not_depend_on_batch_composition(tiny_loaded) -> None:
    family = get_task_family("aut")
    requests = _requests()
    prompts = {r: build_prompt(tiny_loaded.tokenizer, family, r.item_text) for r in requests}
    seeds = {r: derive_row_seed(r.seed, r.item_key, r.sample_index) for r in requests}

    def run(batch: list[SampleRequest]) -> list[str]:
        results = generate_batch(
            tiny_loaded.model, tiny_loaded.tokenizer, [prompts[r] for r in batch], [seeds[r] for r in batch], DECODING
        )
        return [result.text for result in results]

    batched = run(requests[:4]) + run(requests[4:])  # mixed prompt lengths: real left padding
    alone = [run([request])[0] for request in requests]
    shuffled_order = [requests[i] for i in (5, 2, 0, 4, 1, 3)]
    shuffled = dict(zip(shuffled_order, run(shuffled_order), strict=True))
    assert batched == alone == [shuffled[request] for request in requests]


def test_different_study_seed_gives_different_text(tiny_model_dir) -> None:
    assert _texts(tiny_model_dir, _requests(1, 1, seed=0), 1) != _texts(tiny_model_dir, _requests(1, 1, seed=1), 1)


def test_every_sample_records_its_decoding_and_provenance(tiny_model_dir, tiny_loaded) -> None:
    spec = ConditionSpec(method="temperature", model=str(tiny_model_dir), params={"temperature": 1.3})
    requests = _requests(2, 1)
    batches = list(iter_samples(spec, None, get_task_family("aut"), requests, DECODING, batch_size=1))
    assert [len(batch) for batch in batches] == [1, 1]
    sample = batches[0][0]
    assert sample.decoding == {"max_new_tokens": 12, "temperature": 1.3, "top_p": 0.95, "do_sample": True}
    assert sample.model_sha256 == tiny_loaded.sha256
    assert sample.prompt.endswith("<|im_start|>assistant\n") and "brick" in sample.prompt
    assert 0 < sample.n_new_tokens <= 12
    assert sample.condition["method"] == "temperature"


def test_prompt_condition_appends_the_instruction(tiny_model_dir) -> None:
    spec = ConditionSpec(method="prompt", model=str(tiny_model_dir), params={"instruction": "Be wildly original."})
    batch = next(iter_samples(spec, None, get_task_family("aut"), _requests(1, 1), DECODING))
    assert "Be wildly original.<|im_end|>" in batch[0].prompt


def test_greedy_decoding_ignores_the_seed(tiny_loaded) -> None:
    family = get_task_family("aut")
    prompt = build_prompt(tiny_loaded.tokenizer, family, "brick")
    greedy = DecodingSettings(max_new_tokens=8, do_sample=False)
    first = generate_batch(tiny_loaded.model, tiny_loaded.tokenizer, [prompt, prompt], [1, 2], greedy)
    assert first[0] == first[1]


def test_stop_token_ends_a_row_early(tiny_loaded) -> None:
    # Make the end-of-sequence token overwhelmingly likely: every row stops at once.
    import torch

    eos_bias = torch.zeros(tiny_loaded.model.config.vocab_size)
    eos_bias[2] = 1e4
    handle = tiny_loaded.model.lm_head.register_forward_hook(lambda _m, _a, out: out + eos_bias)
    try:
        prompt = build_prompt(tiny_loaded.tokenizer, get_task_family("aut"), "brick")
        result = generate_batch(tiny_loaded.model, tiny_loaded.tokenizer, [prompt], [0], DECODING)[0]
    finally:
        handle.remove()
    assert result.finished and result.n_new_tokens == 0 and result.text == ""


def test_decoding_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="top_p"):
        DecodingSettings(top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        DecodingSettings(max_new_tokens=0)
