"""A tiny random-init Llama with the embedded model's tokenizer, built once per test session.

Random weights make the outputs gibberish, which is all these tests need: they check
mechanics (masks, hooks, seeds, files), not quality. Hidden size 64 keeps every forward
pass in milliseconds on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.embedded import ensure_embedded_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model(progress=False))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        # Wider than the default 0.02 so next-token distributions are peaked like a trained
        # model's (a near-uniform 49k-way distribution makes every top-p step sort the vocabulary).
        initializer_range=0.5,
    )
    torch.manual_seed(1234)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_loaded(tiny_model_dir: Path):
    """A fresh copy of the tiny model per test (tests edit weights in place)."""
    from generation.loading import load_model

    return load_model(tiny_model_dir, device="cpu")
