"""Paired divergent/convergent prompt sets for weight and activation steering (torch-free)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from generation.task_families import read_yaml_file

SHIPPED_PROMPTS_FILE = Path(__file__).with_name("steering_prompts.yaml")
SHIPPED_PROMPT_SETS = ("dat", "openended", "problem", "ideation")


@dataclass(frozen=True)
class PromptSet:
    """Prompts that elicit divergent generation and their convergent twins."""

    name: str
    divergent: tuple[str, ...]
    convergent: tuple[str, ...]
    description: str = ""

    @property
    def sha256(self) -> str:
        """Hash of the prompts, recorded in manifests so an edit can be traced to its exact prompts."""
        payload = json.dumps([self.divergent, self.convergent], ensure_ascii=False).encode()
        return hashlib.sha256(payload).hexdigest()


def prompt_sets_from_mapping(data: Any, *, source: str = "<mapping>") -> dict[str, PromptSet]:
    """Build prompt sets from parsed YAML: ``{name: {pairs: [{divergent, convergent}, ...]}}``.

    ``{name: {divergent: [...], convergent: [...]}}`` (unpaired lists) is accepted too.
    """
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{source}: expected a mapping of prompt-set name -> {{pairs: [...]}}")
    sets = {}
    for name, body in data.items():
        if not isinstance(body, Mapping):
            raise ValueError(f"{source}: prompt set {name!r} must be a mapping")
        if "pairs" in body:
            pairs = body["pairs"]
            if not isinstance(pairs, list) or not all(
                isinstance(p, Mapping) and "divergent" in p and "convergent" in p for p in pairs
            ):
                raise ValueError(f"{source}: prompt set {name!r}: each pair needs 'divergent' and 'convergent'")
            divergent = tuple(str(p["divergent"]) for p in pairs)
            convergent = tuple(str(p["convergent"]) for p in pairs)
        else:
            divergent = tuple(str(p) for p in body.get("divergent") or ())
            convergent = tuple(str(p) for p in body.get("convergent") or ())
        if not divergent or not convergent:
            raise ValueError(f"{source}: prompt set {name!r} needs at least one divergent and one convergent prompt")
        sets[str(name)] = PromptSet(str(name), divergent, convergent, str(body.get("description") or ""))
    return sets


def load_prompt_sets(path: str | Path) -> dict[str, PromptSet]:
    """Load prompt sets from a YAML file shaped like ``generation/steering_prompts.yaml``."""
    return prompt_sets_from_mapping(read_yaml_file(path, what="prompt file"), source=str(path))


@cache
def shipped_prompt_sets() -> dict[str, PromptSet]:
    """The four shipped families: ``dat``, ``openended``, ``problem``, ``ideation``."""
    return load_prompt_sets(SHIPPED_PROMPTS_FILE)


def get_prompt_set(name: str, prompt_file: str | Path | None = None) -> PromptSet:
    """A prompt set by name, from ``prompt_file`` when given, else from the shipped families."""
    sets = load_prompt_sets(prompt_file) if prompt_file else shipped_prompt_sets()
    try:
        return sets[name]
    except KeyError:
        raise KeyError(f"unknown prompt set {name!r}; available: {', '.join(sorted(sets))}") from None


def render_steering_prompts(tokenizer: Any, prompts: tuple[str, ...] | list[str]) -> list[str]:
    """Prompts as the model sees them at generation time: one user turn in the chat template.

    The generation prompt (assistant header) is included so the last token is the position
    from which the model starts answering, the one activation steering reads.
    """
    if not getattr(tokenizer, "chat_template", None):
        return [prompt + "\n" for prompt in prompts]
    return [
        str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        )
        for prompt in prompts
    ]
