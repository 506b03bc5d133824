"""Loading: clear one-line errors for missing models, one helper for decoder layers, layer selections."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generation.loading import (
    ModelLoadError,
    choose_dtype,
    find_decoder_layers,
    load_model,
    parse_layers,
    weights_sha256,
)


def test_missing_model_names_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError) as caught:
        load_model(missing)
    message = str(caught.value)
    assert str(missing) in message and "embedded" in message and "\n" not in message


def test_directory_without_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path)


def test_unreadable_weights_are_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for child in tiny_model_dir.iterdir():
        (broken / child.name).write_bytes(child.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match=f"could not read model {broken}"):
        load_model(broken)


def test_tiny_model_loads_on_cpu_in_float32(tiny_loaded) -> None:
    assert tiny_loaded.device.type == "cpu"
    assert next(tiny_loaded.model.parameters()).dtype == torch.float32
    assert tiny_loaded.sha256 == weights_sha256(tiny_loaded.path)
    assert choose_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16


def _tiny(config_name: str):
    import transformers

    sizes = {"hidden_size": 32, "num_attention_heads": 2, "vocab_size": 128, "intermediate_size": 64}
    config_class = getattr(transformers, config_name)
    if config_name == "GPT2Config":
        config = config_class(n_embd=32, n_head=2, n_layer=3, vocab_size=128)
    else:
        # pad/bos/eos ids inside the tiny vocabulary (Phi-3's defaults point past it).
        config = config_class(
            num_hidden_layers=3, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2, **sizes
        )
    return transformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("config_name", ["LlamaConfig", "Qwen2Config", "Phi3Config", "GPT2Config"])
def test_decoder_layers_found_for_common_architectures(config_name: str) -> None:
    layers = find_decoder_layers(_tiny(config_name))
    assert isinstance(layers, torch.nn.ModuleList) and len(layers) == 3


def test_decoder_layers_missing_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot find the decoder layers"):
        find_decoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, [0, 1, 2, 3, 4, 5]), (2, [2]), ("1-3", [1, 2, 3]), ("0,4", [0, 4]), ([5, -1], [5]), ("-2", [4])],
)
def test_layer_selections(value: object, expected: list[int]) -> None:
    assert parse_layers(value, 6) == expected


@pytest.mark.parametrize("value", ["7", "a-b", [9]])
def test_bad_layer_selections(value: object) -> None:
    with pytest.raises(ValueError):
        parse_layers(value, 6)
