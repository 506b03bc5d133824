"""Choose a steering strength per model: a grid over both methods, scored with bootstrap CIs.

One run scores the base model and every setting of a weight grid (rho, alpha, prompt set,
layer range) and an activation grid (coefficient, layer) on the same requests with the
same seeds, so differences between rows come from the steering, not the dice. Per
setting: DAT valid share, DAT score, distinct-word share, AUT originality and perplexity
on a fixed neutral paragraph, each with a percentile bootstrap CI, plus the gain in the
chosen creativity objective over the base model (paired bootstrap: sample i of a setting
and sample i of the base share their seed) and the fluency cost (relative perplexity
increase). See docs/generation.md, "Sweep", for the method and how a setting is chosen.

Rows are appended to the output file the moment a setting finishes; rerunning the same
command skips the settings already there, so a killed sweep resumes where it stopped.
The Wanda norms and the steering vectors do not depend on rho, alpha or the
coefficient, so they are computed once per prompt set; each weight setting edits the
weights in place, samples, and undoes the edit exactly.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from generation.backends import HFBackend
from generation.fluency import NEUTRAL_TEXT, token_nlls
from generation.loading import LoadedModel, find_decoder_layers, load_model, parse_layers
from generation.parsers import parse_dat_words
from generation.sampling import derive_row_seed
from generation.task_families import TaskFamily, build_prompt, get_task_family
from generation.types import DecodingSettings, SampleRequest
from generation.weight_steering import WandaNorms, WeightSteeringConfig, apply_weight_edit, compute_norms

DEFAULT_WORD_LIST = Path("/usr/share/dict/words")
METRICS = ("dat_valid_share", "dat_score", "distinct_word_share", "aut_originality", "perplexity")
OBJECTIVES = ("aut_originality", "dat_score", "dat_valid_share", "distinct_word_share")
ALL_LAYERS = "all"


WordScorer = Callable[[Sequence[str]], tuple[float | None, list[str]]]
UseScorer = Callable[[Sequence[str], Sequence[str]], list[float]]


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


def default_scorer(loaded: LoadedModel, *, embedding: str | None = None, word_list: str | None = None) -> WordScorer:
    """``analysis``' DAT scorer when importable, else :class:`PlaceholderDatScorer`."""
    try:
        return AnalysisDatScorer(embedding, word_list)
    except ImportError:
        return PlaceholderDatScorer(loaded, word_list)


def default_use_scorer() -> UseScorer | None:
    """AUT originality per answer from ``analysis.aut`` (semantic distance of uses from the object), if importable."""
    try:
        from analysis.aut import score_aut
        from analysis.embeddings import default_embedder
    except ImportError:
        return None
    embedder = default_embedder()

    def originality(texts: Sequence[str], objects: Sequence[str]) -> list[float]:
        return [
            float(v) for v in score_aut(list(texts), item_texts=list(objects), embedder=embedder)["aut_originality"]
        ]

    originality.name = f"analysis.aut:{embedder.name}"  # type: ignore[attr-defined]
    return originality


@dataclass(frozen=True)
class Setting:
    """One row of the grid: the base model, a weight edit or an activation addition."""

    method: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def key(self) -> str:
        if self.method == "base":
            return "base"
        return f"{self.method} " + " ".join(f"{name}={value}" for name, value in self.params)

    def condition_params(self) -> dict[str, Any]:
        """Parameters as a study spec's condition takes them (``layers`` omitted when all)."""
        values = self.values
        if values.get("layers") == ALL_LAYERS:
            del values["layers"]
        return values


@dataclass(frozen=True)
class SweepGrid:
    """The settings to try. Either method's grid may be empty (no rho, or no coefficient)."""

    rhos: Sequence[float] = (0.05, 0.1)
    alphas: Sequence[float] = (0.5, 1.0)
    prompt_sets: Sequence[str] = ("dat",)
    layer_ranges: Sequence[str] = (ALL_LAYERS,)
    coeffs: Sequence[float] = (2.0, 4.0)
    activation_layers: Sequence[int] = (10,)
    activation_prompt_set: str = "dat"

    def settings(self) -> list[Setting]:
        rows = [Setting("base")]
        for prompt_set, layers, rho, alpha in itertools.product(
            self.prompt_sets, self.layer_ranges, self.rhos, self.alphas
        ):
            weight: tuple[tuple[str, Any], ...] = (
                ("rho", float(rho)),
                ("alpha", float(alpha)),
                ("prompt_set", prompt_set),
                ("layers", layers),
            )
            rows.append(Setting("weight", weight))
        for layer, coeff in itertools.product(self.activation_layers, self.coeffs):
            activation: tuple[tuple[str, Any], ...] = (
                ("coeff", float(coeff)),
                ("layers", int(layer)),
                ("prompt_set", self.activation_prompt_set),
            )
            rows.append(Setting("activation", activation))
        return rows


