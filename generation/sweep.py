"""Calibrate the weight edit: a grid over (rho, alpha) with a creativity score and a fluency guard.

Per setting it reports the DAT score (mean over valid answers), the share of valid DAT
answers, the share of distinct words across answers, the share of weights edited, and
the perplexity on a fixed neutral paragraph. The best setting is model-dependent
(RESEARCH.md section 1): a researcher picks one that raises the score while the
perplexity stays close to the base model's.

The Wanda norms do not depend on rho or alpha, so they are collected once; each setting
edits the weights in place, samples, and undoes the edit exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from generation.backends import HFBackend
from generation.fluency import NEUTRAL_TEXT, perplexity
from generation.loading import LoadedModel, load_model
from generation.parsers import parse_dat_words
from generation.sampling import derive_row_seed
from generation.task_families import TaskFamily, build_prompt, get_task_family
from generation.types import DecodingSettings, SampleRequest
from generation.weight_steering import WeightSteeringConfig, apply_weight_edit, compute_norms

DEFAULT_WORD_LIST = Path("/usr/share/dict/words")


class DatWordScorer(Protocol):
    """Scores one DAT answer given as a list of words."""

    name: str

    def __call__(self, words: Sequence[str]) -> tuple[float | None, list[str]]:
        """Return (score or None when fewer than 7 valid words, the valid words in order)."""
        ...


class AnalysisDatScorer:
    """The published DAT algorithm from ``analysis.dat.DatScorer`` (embedding per its defaults or a path)."""

    def __init__(self, embedding: str | None = None, word_list: str | None = None) -> None:
        from analysis.dat import DatScorer

        self._scorer = DatScorer(embedding, word_list)
        self.name = f"analysis.dat:{self._scorer.embedding_name}"

    def __call__(self, words: Sequence[str]) -> tuple[float | None, list[str]]:
        result = self._scorer.score(list(words))
        return result.score, list(result.valid_words)


class PlaceholderDatScorer:
    """Stand-in when ``analysis`` is not importable: DAT rules, the model's own token embeddings.

    Validity and the 7-word rule follow the published algorithm (dictionary words only,
    unique, the first 7 scored); the vector of a word is the mean input embedding of its
    tokens. Scores are on their own scale and labelled ``placeholder``: use them only to
    compare settings within one sweep.
    """

    name = "placeholder:model-input-embeddings"

    def __init__(self, loaded: LoadedModel, word_list: str | Path | None = None, minimum: int = 7) -> None:
        path = Path(word_list) if word_list else DEFAULT_WORD_LIST
        if not path.is_file():
            raise FileNotFoundError(f"word list {path} not found (install Debian's wamerican or pass --word-list)")
        self.words = {line.strip().lower() for line in path.read_text(errors="replace").splitlines() if line.strip()}
        self.embeddings = loaded.model.get_input_embeddings().weight.detach().float().cpu()
        self.tokenizer = loaded.tokenizer
        self.minimum = minimum

    def _vector(self, word: str) -> torch.Tensor:
        ids = self.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        return self.embeddings[ids].mean(dim=0)

    def __call__(self, words: Sequence[str]) -> tuple[float | None, list[str]]:
        valid: list[str] = []
        for word in words:
            clean = "".join(ch for ch in word.lower() if ch.isalpha() or ch in "- ").strip()
            if len(clean) > 1 and clean in self.words and clean not in valid:
                valid.append(clean)
        if len(valid) < self.minimum:
            return None, valid
        vectors = torch.nn.functional.normalize(torch.stack([self._vector(w) for w in valid[: self.minimum]]), dim=-1)
        similarity = vectors @ vectors.T
        upper = torch.triu_indices(self.minimum, self.minimum, offset=1)
        return float((1 - similarity[upper[0], upper[1]]).mean() * 100), valid


def default_scorer(
    loaded: LoadedModel, *, embedding: str | None = None, word_list: str | None = None
) -> Callable[[Sequence[str]], tuple[float | None, list[str]]]:
    """``analysis``' DAT scorer when importable, else :class:`PlaceholderDatScorer`."""
    try:
        return AnalysisDatScorer(embedding, word_list)
    except ImportError:
        return PlaceholderDatScorer(loaded, word_list)


@dataclass(frozen=True)
class SweepSetting:
    rho: float
    alpha: float


def _dat_requests(family: TaskFamily, n_samples: int, seed: int) -> list[SampleRequest]:
    """``n_samples`` answers spread round-robin over the DAT answer formats."""
    items = itertools.cycle(family.items)
    requests = []
    for index in range(n_samples):
        item = next(items)
        requests.append(SampleRequest(item.key, item.text, index, seed))
    return requests


