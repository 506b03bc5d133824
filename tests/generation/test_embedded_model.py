"""The embedded SmolLM2-135M-Instruct is found without network and generates text."""

import pytest

from generation.embedded import embedded_gguf_path, ensure_embedded_model


def test_gguf_file_ships_inside_the_installed_package() -> None:
    path = embedded_gguf_path()
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000


@pytest.mark.slow
def test_cached_embedded_model_loads_and_generates_tokens() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = ensure_embedded_model(progress=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name one use for a brick."}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    assert len(new_tokens) > 0
    assert tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
