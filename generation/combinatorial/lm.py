"""The small decoders of the scaling experiment: tokenizer, model, training data, sampling.

One token per concept and per label, plus six specials. Sequences:

- a triple of the graph (both directions): ``<bos> h l t <eos>``;
- a training prompt with one of its walks: ``<bos> <walk> u v <inc> I.. <exc> X.. <sep> u l1 v1 .. vh <eos>``.

At test time the model gets the prompt up to ``<sep>`` and samples the walk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from analysis.combinatorial import Prompt
from generation.combinatorial.graphs import ConceptGraph
from generation.combinatorial.prompts import sample_satisfying_walks
from generation.sampling import _choose_tokens, derive_row_seed
from generation.types import DecodingSettings

SPECIALS = ("<pad>", "<bos>", "<eos>", "<sep>", "<walk>", "<inc>", "<exc>")
PAD, BOS, EOS, SEP, WALK, INC, EXC = range(len(SPECIALS))


@dataclass(frozen=True)
class WalkTokenizer:
    """Concept and label names <-> ids; specials first."""

    vocab: tuple[str, ...]

    @classmethod
    def for_graph(cls, graph: ConceptGraph) -> WalkTokenizer:
        clash = set(SPECIALS) & (set(graph.concepts) | set(graph.labels))
        if clash or set(graph.concepts) & set(graph.labels):
            raise ValueError("concept and label names must differ from each other and from the special tokens")
        return cls(SPECIALS + graph.concepts + graph.labels)

    @property
    def size(self) -> int:
        return len(self.vocab)

    def index(self) -> dict[str, int]:
        return {tok: i for i, tok in enumerate(self.vocab)}

    def encode(self, tokens: Sequence[str]) -> list[int]:
        index = self.index()
        return [index[t] for t in tokens]

    def decode_walk(self, ids: Sequence[int]) -> list[str]:
        """The names up to the first ``<eos>``/``<pad>`` (other specials kept: they make the walk invalid)."""
        out = []
        for i in ids:
            if i in (EOS, PAD):
                break
            out.append(self.vocab[i])
        return out

    def prompt_tokens(self, prompt: Prompt) -> list[str]:
        return [
            "<bos>",
            "<walk>",
            prompt.start,
            prompt.end,
            "<inc>",
            *prompt.include,
            "<exc>",
            *prompt.exclude,
            "<sep>",
        ]


def build_corpus(
    graph: ConceptGraph,
    tokenizer: WalkTokenizer,
    train_prompts: Sequence[Prompt],
    *,
    walks_per_prompt: int = 4,
    max_hops: int = 8,
    seed: int = 0,
) -> tuple[list[list[int]], list[list[str]]]:
    """Training sequences (token ids) and the training walks (names, for novelty's label counts).

    Every edge in both directions, and ``walks_per_prompt`` random satisfying walks of each
    training prompt. The returned walks are the triples and the prompt walks: what the model saw.
    """
    rng = np.random.default_rng(seed)
    index = tokenizer.index()
    seqs: list[list[int]] = []
    seen_walks: list[list[str]] = []
    for h, lab, t in graph.triples():
        for a, b in ((h, t), (t, h)):
            seqs.append([BOS, index[a], index[lab], index[b], EOS])
            seen_walks.append([a, lab, b])
    for prompt in train_prompts:
        head = [index[t] for t in tokenizer.prompt_tokens(prompt)]
        for walk in sample_satisfying_walks(graph, prompt, n=walks_per_prompt, max_hops=max_hops, rng=rng):
            seqs.append(head + [index[t] for t in walk] + [EOS])
            seen_walks.append(walk)
    return seqs, seen_walks


def pad_batch(seqs: Sequence[Sequence[int]], length: int | None = None) -> torch.Tensor:
    length = length or max(len(s) for s in seqs)
    out = torch.full((len(seqs), length), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s[:length], dtype=torch.long)
    return out


def gpt2_config(*, vocab_size: int, depth: int, width: int, n_positions: int = 64, head_dim: int = 32) -> GPT2Config:
    """A GPT-2 config with ``depth`` blocks of ``width``: as many heads as fit ``head_dim``,
    lowered to the nearest count that divides the width.

    The MLP's activation is the exact GELU (one fused kernel), not GPT-2's tanh
    approximation, which transformers computes as eight separate element-wise operations
    (and their backward): CPU training is 1.12x to 1.26x faster with it
    (``benchmarks/bench_cc_throughput.py``). The two curves differ by less than 5e-4."""
    n_head = max(1, width // head_dim)
    while width % n_head:
        n_head -= 1
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=width,
        n_layer=depth,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu",
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        tie_word_embeddings=True,
    )


def build_model(config: GPT2Config, *, seed: int = 0) -> GPT2LMHeadModel:
    """A freshly initialised model (no download), seeded."""
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def n_params(model: torch.nn.Module) -> int:
    """All trainable parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_params(*, vocab_size: int, depth: int, width: int, n_positions: int = 64) -> int:
    """Parameters of :func:`gpt2_config`'s model without building it."""
    per_block = 12 * width * width + 13 * width
    return depth * per_block + (vocab_size + n_positions) * width + 2 * width


def width_for_params(*, target: int, depth: int, vocab_size: int, multiple: int = 16, n_positions: int = 64) -> int:
    """The width (a multiple of ``multiple``) whose model has about ``target`` parameters."""
    a, b = 12 * depth, 13 * depth + vocab_size + n_positions + 2
    width = (-b + math.sqrt(b * b + 4 * a * target)) / (2 * a)
    return max(multiple, round(width / multiple) * multiple)


@torch.no_grad()
def sample_walks(
    model: GPT2LMHeadModel,
    tokenizer: WalkTokenizer,
    prompts: Sequence[Prompt],
    *,
    n_samples: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_hops: int = 12,
    seed: int = 0,
    batch_size: int = 256,
) -> list[tuple[str, list[str]]]:
    """Seeded ancestral sampling of walks: ``[(prompt_id, walk names)]``, ``n_samples`` per prompt.

    Temperature 0 is greedy. Top-p keeps the smallest set of tokens whose probability
    reaches ``top_p``. A walk stops at ``<eos>`` or after ``2 * max_hops + 1`` tokens. Token
    choice is the platform's (``generation.sampling``): one generator per walk, seeded from
    ``seed``, the prompt and the sample number, so a walk does not depend on its batch.
    """
    model.eval()
    device = next(model.parameters()).device
    decoding = DecodingSettings(max_new_tokens=1, temperature=temperature, top_p=top_p)
    index = tokenizer.index()
    jobs = [(p, [index[t] for t in tokenizer.prompt_tokens(p)], i) for p in prompts for i in range(n_samples)]
    out: list[tuple[str, list[str]]] = []
    max_new = 2 * max_hops + 2
    for lo in range(0, len(jobs), batch_size):
        chunk = jobs[lo : lo + batch_size]
        generators = [
            torch.Generator().manual_seed(derive_row_seed(seed, p.prompt_id, sample)) for p, _, sample in chunk
        ]
        ids, mask = _left_padded([prompt_ids for _, prompt_ids, _ in chunk], device)
        tokens = _decode(model, ids, mask, generators, decoding, max_new)
        for (prompt, _, _), row in zip(chunk, tokens, strict=True):
            out.append((prompt.prompt_id, tokenizer.decode_walk(row)))
    return out


def _left_padded(rows: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids left-padded so every prompt ends at the same position, and the attention
    mask that hides the pads."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _decode(
    model: GPT2LMHeadModel,
    ids: torch.Tensor,
    mask: torch.Tensor,
    generators: Sequence[torch.Generator],
    decoding: DecodingSettings,
    max_new: int,
) -> list[list[int]]:
    """Up to ``max_new`` tokens after each left-padded prompt, with the key-value cache; a row
    that has produced ``<eos>`` continues with pads until every row has."""
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    done = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
    generated = []
    past = None
    step_ids, step_pos = ids, position
    for _ in range(max_new):
        result = model(
            input_ids=step_ids, attention_mask=mask, position_ids=step_pos, past_key_values=past, use_cache=True
        )
        past = result.past_key_values
        logits = result.logits[:, -1, :].float().cpu()
        logits[:, PAD] = -math.inf
        nxt = _choose_tokens(logits, generators, decoding).to(ids.device)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        generated.append(nxt)
        done |= nxt == EOS
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        step_ids = nxt.unsqueeze(1)
        step_pos = step_pos[:, -1:] + 1
    return torch.stack(generated, dim=1).cpu().tolist()