def _evaluate(
    loaded: LoadedModel,
    family: TaskFamily,
    requests: list[SampleRequest],
    decoding: DecodingSettings,
    scorer: Callable[[Sequence[str]], tuple[float | None, list[str]]],
    batch_size: int,
    neutral_text: str,
) -> dict[str, Any]:
    backend = HFBackend(loaded)
    # The same seeds for every setting: differences between rows come from the edit, not the dice.
    texts: list[str] = []
    for start in range(0, len(requests), batch_size):
        batch = requests[start : start + batch_size]
        prompts = [build_prompt(loaded.tokenizer, family, r.item_text) for r in batch]
        seeds = [derive_row_seed(r.seed, r.item_key, r.sample_index) for r in batch]
        texts.extend(result.text for result in backend.generate(prompts, seeds, decoding))
    scores, all_valid = [], []
    for text in texts:
        score, valid = scorer(parse_dat_words(text))
        all_valid.extend(valid)
        if score is not None:
            scores.append(score)
    return {
        "n_answers": len(texts),
        "n_valid": len(scores),
        "valid_share": len(scores) / len(texts) if texts else 0.0,
        "dat_score_mean": sum(scores) / len(scores) if scores else None,
        "distinct_word_share": len(set(all_valid)) / len(all_valid) if all_valid else None,
        "perplexity": perplexity(loaded.model, loaded.tokenizer, neutral_text),
        "example": texts[0] if texts else "",
    }


def run_sweep(
    model: str | Path,
    rhos: Iterable[float],
    alphas: Iterable[float],
    *,
    prompt_set: str = "dat",
    prompt_file: str | None = None,
    ranking: str = "matrix",
    module_patterns: Sequence[str] = ("*",),
    layers: Any = None,
    n_samples: int = 16,
    seed: int = 0,
    decoding: DecodingSettings | None = None,
    scorer: Callable[[Sequence[str]], tuple[float | None, list[str]]] | None = None,
    embedding: str | None = None,
    word_list: str | None = None,
    batch_size: int = 16,
    neutral_text: str = NEUTRAL_TEXT,
    device: str | None = None,
    progress: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Score the base model and every (rho, alpha) setting; one dict per row, base first.

    Parameters
    ----------
    model
        ``"embedded"``, a model directory or a ``.gguf`` file.
    rhos, alphas
        The grid.
    scorer
        Any callable ``words -> (score | None, valid words)``; default :func:`default_scorer`
        (``analysis``' published algorithm, or a labelled placeholder).
    n_samples, seed, decoding
        DAT answers per setting (spread over the answer formats) and how they are sampled.
    on_row
        Called with each row as soon as it is ready (the CLI prints it).

    Returns
    -------
    list of dict
        ``setting, rho, alpha, share_edited, n_answers, n_valid, valid_share,
        dat_score_mean, distinct_word_share, perplexity, scorer, example``.
    """
    decoding = decoding or DecodingSettings(max_new_tokens=64)
    loaded = load_model(model, device=device)
    score_words = scorer or default_scorer(loaded, embedding=embedding, word_list=word_list)
    scorer_name = getattr(score_words, "name", getattr(score_words, "__name__", "custom"))
    family = get_task_family("dat")
    requests = _dat_requests(family, n_samples, seed)
    config = WeightSteeringConfig(
        prompt_set=prompt_set,
        prompt_file=prompt_file,
        ranking=ranking,
        module_patterns=tuple(module_patterns),
        layers=layers,
    )
    norms = compute_norms(loaded, config, progress=progress)
    settings = [SweepSetting(float(r), float(a)) for r in rhos for a in alphas]
    rows: list[dict[str, Any]] = []

    def record(setting: str, rho: float, alpha: float, share: float, metrics: dict[str, Any]) -> None:
        row = {"setting": setting, "rho": rho, "alpha": alpha, "share_edited": share, **metrics}
        row["scorer"] = scorer_name
        rows.append(row)
        if on_row:
            on_row(row)

    evaluate = dict(
        loaded=loaded,
        family=family,
        requests=requests,
        decoding=decoding,
        scorer=score_words,
        batch_size=batch_size,
        neutral_text=neutral_text,
    )
    bar = tqdm(total=len(settings) + 1, desc="sweep", disable=not progress)
    record("base", 0.0, 0.0, 0.0, _evaluate(**evaluate))  # type: ignore[arg-type]
    bar.update()
    for setting in settings:
        edit = apply_weight_edit(
            norms.targets,
            norms.divergent,
            norms.convergent,
            rho=setting.rho,
            alpha=setting.alpha,
            ranking=ranking,
            keep_undo=True,
        )
        try:
            metrics = _evaluate(**evaluate)  # type: ignore[arg-type]
        finally:
            edit.undo()
        record(f"rho={setting.rho:g} alpha={setting.alpha:g}", setting.rho, setting.alpha, edit.share_edited, metrics)
        bar.update()
    bar.close()
    return rows
