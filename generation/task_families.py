"""Task families as data: a prompt template plus items, loaded from YAML.

The shipped families (``dat``, ``aut``, ``task_task``) live in ``generation/tasks.yaml``;
researchers load their own with :func:`load_task_families`. Torch-free: the web process
imports this module to validate study specs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from generation.parsers import PARSERS, get_parser
from generation.safe_yaml import yaml_load_limited

SHIPPED_TASKS_FILE = Path(__file__).with_name("tasks.yaml")
ITEM_PLACEHOLDER = "{item}"
# "{item" followed by what str.format would read as a format spec, conversion, attribute or
# index: never substituted (only plain {item} is), so refused where a template is written.
_FORMATTED_ITEM = re.compile(r"\{item[:!.\[][^}]*\}?")


def template_problem(template: str) -> str | None:
    """Why a prompt template cannot be used (it formats its item); None when it can."""
    found = _FORMATTED_ITEM.search(template)
    if found is None:
        return None
    return f"{found.group(0)!r}: only plain {ITEM_PLACEHOLDER} is replaced (no format specs, conversions or fields)"


def template_render(template: str, item_text: str) -> str:
    """A template with its item: plain substitution of ``{item}`` (never ``str.format``: a
    width such as ``{item:>1000000000}`` would allocate a gigabyte per render), or the item
    after a blank line when the template has no placeholder."""
    if ITEM_PLACEHOLDER in template:
        return template.replace(ITEM_PLACEHOLDER, item_text)
    return f"{template}\n\n{item_text}" if template else item_text


@dataclass(frozen=True)
class TaskItem:
    """One prompt of a family, e.g. the AUT object ``brick``."""

    key: str
    text: str


@dataclass(frozen=True)
class TaskFamily:
    """A prompt template and its items.

    ``{item}`` in ``template`` is replaced by an item's text (a template without it gets the
    item appended after a blank line). ``system_prompt`` ``None`` keeps the model's own
    default system prompt. ``parser`` names an output parser (``dat_words``, ``aut_uses``)
    or is ``None`` when the task's output is scored as free text.
    """

    name: str
    template: str
    items: tuple[TaskItem, ...]
    system_prompt: str | None = None
    parser: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.parser is not None and self.parser not in PARSERS:
            raise ValueError(f"task family {self.name!r}: unknown parser {self.parser!r}")
        # Accept a list from callers that build families by hand; the dataclass is frozen
        # and hashable only with a tuple.
        if not isinstance(self.items, tuple):
            object.__setattr__(self, "items", tuple(self.items))

    def item(self, key: str) -> TaskItem:
        """The item with this key; ``KeyError`` naming the known keys otherwise."""
        for item in self.items:
            if item.key == key:
                return item
        raise KeyError(f"task family {self.name!r} has no item {key!r}; items: {', '.join(self.item_keys())}")

    def item_keys(self) -> list[str]:
        return [item.key for item in self.items]

    def render(self, item_text: str, instruction: str | None = None) -> str:
        """The user message for one item, before any chat template.

        ``instruction`` (the ``prompt`` condition's added text) goes after the task text so
        the task itself reads the same in every condition.
        """
        text = template_render(self.template, item_text)
        if instruction:
            text = f"{text}\n\n{instruction.strip()}"
        return text

    def parse(self, output: str) -> list[str] | None:
        """Parse a response with the family's parser; ``None`` when the family has none."""
        return get_parser(self.parser)(output) if self.parser else None


def build_prompt(tokenizer: Any, family: TaskFamily, item_text: str, instruction: str | None = None) -> str:
    """The full prompt text as sent to the model: the rendered task inside the chat template.

    A tokenizer without a chat template (a base model) gets the plain user message
    followed by a newline.
    """
    user = family.render(item_text, instruction)
    if getattr(tokenizer, "chat_template", None):
        messages = []
        if family.system_prompt is not None:
            messages.append({"role": "system", "content": family.system_prompt})
        messages.append({"role": "user", "content": user})
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return user + "\n"


def _items_from_yaml(name: str, raw: Any) -> tuple[TaskItem, ...]:
    if isinstance(raw, Mapping):
        items = [TaskItem(key=str(key), text=str(text)) for key, text in raw.items()]
    elif isinstance(raw, list):
        items = []
        for index, entry in enumerate(raw):
            if isinstance(entry, Mapping) and "text" in entry:
                items.append(TaskItem(key=str(entry.get("key", index)), text=str(entry["text"])))
            elif isinstance(entry, str):
                items.append(TaskItem(key=str(index), text=entry))
            else:
                raise ValueError(f"task family {name!r}: item {index} must be a string or have a 'text' field")
    else:
        raise ValueError(f"task family {name!r}: 'items' must be a mapping key -> text or a list")
    if not items:
        raise ValueError(f"task family {name!r} has no items")
    keys = [item.key for item in items]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"task family {name!r}: duplicate item keys {', '.join(duplicates)}")
    return tuple(items)


def task_families_from_mapping(data: Any, *, source: str = "<mapping>") -> dict[str, TaskFamily]:
    """Build families from parsed YAML: ``{name: {template, items, [system_prompt, parser, description]}}``."""
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{source}: expected a mapping of family name -> {{template, items}}")
    families = {}
    for name, body in data.items():
        if not isinstance(body, Mapping) or "template" not in body or "items" not in body:
            raise ValueError(f"{source}: task family {name!r} needs 'template' and 'items'")
        unknown = set(body) - {"template", "items", "system_prompt", "parser", "description"}
        if unknown:
            raise ValueError(f"{source}: task family {name!r} has unknown fields {', '.join(sorted(unknown))}")
        families[str(name)] = TaskFamily(
            name=str(name),
            template=str(body["template"]),
            items=_items_from_yaml(str(name), body["items"]),
            system_prompt=None if body.get("system_prompt") is None else str(body["system_prompt"]),
            parser=body.get("parser"),
            description=str(body.get("description") or "").strip(),
        )
    return families


def load_task_families(path: str | Path) -> dict[str, TaskFamily]:
    """Load task families from a researcher's YAML file (same shape as ``generation/tasks.yaml``).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not valid YAML or a family lacks ``template`` or ``items``.
    """
    return task_families_from_mapping(read_yaml_file(path, what="task file"), source=str(path))


def read_yaml_file(path: str | Path, *, what: str) -> Any:
    """A researcher's YAML file, with one-line errors that name it (``what``: "task file", ...)."""
    path = Path(path)
    try:
        return yaml_load_limited(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as error:
        # The problem and where, never the text at that place: the file is not the reader's to see.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(f"{path}: not valid YAML{where} ({problem})") from None


@cache
def shipped_task_families() -> dict[str, TaskFamily]:
    """The families shipped in ``generation/tasks.yaml``: ``dat``, ``aut``, ``task_task``."""
    return load_task_families(SHIPPED_TASKS_FILE)


def get_task_family(name: str) -> TaskFamily:
    """A shipped task family by name (``dat``, ``aut``, ``task_task``)."""
    families = shipped_task_families()
    try:
        return families[name]
    except KeyError:
        raise KeyError(f"unknown task family {name!r}; shipped: {', '.join(sorted(families))}") from None
