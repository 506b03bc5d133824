"""Task families are data: shipped YAML, researcher YAML, chat template, output parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.parsers import parse_aut_uses, parse_dat_words
from generation.task_families import (
    TaskFamily,
    TaskItem,
    build_prompt,
    get_task_family,
    load_task_families,
)


def test_shipped_families_have_their_items() -> None:
    assert len(get_task_family("aut").items) >= 10
    assert "brick" in get_task_family("aut").item_keys()
    task_task = get_task_family("task_task")
    assert len(task_task.items) >= 5
    assert task_task.description  # the default set is documented
    assert get_task_family("dat").parser == "dat_words"


def test_unknown_family_names_the_shipped_ones() -> None:
    with pytest.raises(KeyError, match="aut"):
        get_task_family("nope")


def test_family_built_from_three_fields_renders_items() -> None:
    family = TaskFamily(name="custom", template="Tell me about {item}.", items=[TaskItem("a", "apples")])
    assert family.items == (TaskItem("a", "apples"),)
    assert family.render("apples") == "Tell me about apples."
    assert family.render("apples", instruction="Be creative.") == "Tell me about apples.\n\nBe creative."
    assert family.parse("anything") is None


def test_researchers_load_their_own_yaml(tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(
        "riddles:\n  template: 'Write a riddle about {item}.'\n  system_prompt: You are terse.\n"
        "  items:\n    - {key: moon, text: the moon}\n    - the sea\n"
    )
    families = load_task_families(path)
    riddles = families["riddles"]
    assert riddles.item_keys() == ["moon", "1"]
    assert riddles.system_prompt == "You are terse."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("riddles: {items: {a: b}}", "needs 'template' and 'items'"),
        ("riddles: {template: x, items: {a: b}, colour: red}", "unknown fields"),
        ("riddles: {template: x, items: [], parser: dat_words}", "no items"),
        ("riddles: [unclosed", "not valid YAML"),
    ],
)
def test_bad_task_yaml_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_task_families(path)


def test_chat_template_is_applied_with_the_system_prompt(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    family = TaskFamily("x", "Uses for a {item}?", (TaskItem("brick", "brick"),), system_prompt="Be brief.")
    prompt = build_prompt(tokenizer, family, "brick")
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "<|im_start|>user\nUses for a brick?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize(
    "text",
    [
        '["cat", "thimble", "ocean"]',
        'Sure! ["cat", "thimble", "ocean"]',
        "cat\nthimble\nocean",
        "1. Cat\n2. Thimble - a small cup for a finger\n3. Ocean",
        "cat, thimble, ocean",
        "- cat\n- thimble\n- ocean.",
    ],
)
def test_dat_answers_parse_to_words(text: str) -> None:
    assert [word.lower() for word in parse_dat_words(text)] == ["cat", "thimble", "ocean"]


def test_dat_parser_keeps_ten_words_and_skips_sentences() -> None:
    text = "Here are ten words that are very different from each other:\n" + "\n".join(f"w{i}" for i in range(12))
    assert parse_dat_words(text) == [f"w{i}" for i in range(10)]
    assert parse_dat_words("") == []


def test_aut_answers_parse_to_uses() -> None:
    text = "Here are some uses:\n1. **Doorstop**: keep a door open\n- Paperweight\n* Garden border"
    assert parse_aut_uses(text) == ["Doorstop: keep a door open", "Paperweight", "Garden border"]
    assert parse_aut_uses("Build a wall\nBuild a car") == ["Build a wall", "Build a car"]
