"""Fixtures of the studies tests: a tiny random model and studies built from specs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from studyapp.studies.models import GenerationJob, Study
from studyapp.studies.study_loading import study_load


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init Llama (hidden 64, 2 layers) with the embedded model's tokenizer and chat template.

    Fast enough that a worker test spends its time on the plumbing, not on sampling.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from generation.embedded import ensure_embedded_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model(progress=False))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_spec(
    model_dir: Path,
    *,
    slug: str = "tiny",
    items: tuple[str, ...] = ("brick", "fork"),
    samples: int = 2,
    batch_size: int = 4,
    max_new_tokens: int = 8,
    conditions: tuple[str, ...] = ("base", "weight"),
    deployments: int = 1,
    raters: int | None = None,
    accept_truncation: bool = True,
) -> str:
    """A spec for the tiny model. ``accept_truncation``: its few-token texts are nearly all cut
    mid-word, so tests about anything else accept them, or no slot could be built; and its few
    items put one item under every condition before each rater, which the spec allows here."""
    params = {
        "base": "{}",
        "weight": "{rho: 0.1, alpha: 1.0, prompt_set: dat}",
        "activation": "{coeff: 2.0}",
        "prompt": "{instruction: Be as original as you can.}",
    }
    condition_lines = "\n".join(f"  - {{key: {c}, model: tiny, method: {c}, params: {params[c]}}}" for c in conditions)
    deployment_lines = "\n".join(
        f"  - {{slug: aut-{index}, model: tiny, task: aut, conditions: [{', '.join(conditions)}],"
        f" accept_truncation: {str(accept_truncation).lower()}}}"
        for index in range(deployments)
    )
    return f"""
spec_version: "1"
slug: {slug}
title: Tiny study
seed: 7
samples_per_item: {samples}
decoding: {{max_new_tokens: {max_new_tokens}, temperature: 0.7, top_p: 0.95}}
generation: {{batch_size: {batch_size}}}
raters: {{per_deployment: {raters or len(items) * samples}, stimuli_per_rater: {len(conditions)},
  allow_paired_items: true}}
models:
  - {{key: tiny, source: "{model_dir}"}}
conditions:
{condition_lines}
tasks:
  - key: aut
    items: [{", ".join(items)}]
deployments:
{deployment_lines}
"""


@pytest.fixture
def tiny_study(tiny_model_dir: Path) -> Callable[..., Study]:
    def make(**options) -> Study:
        study, _ = study_load(content=tiny_spec(tiny_model_dir, **options))
        return study

    return make


def wait_for_jobs(study: Study, *, timeout: float = 240, statuses=("succeeded", "failed")) -> list[GenerationJob]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = list(GenerationJob.objects.filter(deployment__study=study))
        if jobs and all(job.status in statuses for job in jobs):
            return jobs
        time.sleep(0.25)
    states = [(str(j), j.status, j.done, j.total, j.error_message) for j in GenerationJob.objects.all()]
    raise AssertionError(f"jobs did not finish within {timeout} s: {states}")