def _requests(family: TaskFamily, n_samples: int, seed: int) -> list[SampleRequest]:
    """``n_samples`` requests spread round-robin over the family's items (for the DAT: its answer formats)."""
    items = itertools.cycle(family.items)
    return [SampleRequest((item := next(items)).key, item.text, index, seed) for index in range(n_samples)]


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of ``statistic(indices)`` over ``n_boot`` resamples of ``range(n)`` with replacement.

    The statistic receives index arrays, so paired quantities (a setting and the base row
    sampled with the same seeds) are resampled together. NaN resamples are dropped.
    """
    if n < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(n_boot)], dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return (math.nan, math.nan)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else math.nan


def metric_statistics(answers: dict[str, Any]) -> dict[str, Callable[[np.ndarray], float]]:
    """Each metric as a function of resampled answer (or token) indices."""
    valid = np.array(answers["dat_valid"], dtype=float)
    score = np.array([math.nan if s is None else s for s in answers["dat_score"]], dtype=float)
    words: list[list[str]] = answers["dat_words"]
    originality = np.array([math.nan if v is None else v for v in answers["aut_originality"]], dtype=float)
    nll = np.array(answers["token_nll"], dtype=float)

    def distinct(idx: np.ndarray) -> float:
        chosen = [w for i in idx for w in words[i]]
        return len(set(chosen)) / len(chosen) if chosen else math.nan

    return {
        "dat_valid_share": lambda idx: float(valid[idx].mean()) if len(valid) else math.nan,
        "dat_score": lambda idx: _nanmean(score[idx]),
        "distinct_word_share": distinct,
        "aut_originality": lambda idx: _nanmean(originality[idx]),
        "perplexity": lambda idx: float(math.exp(nll[idx].mean())),
    }


def _units(answers: dict[str, Any], metric: str) -> int:
    if metric == "perplexity":
        return len(answers["token_nll"])
    if metric == "aut_originality":
        return len(answers["aut_originality"])
    return len(answers["dat_valid"])


def summarise(answers: dict[str, Any], *, n_boot: int, seed: int) -> dict[str, float]:
    """Estimate and 95% CI of every metric: ``{metric, metric_low, metric_high}``."""
    out: dict[str, float] = {}
    for metric, statistic in metric_statistics(answers).items():
        n = _units(answers, metric)
        out[metric] = statistic(np.arange(n)) if n else math.nan
        out[f"{metric}_low"], out[f"{metric}_high"] = bootstrap_ci(statistic, n, n_boot=n_boot, seed=seed)
    if sum(bool(valid) for valid in answers["dat_valid"]) < 2:
        # One valid answer resamples to itself: a zero-width interval would claim certainty.
        out["dat_score_low"] = out["dat_score_high"] = math.nan
    return out


def gain_over_base(
    row: dict[str, Any], base: dict[str, Any], objective: str, *, n_boot: int, seed: int
) -> dict[str, float]:
    """Gain in ``objective`` over the base row with a paired bootstrap CI, and the fluency cost.

    Fluency cost is the relative perplexity increase, ``perplexity / base perplexity - 1``.
    """
    ours = metric_statistics(row["answers"])[objective]
    theirs = metric_statistics(base["answers"])[objective]
    n = min(_units(row["answers"], objective), _units(base["answers"], objective))

    def difference(idx: np.ndarray) -> float:
        return ours(idx) - theirs(idx)

    low, high = bootstrap_ci(difference, n, n_boot=n_boot, seed=seed)
    return {
        "gain": difference(np.arange(n)) if n else math.nan,
        "gain_low": low,
        "gain_high": high,
        "fluency_cost": row["perplexity"] / base["perplexity"] - 1,
    }


@dataclass
class SweepContext:
    """What every setting is evaluated with: the model, the requests, the scorers."""

    loaded: LoadedModel
    dat_family: TaskFamily
    aut_family: TaskFamily
    dat_requests: list[SampleRequest]
    aut_requests: list[SampleRequest]
    decoding: DecodingSettings
    score_words: WordScorer
    score_uses: UseScorer | None
    batch_size: int
    neutral_text: str
    _prompts: dict[str, list[str]] = field(default_factory=dict)

    def _generate(self, backend: HFBackend, family: TaskFamily, requests: list[SampleRequest]) -> list[str]:
        if family.name not in self._prompts:
            self._prompts[family.name] = [build_prompt(self.loaded.tokenizer, family, r.item_text) for r in requests]
        prompts = self._prompts[family.name]
        texts: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            seeds = [derive_row_seed(r.seed, r.item_key, r.sample_index) for r in batch]
            results = backend.generate(prompts[start : start + self.batch_size], seeds, self.decoding)
            texts.extend(result.text for result in results)
        return texts

    def _token_nlls(self, backend: HFBackend) -> list[float]:
        # The fluency of the steered model: activation steering must be on while it reads the text too.
        with backend.steered():
            return token_nlls(self.loaded.model, self.loaded.tokenizer, self.neutral_text)

    def evaluate(self, backend: HFBackend) -> dict[str, Any]:
        """Per-answer values of every metric under ``backend`` (the raw material of the bootstrap)."""
        dat_texts = self._generate(backend, self.dat_family, self.dat_requests)
        scored = [self.score_words(parse_dat_words(text)) for text in dat_texts]
        aut_texts = self._generate(backend, self.aut_family, self.aut_requests)
        objects = [r.item_text for r in self.aut_requests]
        originality = self.score_uses(aut_texts, objects) if self.score_uses and aut_texts else []
        return {
            "dat_valid": [score is not None for score, _ in scored],
            "dat_score": [score for score, _ in scored],
            "dat_words": [words for _, words in scored],
            "aut_originality": [None if math.isnan(v) else v for v in originality],
            "token_nll": self._token_nlls(backend),
            "example_dat": dat_texts[0] if dat_texts else "",
            "example_aut": aut_texts[0] if aut_texts else "",
        }


# Columns of the CSV form, in order; `answers` holds the per-answer values as JSON.
SCALAR_COLUMNS = [
    "setting", "method", "rho", "alpha", "prompt_set", "layers", "coeff", "share_edited", "n_weights_considered",
    "n_dat", "n_aut", "n_tokens",
    *[name for metric in METRICS for name in (metric, f"{metric}_low", f"{metric}_high")],
    "seconds", "fingerprint", "dat_scorer", "aut_scorer", "example_dat", "example_aut",
]  # fmt: skip
_TEXT_COLUMNS = {"setting", "method", "prompt_set", "layers", "fingerprint", "dat_scorer", "aut_scorer"}
_TEXT_COLUMNS |= {"example_dat", "example_aut"}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows already in a sweep file (JSONL or CSV); an empty list when it does not exist."""
    if not path.is_file():
        return []
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for name, value in raw.items():
                if name == "answers":
                    row[name] = json.loads(value)
                elif name in _TEXT_COLUMNS or value == "":
                    row[name] = value if name in _TEXT_COLUMNS else None
                else:
                    row[name] = float(value)
            rows.append(row)
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one finished row and flush it to disk (the resume point of a killed sweep)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as handle:
        if path.suffix == ".jsonl":
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(handle, fieldnames=[*SCALAR_COLUMNS, "answers"], extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({**row, "answers": json.dumps(row["answers"], ensure_ascii=False)})
        handle.flush()


def _fingerprint(**settings: Any) -> str:
    payload = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run_sweep(
    model: str | Path,
    grid: SweepGrid,
    *,
    out: Path | None = None,
    ranking: str = "matrix",
    module_patterns: Sequence[str] = ("*",),
    prompt_file: str | None = None,
    n_dat: int = 16,
    n_aut: int = 16,
    seed: int = 0,
    decoding: DecodingSettings | None = None,
    scorer: WordScorer | None = None,
    use_scorer: UseScorer | None = None,
    embedding: str | None = None,
    word_list: str | None = None,
    batch_size: int = 16,
    n_boot: int = 1000,
    neutral_text: str = NEUTRAL_TEXT,
    device: str | None = None,
    dtype: str | None = None,
    progress: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Score the base model and every setting of ``grid``; one dict per setting, base first.

    Long because it documents every option of a sweep. A row: ``setting, method`` and its
    parameters, ``share_edited``, every metric of :data:`METRICS` with ``_low``/``_high`` CI bounds
    (``n_boot`` resamples), ``seconds``, the scorers' names, an example answer per task and
    ``answers`` (per-answer values, for paired gains).

    Parameters
    ----------
    model, grid
        ``"embedded"``, a model directory or a ``.gguf`` file (loaded once with ``device``,
        ``dtype``); the weight and activation settings (:class:`SweepGrid`).
    out
        ``.jsonl`` or ``.csv`` file: each row is appended as soon as it is ready, and rows
        already there (from an interrupted run of the same sweep) are reused, not recomputed.
        A file written by a different sweep (other model, samples, seed or decoding) is an error.
    ranking, module_patterns, prompt_file
        Weight-edit options shared by every weight setting.
    n_dat, n_aut, seed, decoding
        DAT and AUT answers per setting (round-robin over items) and how they are sampled.
    scorer, use_scorer
        ``words -> (score | None, valid words)`` for the DAT and ``(texts, objects) ->
        originality per text`` for the AUT; defaults from ``analysis`` (see
        :func:`default_scorer`, :func:`default_use_scorer`).
    on_row
        Called with each row as soon as it is ready, also for rows reused from ``out``."""
    decoding = decoding or DecodingSettings(max_new_tokens=64)
    if n_dat < 1 and n_aut < 1:
        raise ValueError("a sweep needs at least one DAT or AUT answer per setting")
    loaded = load_model(model, device=device, dtype=dtype)
    score_words = scorer or default_scorer(loaded, embedding=embedding, word_list=word_list)
    score_uses = use_scorer if use_scorer is not None else default_use_scorer()
    scorer_names = _scorer_names(score_words, score_uses)
    fingerprint = _fingerprint(
        model=loaded.sha256, dtype=str(next(loaded.model.parameters()).dtype), n_dat=n_dat, n_aut=n_aut, seed=seed,
        decoding=decoding.as_dict(), ranking=ranking, modules=list(module_patterns), prompt_file=prompt_file,
        neutral=hashlib.sha256(neutral_text.encode()).hexdigest(), **scorer_names,
    )  # fmt: skip
    done = _rows_to_reuse(out, fingerprint)
    dat_family, aut_family = get_task_family("dat"), get_task_family("aut")
    context = SweepContext(
        loaded=loaded, dat_family=dat_family, aut_family=aut_family, decoding=decoding,
        dat_requests=_requests(dat_family, n_dat, seed), aut_requests=_requests(aut_family, n_aut, seed),
        score_words=score_words, score_uses=score_uses, batch_size=batch_size, neutral_text=neutral_text,
    )  # fmt: skip
    steerer = _Steerer(loaded, grid, ranking, module_patterns, prompt_file, progress)
    settings = grid.settings()
    steerer.check_layers(settings)

    def measure(setting: Setting) -> dict[str, Any]:
        return _setting_measured(setting, steerer, context, n_boot=n_boot, seed=seed) | {
            "fingerprint": fingerprint,
            **scorer_names,
        }

    return _sweep_rows(settings, done, measure, out=out, on_row=on_row, progress=progress)


def _sweep_rows(
    settings: Sequence[Setting],
    done: dict[str, dict[str, Any]],
    measure: Callable[[Setting], dict[str, Any]],
    *,
    out: Path | None,
    on_row: Callable[[dict[str, Any]], None] | None,
    progress: bool,
) -> list[dict[str, Any]]:
    """Every setting's row, reused from an interrupted run or measured now (and appended to ``out``)."""
    rows: list[dict[str, Any]] = []
    for setting in tqdm(settings, desc="sweep", disable=not progress):
        row = done.get(setting.key)
        if row is None:
            row = measure(setting)
            if out:
                append_row(out, row)
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def _scorer_names(score_words: Any, score_uses: Any) -> dict[str, str]:
    """The scorers' names, part of a sweep's fingerprint and of every row."""
    return {
        "dat_scorer": getattr(score_words, "name", getattr(score_words, "__name__", "custom")),
        "aut_scorer": getattr(score_uses, "name", "custom") if score_uses else "none",
    }


def _setting_measured(
    setting: Setting, steerer: _Steerer, context: SweepContext, *, n_boot: int, seed: int
) -> dict[str, Any]:
    """One setting's row: its answers generated and scored, with the seconds it took."""
    started = time.perf_counter()
    row = _result_row(setting, steerer.measure(setting, context), n_boot=n_boot, seed=seed)
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def _rows_to_reuse(out: Path | None, fingerprint: str) -> dict[str, dict[str, Any]]:
    """Rows of ``out`` by setting, written by an interrupted run of this same sweep; an error for another sweep's."""
    done = {row["setting"]: row for row in read_rows(out)} if out else {}
    stale = sorted({row["fingerprint"] for row in done.values()} - {fingerprint})
    if stale:
        raise ValueError(
            f"{out} holds rows of a different sweep (fingerprint {stale[0]}, this one {fingerprint}): "
            "use another --out, or delete the file to start again"
        )
    return done


@dataclass
class _Steerer:
    """Puts each setting on the loaded model; the norms and vectors it needs are computed once per prompt set."""

    loaded: LoadedModel
    grid: SweepGrid
    ranking: str
    module_patterns: Sequence[str]
    prompt_file: str | None
    progress: bool
    _norms: dict[str, WandaNorms] = field(default_factory=dict)
    _vectors: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return len(find_decoder_layers(self.loaded.model))

    def check_layers(self, settings: Sequence[Setting]) -> None:
        """Raise ``ValueError`` for a layer selection the model lacks, before any setting runs."""
        n_layers = self.n_layers
        for setting in settings:
            if setting.method == "weight":
                parse_layers(None if setting.values["layers"] == ALL_LAYERS else setting.values["layers"], n_layers)
            elif setting.method == "activation":
                parse_layers(setting.values["layers"], n_layers)

    def wanda_norms(self, prompt_set: str) -> WandaNorms:
        if prompt_set not in self._norms:
            config = WeightSteeringConfig(
                prompt_set=prompt_set,
                prompt_file=self.prompt_file,
                ranking=self.ranking,
                module_patterns=tuple(self.module_patterns),
            )
            self._norms[prompt_set] = compute_norms(self.loaded, config, progress=self.progress)
        return self._norms[prompt_set]

    def steering_vector(self, prompt_set: str, layer: int) -> torch.Tensor:
        if prompt_set not in self._vectors:
            from generation.activation_steering import compute_steering_vectors

            made = compute_steering_vectors(
                self.loaded,
                prompt_set=prompt_set,
                layers=sorted(set(self.grid.activation_layers)),
                prompt_file=self.prompt_file,
                progress=self.progress,
            )
            self._vectors[prompt_set] = made.vectors
        return self._vectors[prompt_set][layer]

    def measure(self, setting: Setting, context: SweepContext) -> dict[str, Any]:
        """The answers under ``setting``, and the share of weights it edited; the model is left unsteered."""
        values = setting.values
        if setting.method == "weight":
            return self._measure_weight_edit(values, context)
        if setting.method == "activation":
            vector = self.steering_vector(values["prompt_set"], values["layers"])
            answers = context.evaluate(HFBackend(self.loaded, {values["layers"]: vector}, values["coeff"]))
        else:
            answers = context.evaluate(HFBackend(self.loaded))
        return {"share_edited": 0.0, "n_weights_considered": 0, "answers": answers}

    def _measure_weight_edit(self, values: dict[str, Any], context: SweepContext) -> dict[str, Any]:
        wanda = self.wanda_norms(values["prompt_set"])
        selection = None if values["layers"] == ALL_LAYERS else values["layers"]
        chosen = set(parse_layers(selection, self.n_layers))
        targets = [t for t in wanda.targets if t.layer in chosen]
        if not targets:
            raise ValueError(f"no weights to edit in layers {values['layers']!r} with modules {self.module_patterns}")
        edit = apply_weight_edit(
            targets,
            wanda.divergent,
            wanda.convergent,
            rho=values["rho"],
            alpha=values["alpha"],
            ranking=self.ranking,
            keep_undo=True,
        )
        try:
            answers = context.evaluate(HFBackend(self.loaded))
        finally:
            edit.undo()
        return {"share_edited": edit.share_edited, "n_weights_considered": edit.n_considered, "answers": answers}


def _result_row(setting: Setting, measured: dict[str, Any], *, n_boot: int, seed: int) -> dict[str, Any]:
    """One row of the sweep's output (without timing, fingerprint and scorer names): parameters, metrics, answers."""
    answers = measured["answers"]
    row = {
        "setting": setting.key,
        "method": setting.method,
        "rho": None,
        "alpha": None,
        "prompt_set": None,
        "layers": None,
        "coeff": None,
        **setting.values,
        "share_edited": measured["share_edited"],
        "n_weights_considered": measured["n_weights_considered"],
        "n_dat": len(answers["dat_valid"]),
        "n_aut": len(answers["aut_originality"]),
        "n_tokens": len(answers["token_nll"]),
        **summarise(answers, n_boot=n_boot, seed=seed),
        "seconds": None,
        "fingerprint": None,
        "dat_scorer": None,
        "aut_scorer": None,
        "example_dat": answers.pop("example_dat"),
        "example_aut": answers.pop("example_aut"),
        "answers": answers,
    }
    row["layers"] = None if row["layers"] is None else str(row["layers"])
    return row


@dataclass(frozen=True)
class Choice:
    """The best setting of one method within the fluency budget, or why there is none."""

    method: str
    row: dict[str, Any] | None
    gain: dict[str, float] | None
    reason: str


def with_gains(
    rows: Sequence[dict[str, Any]], objective: str, *, n_boot: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """Rows with ``gain, gain_low, gain_high, fluency_cost`` against the base row added."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    base = next((row for row in rows if row["method"] == "base"), None)
    if base is None:
        raise ValueError("the sweep has no base row to measure gains against")
    return [{**row, **gain_over_base(row, base, objective, n_boot=n_boot, seed=seed)} for row in rows]


def choose_settings(rows: Sequence[dict[str, Any]], *, fluency_budget: float) -> list[Choice]:
    """Per steering method, the setting with the largest positive gain whose fluency cost is within budget.

    ``rows`` come from :func:`with_gains`. A method whose every setting costs more fluency
    than ``fluency_budget`` (a relative perplexity increase, 0.1 = +10%), or gains nothing,
    gets a :class:`Choice` with ``row=None`` and the reason.
    """
    choices = []
    for method in ("weight", "activation"):
        candidates = [row for row in rows if row["method"] == method]
        if not candidates:
            continue
        affordable = [row for row in candidates if row["fluency_cost"] <= fluency_budget]
        gaining = [row for row in affordable if not math.isnan(row["gain"]) and row["gain"] > 0]
        if not affordable:
            reason = f"every {method} setting raises perplexity by more than {fluency_budget:.0%}"
            choices.append(Choice(method, None, None, reason))
        elif not gaining:
            reason = f"no {method} setting within the fluency budget gains over the base model"
            choices.append(Choice(method, None, None, reason))
        else:
            best = max(gaining, key=lambda row: row["gain"])
            excludes_zero = not math.isnan(best["gain_low"]) and best["gain_low"] > 0
            reason = (
                "its gain's 95% CI excludes 0" if excludes_zero else "its gain's 95% CI includes 0: treat as tentative"
            )
            choices.append(Choice(method, best, {k: best[k] for k in ("gain", "gain_low", "gain_high")}, reason))
    return choices


def spec_snippet(
    choices: Iterable[Choice], *, model_key: str, objective: str, fluency_budget: float, command: str
) -> str:
    """YAML conditions for a study spec (its ``conditions:`` list), one per chosen method, with how they were chosen."""
    import yaml

    lines = [
        f"# Chosen by: {command}",
        f"# Objective {objective}; fluency budget: perplexity at most +{fluency_budget:.0%} over the base model.",
    ]
    conditions = []
    for choice in choices:
        if choice.row is None or choice.gain is None:
            lines.append(f"# {choice.method}: none chosen ({choice.reason}).")
            continue
        row = choice.row
        lines.append(
            f"# {choice.method}: {row['setting']}: gain {choice.gain['gain']:+.4g} "
            f"[{choice.gain['gain_low']:+.4g}, {choice.gain['gain_high']:+.4g}], "
            f"perplexity {row['perplexity']:.3g} ({row['fluency_cost']:+.1%}); {choice.reason}."
        )
        setting = Setting(row["method"], tuple(_setting_params(row)))
        conditions.append(
            {
                "key": f"{model_key}-{choice.method}",
                "model": model_key,
                "method": choice.method,
                "params": setting.condition_params(),
            }
        )
    body = yaml.safe_dump(conditions, sort_keys=False, default_flow_style=None) if conditions else "[]\n"
    return "\n".join(lines) + "\n" + body


def _setting_params(row: dict[str, Any]) -> list[tuple[str, Any]]:
    if row["method"] == "weight":
        return [
            ("rho", row["rho"]),
            ("alpha", row["alpha"]),
            ("prompt_set", row["prompt_set"]),
            ("layers", row["layers"]),
        ]
    layers = row["layers"]
    return [("coeff", row["coeff"]), ("layers", int(float(layers))), ("prompt_set", row["prompt_set"])]


def plot_gain_vs_cost(
    rows: Sequence[dict[str, Any]], path: Path, *, objective: str, fluency_budget: float, title: str = ""
) -> None:
    """Gain over the base model (with its 95% CI) against fluency cost, one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for method, colour in (("weight", "tab:blue"), ("activation", "tab:orange")):
        points = [row for row in rows if row["method"] == method]
        if not points:
            continue
        x = [100 * row["fluency_cost"] for row in points]
        y = [row["gain"] for row in points]
        low = [max(0.0, row["gain"] - row["gain_low"]) if not math.isnan(row["gain_low"]) else 0.0 for row in points]
        high = [max(0.0, row["gain_high"] - row["gain"]) if not math.isnan(row["gain_high"]) else 0.0 for row in points]
        axes.errorbar(x, y, yerr=[low, high], fmt="o", color=colour, label=method, capsize=3, alpha=0.85)
        for row, xi, yi in zip(points, x, y, strict=True):
            label = row["setting"].split(" ", 1)[1].replace("prompt_set=", "").replace(" ", "\n")
            axes.annotate(label, (xi, yi), fontsize=5.5, xytext=(4, 2), textcoords="offset points")
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.axvline(100 * fluency_budget, color="tab:red", linestyle="--", linewidth=0.8, label="fluency budget")
    axes.set_xlabel("fluency cost: perplexity increase over base (%)")
    axes.set_ylabel(f"gain in {objective} over base (95% CI)")
    axes.set_title(title or f"Sweep: {objective} gain vs fluency cost", fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=130)
    plt.close(figure)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of the rows (with gains), as the README shows it."""

    def ci(row: dict[str, Any], metric: str, digits: int) -> str:
        value = row[metric]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        low, high = row[f"{metric}_low"], row[f"{metric}_high"]
        if low is None or math.isnan(low):
            return f"{value:.{digits}f}"
        return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"

    header = (
        "| setting | edited | DAT valid | DAT score | distinct words | AUT originality | perplexity "
        "| gain [95% CI] | fluency cost |\n| --- | ---: | --- | --- | --- | --- | --- | --- | ---: |"
    )
    lines = [header]
    for row in rows:
        gain = (
            "–" if row["method"] == "base" else f"{row['gain']:+.3f} [{row['gain_low']:+.3f}, {row['gain_high']:+.3f}]"
        )
        lines.append(
            f"| {row['setting']} | {row['share_edited']:.2%} | {ci(row, 'dat_valid_share', 2)} "
            f"| {ci(row, 'dat_score', 1)} "
            f"| {ci(row, 'distinct_word_share', 2)} | {ci(row, 'aut_originality', 3)} | {ci(row, 'perplexity', 2)} "
            f"| {gain} | {row['fluency_cost']:+.1%} |"
        )
    return "\n".join(lines)
