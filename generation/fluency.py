"""Fluency guard: perplexity of a model on a fixed, neutral paragraph.

A weight edit that raises creativity scores by breaking the model shows up here first:
the base model reads plain expository English easily, a damaged one does not.
"""

from __future__ import annotations

import math
from typing import Any

import torch

# Plain expository prose with no creative content, written for this project (so no model
# saw it in training); fixed forever so perplexities stay comparable across runs.
NEUTRAL_TEXT = (
    "Water moves between the land, the oceans and the air in a continuous cycle. "
    "Heat from the sun causes water at the surface of lakes and seas to evaporate, and the "
    "vapour rises into the atmosphere. As the air rises it cools, and the vapour condenses "
    "into tiny droplets that form clouds. When the droplets grow heavy enough, they fall back "
    "to the ground as rain or snow. Some of this water soaks into the soil and becomes "
    "groundwater, some is taken up by plants, and the rest flows over the surface into "
    "streams and rivers that carry it back to the sea. The same water has followed this "
    "path many times over millions of years, which is why the total amount of water on "
    "Earth stays almost the same from one year to the next."
)


@torch.inference_mode()
def token_nlls(model: Any, tokenizer: Any, text: str = NEUTRAL_TEXT) -> list[float]:
    """Negative log-likelihood of each next token of ``text`` under ``model`` (no chat template).

    Per token, so a sweep can bootstrap a confidence interval of the perplexity over tokens.
    """
    device = next(model.parameters()).device
    input_ids = tokenizer(text, return_tensors="pt")["input_ids"].to(device)
    if input_ids.shape[1] < 2:
        raise ValueError("perplexity needs a text of at least two tokens")
    logits = model(input_ids=input_ids, use_cache=False).logits[:, :-1, :].float()
    losses = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1), reduction="none"
    )
    return [float(value) for value in losses]


def perplexity(model: Any, tokenizer: Any, text: str = NEUTRAL_TEXT) -> float:
    """exp(mean next-token negative log-likelihood) of ``text`` under ``model`` (no chat template)."""
    losses = token_nlls(model, tokenizer, text)
    return math.exp(sum(losses) / len(losses))
