"""Study specs: a versioned YAML file that defines a whole study.

:func:`spec_parse` checks a spec completely and returns either a :class:`StudySpec` (plain
data, nothing written) or raises :class:`SpecError` listing *every* problem with its path in
the file, e.g. ``deployments[3].conditions[1]: unknown condition 'weigth'``. Writing the
checked spec to the database is :func:`studyapp.studies.study_loading.study_load`.

The format is documented in ``studies/README.md`` ("The spec format"); a ``factorial`` block
(``spec_factorial.py``) is expanded into explicit conditions and deployments before the checks.
Torch-free: the web process validates specs too.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from generation.safe_yaml import YamlLimitError, yaml_load_limited
from generation.task_families import template_problem
from studyapp.studies import paths
from studyapp.studies.spec_factorial import factorial_expand
from studyapp.studies.vocabulary import METHODS, SCALES, SLIDER, balance_problem, did_you_mean, pairing_problem

SUPPORTED_SPEC_VERSIONS = ("1",)
PARSERS = ("dat_words", "aut_uses", "cc_walk")
_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")

# Parameters each steering method understands (generation.types.ConditionSpec). A typo such
# as "alpah" would otherwise be silently ignored and the study would run unsteered.
METHOD_PARAMS: dict[str, dict[str, tuple[type, ...]]] = {
    "base": {},
    "weight": {
        "rho": (int, float),
        "alpha": (int, float),
        "prompt_set": (str,),
        "ranking": (str,),
        "module_patterns": (list, str),
        "layers": (list, str, int),
        "prompt_file": (str,),
    },
    "activation": {
        "prompt_set": (str,),
        "layers": (list, str, int),
        "coeff": (int, float),
        "prompt_file": (str,),
    },
    "prompt": {"instruction": (str,)},
    "temperature": {"temperature": (int, float)},
}
REQUIRED_PARAMS = {"prompt": ("instruction",), "temperature": ("temperature",)}

DEFAULT_DIMENSIONS = (
    {"key": "originality", "question": "How original is this response?"},
    {"key": "surprise", "question": "How surprising is this response?"},
    {"key": "creativity", "question": "How creative is this response?"},
)
# What a rater is told each scale means (docs/rating.md: novelty, surprise and the
# standard definition of creativity as novel and useful). A spec's own definition wins.
DEFAULT_DEFINITIONS = {
    "originality": "How new or uncommon the ideas are: a response most people would not think of is original.",
    "surprise": 'How unexpected the response is: whether it made you think "I would not have predicted that".',
    "creativity": "Both original and fitting: a creative response is new and still makes sense for the task.",
}
DECODING_FIELDS: dict[str, tuple[type, ...]] = {
    "max_new_tokens": (int,),
    "temperature": (int, float),
    "top_p": (int, float),
    "do_sample": (bool,),
}


# The largest values the study's columns hold: PostgreSQL's integer (PositiveIntegerField) and
# bigint (the seed). Minutes are capped at a week: a slot timeout is read as a time span.
INTEGER_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
MINUTES_MAX = 7 * 24 * 60


class SpecError(ValueError):
    """A spec with problems; ``problems`` holds every one as ``"path: message"``."""

    def __init__(self, problems: list[str], source: str = "spec") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: {len(problems)} problem(s): " + "; ".join(problems))


@dataclass
class StudySpec:
    """A checked spec: plain data ready to be written by ``study_load``."""

    raw: dict
    sha256: str
    version: str
    study: dict
    models: list[dict]
    conditions: list[dict]
    tasks: list[dict]
    deployments: list[dict]
    dimensions: list[dict]
    attention_checks: list[dict] = field(default_factory=list)


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def mapping(
        self, value: Any, path: str, *, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
    ) -> dict:
        if not isinstance(value, Mapping):
            self.problem(path, f"expected a mapping, got {_kind(value)}")
            return {}
        for key in sorted(set(map(str, value)) - allowed):
            self.problem(_join(path, key), f"unknown field (expected one of: {', '.join(sorted(allowed))})")
        for key in sorted(required - set(map(str, value))):
            self.problem(_join(path, key), "required field is missing")
        return {str(k): v for k, v in value.items()}

    def listing(self, value: Any, path: str, *, required: bool = True) -> list:
        if value is None and not required:
            return []
        if not isinstance(value, list):
            self.problem(path, f"expected a list, got {_kind(value)}")
            return []
        if required and not value:
            self.problem(path, "must not be empty")
        return value

    def text(self, value: Any, path: str, *, default: str | None = None, max_length: int | None = None) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.problem(path, f"expected text, got {_kind(value)}")
            return ""
        value = str(value)
        if max_length is not None and len(value) > max_length:
            self.problem(path, f"longer than {max_length} characters")
        return value

    def slug(self, value: Any, path: str) -> str:
        value = self.text(value, path)
        if value and (not _SLUG.match(value) or len(value) > 64):
            self.problem(path, f"{value!r} is not a valid key (letters, digits, '-' and '_', at most 64)")
        return value

    def integer(
        self,
        value: Any,
        path: str,
        *,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int = INTEGER_MAX,
    ) -> int:
        """A whole number within [minimum, maximum]; the default maximum is what the database's
        integer columns hold (a larger one failed on save, a 500)."""
        if value is None and default is not None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(path, f"expected a whole number, got {_kind(value)}")
            return default or 0
        if minimum is not None and value < minimum:
            self.problem(path, f"must be at least {minimum}, got {value}")
        if value > maximum:
            self.problem(path, f"must be at most {maximum:,}, got {value:,}")
            return default or 0
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...], *, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        if value not in choices:
            self.problem(path, f"unknown value {value!r} (expected one of: {', '.join(choices)})")
            return ""
        return str(value)

    def unique_keys(self, entries: list[dict], path: str, key: str = "key") -> None:
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            value = entry.get(key)
            if not value:
                continue
            if value in seen:
                self.problem(f"{path}[{index}].{key}", f"duplicate {key} {value!r} (first at {path}[{seen[value]}])")
            else:
                seen[value] = index


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(type(value), type(value).__name__)


TOP_LEVEL = {
    "spec_version", "slug", "title", "description", "seed", "samples_per_item", "decoding", "generation",
    "raters", "models", "conditions", "tasks", "deployments", "dimensions", "attention_checks", "consent",
    "instructions", "practice", "debrief_questions", "prolific", "pilot", "factorial",
}  # fmt: skip


def unstorable_values(value: object, path: str) -> Iterator[tuple[str, str]]:
    """(path, problem) for what PostgreSQL cannot store in text or JSON: NUL characters, non-finite numbers."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path, "contains a NUL character (\\x00), which cannot be stored"
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield path, f"{value} is not a finite number"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            item_path = f"{path}.{key!s}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                yield item_path.replace("\x00", "\\x00"), "contains a NUL character (\\x00), which cannot be stored"
            else:
                yield from unstorable_values(item, item_path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable_values(item, f"{path}[{index}]")


def spec_parse(text: str | bytes, *, source: str = "spec") -> StudySpec:
    """Check a YAML spec and return it as plain data; raise :class:`SpecError` listing every problem."""
    raw_bytes = text.encode("utf-8") if isinstance(text, str) else text
    try:
        data = yaml_load_limited(raw_bytes)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "file"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        kind = "YAML beyond the loader's limits" if isinstance(error, YamlLimitError) else "not valid YAML"
        raise SpecError([f"{where}: {kind} ({problem})"], source) from None
    check = _Checker()
    for path, problem in unstorable_values(data, ""):
        # The spec is stored as JSON in PostgreSQL: say so here rather than fail on save.
        check.problem(path or "spec", problem)
    top = check.mapping(data, "", allowed=TOP_LEVEL, required={"spec_version", "slug", "title", "models", "tasks"})
    if not top and not isinstance(data, Mapping):
        raise SpecError(check.problems, source)
    # The factorial form becomes the explicit one first: the checks below see one form only.
    expansion = factorial_expand(check, top)
    if expansion is not None:
        top = {**top, "conditions": expansion.conditions, "deployments": expansion.deployments}

    version = check.text(top.get("spec_version"), "spec_version", default="")
    if "spec_version" in top and version not in SUPPORTED_SPEC_VERSIONS:
        check.problem(
            "spec_version", f"unsupported version {version!r} (supported: {', '.join(SUPPORTED_SPEC_VERSIONS)})"
        )

    study = _check_study(check, top)
    models = _check_models(check, top.get("models"))
    model_keys = [m["key"] for m in models if m["key"]]
    vllm_models = frozenset(m["key"] for m in models if m["backend"] == "vllm")
    conditions = _check_conditions(check, top.get("conditions"), model_keys, vllm_models)
    tasks = _check_tasks(check, top.get("tasks"))
    dimensions = _check_dimensions(check, top.get("dimensions"))
    deployments = _check_deployments(check, top.get("deployments"), models, conditions, tasks, study, top)
    attention = _check_attention(check, top.get("attention_checks"), study, deployments)
    _check_paths(check, study, models, conditions)

    if check.problems:
        raise SpecError(expansion.relocate(check.problems) if expansion else check.problems, source)
    return StudySpec(
        raw=dict(data),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        version=version,
        study=study,
        models=models,
        conditions=conditions,
        tasks=tasks,
        deployments=deployments,
        dimensions=dimensions,
        attention_checks=attention,
    )


def _check_study(check: _Checker, top: dict) -> dict:
    """The study's own settings, as Study fields: top-level fields, then each section in turn."""
    study: dict[str, Any] = {
        "slug": check.slug(top.get("slug"), "slug") if "slug" in top else "",
        "title": check.text(top.get("title"), "title", max_length=200) if "title" in top else "",
        "description": check.text(top.get("description"), "description", default=""),
        "seed": check.integer(top.get("seed"), "seed", default=0, minimum=0, maximum=BIGINT_MAX),
        "samples_per_item": check.integer(top.get("samples_per_item"), "samples_per_item", default=1, minimum=1),
        "consent_text": check.text(top.get("consent"), "consent", default=""),
        "instructions_text": check.text(top.get("instructions"), "instructions", default=""),
    }
    study["decoding"] = _check_decoding(check, top)
    generation = check.mapping(top.get("generation", {}), "generation", allowed={"batch_size"})
    study["generation_batch_size"] = check.integer(
        generation.get("batch_size"), "generation.batch_size", default=16, minimum=1
    )
    _check_raters(check, top, study)
    _check_prolific(check, top, study)
    _check_rater_pages(check, top, study)
    return study


def _check_decoding(check: _Checker, top: dict) -> dict:
    decoding = check.mapping(top.get("decoding", {}), "decoding", allowed=set(DECODING_FIELDS))
    for key, value in decoding.items():
        types = DECODING_FIELDS.get(key)
        if types and (not isinstance(value, types) or (bool not in types and isinstance(value, bool))):
            check.problem(f"decoding.{key}", f"expected {'a number' if float in types else types[0].__name__}")
    if isinstance(decoding.get("max_new_tokens"), int) and decoding["max_new_tokens"] < 1:
        check.problem("decoding.max_new_tokens", "must be at least 1")
    if isinstance(decoding.get("temperature"), int | float) and decoding["temperature"] < 0:
        check.problem("decoding.temperature", "must be at least 0")
    if isinstance(decoding.get("top_p"), int | float) and not 0 < decoding["top_p"] <= 1:
        check.problem("decoding.top_p", "must be in (0, 1]")
    return decoding


def decoding_problems(decoding: Any) -> list[str]:
    """What is wrong with a ``decoding`` mapping, by the spec's own rule (empty when it is fine)."""
    check = _Checker()
    _check_decoding(check, {"decoding": decoding})
    return check.problems


RATER_FIELDS = {
    "allow_paired_items",
    "per_deployment",
    "stimuli_per_rater",
    "slot_timeout_minutes",
    "samples_per_item",
    "slot_hold_minutes",
    "min_seconds_per_page",
    "expected_seconds_per_page",
}


def _check_raters(check: _Checker, top: dict, study: dict) -> None:
    """The ``raters`` section: how many raters, how much each rates, how long slots are held."""
    raters = check.mapping(top.get("raters", {}), "raters", allowed=RATER_FIELDS)
    # None: raters see every sample; k: a seeded subset of k samples per item (studyapp.studies.design).
    study["rated_samples_per_item"] = (
        None
        if raters.get("samples_per_item") is None
        else check.integer(raters["samples_per_item"], "raters.samples_per_item", minimum=1)
    )
    study["raters_per_deployment"] = check.integer(
        raters.get("per_deployment"), "raters.per_deployment", default=30, minimum=1
    )
    study["stimuli_per_rater"] = check.integer(
        raters.get("stimuli_per_rater"), "raters.stimuli_per_rater", default=10, minimum=1
    )
    study["slot_timeout_minutes"] = check.integer(
        raters.get("slot_timeout_minutes"), "raters.slot_timeout_minutes", default=30, minimum=1, maximum=MINUTES_MAX
    )
    study["slot_hold_minutes"] = check.integer(
        raters.get("slot_hold_minutes"), "raters.slot_hold_minutes", default=5, minimum=1, maximum=MINUTES_MAX
    )
    if not isinstance(raters.get("allow_paired_items", False), bool):
        check.problem("raters.allow_paired_items", "expected true or false")
    _check_rater_timing(check, raters, study)


def _check_prolific(check: _Checker, top: dict, study: dict) -> None:
    """The ``prolific`` section: the study's id there and the code for each way a participation ends."""
    prolific = check.mapping(
        top.get("prolific", {}), "prolific", allowed={"study_id", *(f"{name}_code" for name in PROLIFIC_ENDINGS)}
    )
    study["prolific_study_id"] = check.text(prolific.get("study_id"), "prolific.study_id", default="", max_length=64)
    if study["prolific_study_id"] and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", study["prolific_study_id"]):
        check.problem("prolific.study_id", "expected the study's id on Prolific (letters, digits, - and _)")
    for name in PROLIFIC_ENDINGS:
        study[f"prolific_{name}_code"] = check.text(
            prolific.get(f"{name}_code"), f"prolific.{name}_code", default="", max_length=64
        )


def _check_rater_pages(check: _Checker, top: dict, study: dict) -> None:
    """Pilot mode, and the practice and debrief pages."""
    pilot = top.get("pilot", False)
    if not isinstance(pilot, bool):
        check.problem("pilot", f"expected true or false, got {_kind(pilot)}")
    study["pilot_mode"] = pilot is True
    study["practice"] = _check_practice(check, top.get("practice", {}))
    debrief = check.listing(top.get("debrief_questions"), "debrief_questions", required=False)
    study["debrief_questions"] = _check_debrief_questions(check, debrief)


def _check_practice(check: _Checker, value: Any) -> dict:
    """The practice item: ``{prompt, text, typical: {dimension: rating}, typical_measured_in}``,
    every part optional. ``typical_measured_in`` says where the typical ratings were measured
    ("our pilot of November 2026, 24 raters"); without it they are the researchers' estimate,
    and the practice page says so."""
    practice = check.mapping(value, "practice", allowed={"prompt", "text", "typical", "typical_measured_in"})
    for key in ("prompt", "text", "typical_measured_in"):
        if key in practice:
            check.text(practice[key], f"practice.{key}")
    typical = practice.get("typical", {})
    if not isinstance(typical, Mapping):
        check.problem("practice.typical", f"expected a mapping of dimension to rating, got {_kind(typical)}")
    else:
        for key, rating in typical.items():
            if not isinstance(rating, int | float) or isinstance(rating, bool):
                check.problem(f"practice.typical.{key}", f"expected a rating (a number), got {_kind(rating)}")
    return practice


# The study fields the rater pages read, as stored (the admin edits them): checked on save by
# :func:`rater_pages_check`, with the spec's own rules.
RATER_PAGE_FIELDS = ("practice", "attention_checks", "debrief_questions")


def rater_pages_check(
    *, practice: Any, attention_checks: Any, screen_out_after: int | None, debrief_questions: Any, per_rater: int
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Check the stored practice item, attention checks and debrief questions as the spec loader
    checks them: ``(problems per field, each field's stored form)``.

    The stored form of ``attention_checks`` is the spec's ``attention_checks.items`` list, and
    ``per_rater`` the fewest stimuli per rater of the study's deployments (a check that can
    screen out comes in the first half of them). A field with no problem gets its stored form
    (a debrief question without a key gets ``q<n>``, as in a spec).
    """
    values = {"practice": practice, "attention_checks": attention_checks, "debrief_questions": debrief_questions}
    problems: dict[str, list[str]] = {}
    stored: dict[str, Any] = {}
    for field_name, value in values.items():
        check = _Checker()
        for path, problem in unstorable_values(value, field_name):
            check.problem(path, problem)
        if field_name == "practice":
            stored[field_name] = _check_practice(check, value if value is not None else {})
        elif field_name == "attention_checks":
            study: dict[str, Any] = {"stimuli_per_rater": per_rater}
            section = (
                {"items": value} if screen_out_after is None else {"items": value, "screen_out_after": screen_out_after}
            )
            stored[field_name] = _check_attention(check, section, study, [])
        else:
            entries = check.listing(value, "debrief_questions", required=False)
            stored[field_name] = _check_debrief_questions(check, entries)
        if check.problems:
            problems[field_name] = check.problems
    return problems, stored


DEBRIEF_TYPES = ("text", "choice", "number")


def debrief_questions_stored(entries: list) -> list[dict]:
    """A spec's ``debrief_questions`` in their stored form; ``SpecError`` listing every problem."""
    check = _Checker()
    stored = _check_debrief_questions(check, entries)
    if check.problems:
        raise SpecError(check.problems)
    return stored


def debrief_question_stored(entry: Any, *, index: int) -> dict:
    """One debrief question (the ``index``-th) in its stored form; ``SpecError`` listing its problems."""
    check = _Checker()
    stored = _check_debrief_question(check, entry, f"debrief_questions[{index}]", index)
    if check.problems:
        raise SpecError(check.problems)
    return stored


def _check_debrief_questions(check: _Checker, entries: list) -> list[dict]:
    stored = [
        _check_debrief_question(check, entry, f"debrief_questions[{index}]", index)
        for index, entry in enumerate(entries)
    ]
    check.unique_keys(stored, "debrief_questions")
    return stored


def _check_debrief_question(check: _Checker, entry: Any, path: str, index: int) -> dict:
    """One debrief question in its one stored form: ``{key, question, type, options, required}``.

    A plain string is a free-text question; a mapping spells it out. The rater pages read
    only this form (``studyapp.rating.selectors.study_debrief_questions``).
    """
    if isinstance(entry, str):
        entry = {"question": entry}
    fields = check.mapping(
        entry, path, allowed={"key", "question", "type", "options", "required"}, required={"question"}
    )
    options = [
        check.text(option, f"{path}.options[{i}]")
        for i, option in enumerate(check.listing(fields.get("options"), f"{path}.options", required=False))
    ]
    kind = check.choice(fields.get("type"), f"{path}.type", DEBRIEF_TYPES, default="choice" if options else "text")
    if kind == "choice" and len(options) < 2:
        check.problem(f"{path}.options", "a choice question needs at least two options")
    if kind != "choice" and options:
        check.problem(f"{path}.options", f"options belong to a choice question, not a {kind} one")
    required = fields.get("required", False)
    if not isinstance(required, bool):
        check.problem(f"{path}.required", f"expected true or false, got {_kind(required)}")
    return {
        "key": check.slug(fields["key"], f"{path}.key") if "key" in fields else f"q{index + 1}",
        "question": check.text(fields.get("question", ""), f"{path}.question", max_length=1000),
        "type": kind,
        "options": options,
        "required": required is True,
    }


# Every way a rater's participation can end with a code for Prolific (docs/rating.md).
PROLIFIC_ENDINGS = ("completion", "screen_out", "no_consent", "timed_out")


def _check_rater_timing(check: _Checker, raters: dict, study: dict) -> None:
    """Quality and planning figures of a rating page, in seconds.

    ``min_seconds_per_page``: below it a page is flagged as speeding and the page asks the
    rater to read the response (0: off). ``expected_seconds_per_page``: the consent page's
    time estimate until the study has measured times of its own.
    """
    study["min_seconds_per_page"] = check.integer(
        raters.get("min_seconds_per_page"), "raters.min_seconds_per_page", default=5, minimum=0
    )
    study["expected_seconds_per_page"] = check.integer(
        raters.get("expected_seconds_per_page"), "raters.expected_seconds_per_page", default=45, minimum=1
    )


def _check_models(check: _Checker, value: Any) -> list[dict]:
    models = []
    for index, entry in enumerate(check.listing(value, "models") if value is not None else []):
        path = f"models[{index}]"
        entry = check.mapping(
            entry, path, allowed={"key", "source", "backend", "device", "dtype"}, required={"key", "source"}
        )
        models.append(
            {
                "key": check.slug(entry.get("key"), f"{path}.key") if "key" in entry else "",
                "source": check.text(entry.get("source"), f"{path}.source", max_length=500)
                if "source" in entry
                else "",
                **_check_model_run(check, entry, path),
            }
        )
    check.unique_keys(models, "models")
    return models


MODEL_BACKENDS = ("hf", "vllm")
MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _check_model_run(check: _Checker, entry: dict, path: str) -> dict:
    """How a model runs: ``backend`` (hf | vllm), ``device`` (auto, cpu, cuda, cuda:N) and ``dtype``."""
    run = {
        "backend": check.choice(entry.get("backend"), f"{path}.backend", MODEL_BACKENDS, default="hf"),
        "device": check.text(entry.get("device"), f"{path}.device", default="auto", max_length=32),
        "dtype": check.choice(entry.get("dtype"), f"{path}.dtype", MODEL_DTYPES, default="auto"),
    }
    if run["device"] and not _DEVICE.match(run["device"]):
        check.problem(f"{path}.device", f"unknown device {run['device']!r} (expected auto, cpu, cuda or cuda:N)")
    elif run["backend"] == "vllm" and run["device"] not in ("auto", "cuda"):
        check.problem(
            f"{path}.device", "the vllm backend runs on CUDA: use auto or cuda (CUDA_VISIBLE_DEVICES picks GPUs)"
        )
    return run


def _check_conditions(
    check: _Checker, value: Any, model_keys: list[str], vllm_models: frozenset[str] = frozenset()
) -> list[dict]:
    conditions = []
    for index, entry in enumerate(check.listing(value, "conditions")):
        path = f"conditions[{index}]"
        entry = check.mapping(
            entry,
            path,
            allowed={"key", "label", "model", "method", "params", "artifact_path"},
            required={"key", "model", "method"},
        )
        condition: dict[str, Any] = {
            "key": check.slug(entry.get("key"), f"{path}.key") if "key" in entry else "",
            "model": check.text(entry.get("model"), f"{path}.model") if "model" in entry else "",
            "method": check.choice(entry.get("method"), f"{path}.method", METHODS) if "method" in entry else "",
            "params": {},
            "artifact_path": check.text(
                entry.get("artifact_path"), f"{path}.artifact_path", default="", max_length=500
            ),
            "label": check.slug(entry["label"], f"{path}.label") if "label" in entry else "",
        }
        condition["label"] = condition["label"] or condition["method"]
        if condition["method"] == "activation" and condition["model"] in vllm_models:
            check.problem(
                f"{path}.method",
                f"activation steering needs forward hooks, but model {condition['model']!r} uses the vllm backend",
            )
        if condition["model"] and condition["model"] not in model_keys:
            check.problem(
                f"{path}.model", f"unknown model {condition['model']!r}{did_you_mean(condition['model'], model_keys)}"
            )
        method = condition["method"]
        params = entry.get("params", {})
        if not isinstance(params, Mapping):
            check.problem(f"{path}.params", f"expected a mapping, got {_kind(params)}")
            params = {}
        if method:
            known = METHOD_PARAMS[method]
            for name, param in params.items():
                name = str(name)
                if name not in known:
                    allowed = ", ".join(sorted(known)) or "none"
                    check.problem(
                        f"{path}.params.{name}", f"unknown parameter for method {method!r} (known: {allowed})"
                    )
                elif not isinstance(param, known[name]) or isinstance(param, bool):
                    check.problem(f"{path}.params.{name}", f"expected {' or '.join(t.__name__ for t in known[name])}")
            for name in REQUIRED_PARAMS.get(method, ()):
                if name not in params:
                    check.problem(f"{path}.params.{name}", f"required for method {method!r}")
            _check_param_ranges(check, f"{path}.params", params)
        condition["params"] = dict(params)
        conditions.append(condition)
    check.unique_keys(conditions, "conditions")
    return conditions


def _check_paths(check: _Checker, study: dict, models: list[dict], conditions: list[dict]) -> None:
    """Paths on the workers' disks lie under the configured roots (studies/paths.py); checked
    before anything is opened, and the problem says nothing about what lies at the path."""
    for index, model in enumerate(models):
        problem = paths.model_source_problem(model["source"]) if model["source"] else None
        if problem:
            check.problem(f"models[{index}].source", problem)
    for index, condition in enumerate(conditions):
        prompt_file = condition["params"].get("prompt_file")
        problem = paths.prompt_file_problem(prompt_file) if isinstance(prompt_file, str) else None
        if problem:  # (another type is reported with the parameters)
            check.problem(f"conditions[{index}].params.prompt_file", problem)
        problem = paths.artifact_path_problem(condition["artifact_path"], study_slug=study["slug"] or "<slug>")
        if problem:
            check.problem(f"conditions[{index}].artifact_path", problem)


def _check_param_ranges(check: _Checker, path: str, params: Mapping) -> None:
    rho = params.get("rho")
    if isinstance(rho, int | float) and not isinstance(rho, bool) and not 0 < rho <= 1:
        check.problem(f"{path}.rho", f"keep ratio must be in (0, 1], got {rho}")
    alpha = params.get("alpha")
    if isinstance(alpha, int | float) and not isinstance(alpha, bool) and alpha < -1:
        check.problem(f"{path}.alpha", f"must be at least -1 (-1 zeroes the selected weights), got {alpha}")
    from generation.prompt_sets import SHIPPED_PROMPT_SETS

    prompt_set = params.get("prompt_set")
    if isinstance(prompt_set, str) and "prompt_file" not in params and prompt_set not in SHIPPED_PROMPT_SETS:
        check.problem(
            f"{path}.prompt_set",
            f"unknown prompt set {prompt_set!r} (shipped: {', '.join(SHIPPED_PROMPT_SETS)}; or give prompt_file)",
        )
    ranking = params.get("ranking")
    if isinstance(ranking, str) and ranking not in ("matrix", "row"):
        check.problem(f"{path}.ranking", f"unknown ranking {ranking!r} (expected 'matrix' or 'row')")
    temperature = params.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature < 0:
        check.problem(f"{path}.temperature", "must be at least 0")


def _check_tasks(check: _Checker, value: Any) -> list[dict]:
    from generation.task_families import shipped_task_families

    shipped = shipped_task_families()
    tasks = [
        _check_task(check, entry, f"tasks[{index}]", shipped)
        for index, entry in enumerate(check.listing(value, "tasks") if value is not None else [])
    ]
    check.unique_keys(tasks, "tasks")
    return tasks


def _check_task(check: _Checker, entry: Any, path: str, shipped: Mapping[str, Any]) -> dict:
    """One task: a shipped family (by key) with optional overrides, or a task written out in full."""
    entry = check.mapping(
        entry,
        path,
        allowed={"key", "template", "items", "system_prompt", "parser", "description"},
        required={"key"},
    )
    key = check.slug(entry.get("key"), f"{path}.key") if "key" in entry else ""
    base = shipped.get(key)
    if base is None and key and "template" not in entry:
        check.problem(
            f"{path}.template",
            f"required for a task that is not shipped (shipped: {', '.join(sorted(shipped))})",
        )
    task: dict[str, Any] = {
        "key": key,
        "template": check.text(entry.get("template"), f"{path}.template")
        if "template" in entry
        else (base.template if base else ""),
        "system_prompt": base.system_prompt if base and "system_prompt" not in entry else entry.get("system_prompt"),
        "parser": (base.parser or "") if base and "parser" not in entry else (entry.get("parser") or ""),
        "description": check.text(entry.get("description"), f"{path}.description", default="")
        or (base.description if base else ""),
        "items": [],
    }
    problem = template_problem(task["template"]) if isinstance(task["template"], str) else None
    if problem:
        check.problem(f"{path}.template", problem)
    if task["system_prompt"] is not None:
        task["system_prompt"] = check.text(task["system_prompt"], f"{path}.system_prompt")
    if task["parser"] and task["parser"] not in PARSERS:
        check.problem(f"{path}.parser", f"unknown parser {task['parser']!r} (expected one of: {', '.join(PARSERS)})")
    if "items" not in entry:
        if base is None:
            if key:
                check.problem(f"{path}.items", "required for a task that is not shipped")
        else:
            task["items"] = [{"key": item.key, "text": item.text} for item in base.items]
    else:
        task["items"] = _check_task_items(check, entry["items"], f"{path}.items", key, base)
    return task


def _check_task_items(check: _Checker, value: Any, path: str, task_key: str, base: Any) -> list[dict]:
    """A task's items: ``{key, text}`` mappings, or bare keys naming items of the shipped family."""
    items = []
    for item_index, item in enumerate(check.listing(value, path)):
        item_path = f"{path}[{item_index}]"
        if isinstance(item, str):
            shipped_texts = {i.key: i.text for i in base.items} if base else {}
            known = list(shipped_texts)
            if base is None:
                check.problem(item_path, "a bare item key needs a shipped task; give {key, text}")
            elif item not in known:
                check.problem(
                    item_path, f"unknown item {item!r} of shipped task {task_key!r}{did_you_mean(item, known)}"
                )
            else:
                items.append({"key": item, "text": shipped_texts[item]})
            continue
        item = check.mapping(item, item_path, allowed={"key", "text"}, required={"key", "text"})
        if item:
            items.append(
                {
                    "key": check.slug(item.get("key"), f"{item_path}.key") if "key" in item else "",
                    "text": check.text(item.get("text"), f"{item_path}.text") if "text" in item else "",
                }
            )
    check.unique_keys(items, path)
    return items


def _check_dimensions(check: _Checker, value: Any) -> list[dict]:
    if value is None:
        return [
            dict(
                d,
                scale=SLIDER,
                low_label="Not at all",
                high_label="Extremely",
                definition=DEFAULT_DEFINITIONS[d["key"]],
            )
            for d in DEFAULT_DIMENSIONS
        ]
    dimensions = []
    for index, entry in enumerate(check.listing(value, "dimensions")):
        path = f"dimensions[{index}]"
        entry = check.mapping(
            entry,
            path,
            allowed={"key", "question", "scale", "low_label", "high_label", "definition"},
            required={"key", "question"},
        )
        key = check.slug(entry.get("key"), f"{path}.key") if "key" in entry else ""
        dimensions.append(
            {
                "key": key,
                "question": check.text(entry.get("question"), f"{path}.question", max_length=300)
                if "question" in entry
                else "",
                "scale": check.choice(entry.get("scale"), f"{path}.scale", tuple(SCALES), default=SLIDER),
                "low_label": check.text(
                    entry.get("low_label"), f"{path}.low_label", default="Not at all", max_length=64
                ),
                "high_label": check.text(
                    entry.get("high_label"), f"{path}.high_label", default="Extremely", max_length=64
                ),
                "definition": check.text(
                    entry.get("definition"), f"{path}.definition", default=DEFAULT_DEFINITIONS.get(key, "")
                ),
            }
        )
    check.unique_keys(dimensions, "dimensions")
    return dimensions


def _check_deployments(
    check: _Checker,
    value: Any,
    models: list[dict],
    conditions: list[dict],
    tasks: list[dict],
    study: dict,
    top: dict,
) -> list[dict]:
    model_keys = [m["key"] for m in models if m["key"]]
    task_items = {t["key"]: len(t["items"]) for t in tasks if t["key"]}
    raters = top.get("raters")
    paired_default = isinstance(raters, Mapping) and raters.get("allow_paired_items") is True
    deployments = []
    for index, entry in enumerate(check.listing(value, "deployments")):
        path = f"deployments[{index}]"
        deployment = _check_deployment(check, entry, path, model_keys, list(task_items))
        deployment["raters"] = _check_deployment_raters(check, entry, path, paired_default)
        deployment["conditions"] = _check_deployment_conditions(check, deployment, path, conditions)
        if not deployment["automatic_only"]:
            _check_balance(
                check,
                path,
                _design_of(study, deployment),
                task_items.get(deployment["task"], 0),
                len(deployment["conditions"]),
                deployment["samples_per_item"] or study["samples_per_item"],
            )
        deployments.append(deployment)
    check.unique_keys(deployments, "deployments", key="slug")
    return deployments


def _check_deployment(check: _Checker, entry: Any, path: str, model_keys: list[str], task_keys: list[str]) -> dict:
    """One deployment's own fields; its ``conditions`` holds the listed keys, checked next."""
    entry = check.mapping(
        entry,
        path,
        allowed={
            "slug",
            "model",
            "task",
            "conditions",
            "samples_per_item",
            "automatic_only",
            "accept_truncation",
            "raters",
        },
        required={"slug", "model", "task", "conditions"},
    )
    deployment: dict[str, Any] = {
        "slug": check.slug(entry.get("slug"), f"{path}.slug") if "slug" in entry else "",
        "model": check.text(entry.get("model"), f"{path}.model") if "model" in entry else "",
        "task": check.text(entry.get("task"), f"{path}.task") if "task" in entry else "",
        "conditions": [],
        "samples_per_item": None
        if entry.get("samples_per_item") is None
        else check.integer(entry["samples_per_item"], f"{path}.samples_per_item", minimum=1),
        "automatic_only": entry.get("automatic_only", False),
        # Texts cut mid-word by max_new_tokens may be rated (docs/generation.md, "Screening stimuli").
        "accept_truncation": entry.get("accept_truncation", False),
    }
    for flag in ("automatic_only", "accept_truncation"):
        if not isinstance(deployment[flag], bool):
            check.problem(f"{path}.{flag}", "expected true or false")
            deployment[flag] = False
    if deployment["model"] and deployment["model"] not in model_keys:
        check.problem(
            f"{path}.model", f"unknown model {deployment['model']!r}{did_you_mean(deployment['model'], model_keys)}"
        )
    if deployment["task"] and deployment["task"] not in task_keys:
        check.problem(
            f"{path}.task", f"unknown task {deployment['task']!r}{did_you_mean(deployment['task'], task_keys)}"
        )
    if "conditions" in entry:
        deployment["conditions"] = check.listing(entry["conditions"], f"{path}.conditions")
    return deployment


DEPLOYMENT_RATER_FIELDS = {
    "per_deployment": "raters_per_deployment",
    "stimuli_per_rater": "stimuli_per_rater",
    "samples_per_item": "rated_samples_per_item",
}


def _check_deployment_raters(check: _Checker, entry: Any, path: str, paired_default: bool) -> dict:
    """A deployment's own rater design (``deployments[].raters``), as Deployment fields: a number
    given overrides the study's ``raters`` (None: the study's); ``allow_paired_items`` defaults
    to the study's."""
    given = entry.get("raters", {}) if isinstance(entry, Mapping) else {}
    raters = check.mapping(given, f"{path}.raters", allowed={*DEPLOYMENT_RATER_FIELDS, "allow_paired_items"})
    design: dict[str, Any] = {
        field: None if raters.get(key) is None else check.integer(raters[key], f"{path}.raters.{key}", minimum=1)
        for key, field in DEPLOYMENT_RATER_FIELDS.items()
    }
    paired = raters.get("allow_paired_items", paired_default)
    if not isinstance(paired, bool):
        check.problem(f"{path}.raters.allow_paired_items", "expected true or false")
        paired = False
    design["allow_paired_items"] = paired
    return design


def _design_of(study: dict, deployment: dict) -> dict:
    """The rater numbers that apply to a deployment: its own where given, else the study's."""
    own = deployment["raters"]
    return {
        "raters_per_deployment": own["raters_per_deployment"] or study["raters_per_deployment"],
        "stimuli_per_rater": own["stimuli_per_rater"] or study["stimuli_per_rater"],
        "rated_samples_per_item": own["rated_samples_per_item"]
        if own["rated_samples_per_item"] is not None
        else study["rated_samples_per_item"],
        "allow_paired_items": own["allow_paired_items"],
    }


def _check_deployment_conditions(check: _Checker, deployment: dict, path: str, conditions: list[dict]) -> list[str]:
    """The condition keys a deployment lists: known, of its model, each once, with distinct labels."""
    condition_models = {c["key"]: c["model"] for c in conditions if c["key"]}
    condition_labels = {c["key"]: c["label"] for c in conditions if c["key"]}
    keys: list[str] = []
    for c_index, key in enumerate(deployment["conditions"]):
        c_path = f"{path}.conditions[{c_index}]"
        key = check.text(key, c_path)
        if not key:
            continue
        if key not in condition_models:
            check.problem(c_path, f"unknown condition {key!r}{did_you_mean(key, list(condition_models))}")
        elif deployment["model"] and condition_models[key] != deployment["model"]:
            check.problem(
                c_path,
                f"condition {key!r} uses model {condition_models[key]!r}, "
                f"but the deployment's model is {deployment['model']!r}",
            )
        elif key in keys:
            check.problem(c_path, f"condition {key!r} is listed twice")
        elif condition_labels[key] in {condition_labels[k] for k in keys}:
            # The export (and analysis) tells conditions apart by label within a deployment.
            check.problem(c_path, f"two conditions labelled {condition_labels[key]!r}; give one of them another label")
        else:
            keys.append(key)
    return keys


def _check_balance(check: _Checker, path: str, design: dict, n_items: int, n_conditions: int, n_samples: int) -> None:
    """The balanced slot design (studyapp.rating) must exist for this deployment, and must not put
    one item's texts of two conditions before every rater unless allowed; say why not, early.

    ``design``: the deployment's rater numbers (``_design_of``). The slot builder applies the
    same rules (:func:`studyapp.studies.vocabulary.balance_problem`, ``pairing_problem``) once
    the stimuli exist.
    """
    rated = design["rated_samples_per_item"]
    if rated is not None and rated > n_samples:
        check.problem(
            path,
            f"raters.samples_per_item ({rated}) is more than the {n_samples} samples per item it generates",
        )
        return
    per_condition = n_items * (rated or n_samples)
    raters, per_rater = design["raters_per_deployment"], design["stimuli_per_rater"]
    if not (per_condition and n_conditions and raters > 0 and per_rater > 0):
        return  # already reported where the number is given
    problem = balance_problem(
        n_conditions=n_conditions, per_condition=per_condition, raters=raters, per_rater=per_rater
    )
    if problem is None and n_conditions > 1 and not design["allow_paired_items"]:
        problem = pairing_problem(
            n_conditions=n_conditions, n_items=n_items, rated_samples=rated or n_samples, per_rater=per_rater
        )
    if problem:
        check.problem(path, problem)


def _check_attention(check: _Checker, value: Any, study: dict, deployments: list[dict]) -> list[dict]:
    section = check.mapping(
        value if value is not None else {}, "attention_checks", allowed={"screen_out_after", "items"}
    )
    after = section.get("screen_out_after")
    study["attention_screen_out_after"] = (
        None if after is None else check.integer(after, "attention_checks.screen_out_after", minimum=1)
    )
    items = []
    for index, entry in enumerate(check.listing(section.get("items"), "attention_checks.items", required=False)):
        path = f"attention_checks.items[{index}]"
        entry = check.mapping(
            entry,
            path,
            allowed={"position", "text", "question", "options", "expected", "tolerance"},
            required={"position", "text", "expected"},
        )
        if not {"position", "text", "expected"} <= set(entry):
            continue
        # Shown after `position` rating pages; answered on the 0-100 slider (expected a number,
        # within tolerance) or, with options, by picking the expected option.
        item: dict[str, Any] = {
            "position": check.integer(entry["position"], f"{path}.position", minimum=0),
            "text": check.text(entry["text"], f"{path}.text"),
            "expected": check.text(entry["expected"], f"{path}.expected"),
        }
        if "question" in entry:
            item["question"] = check.text(entry["question"], f"{path}.question")
        options = entry.get("options")
        if options is not None:
            item["options"] = [
                check.text(o, f"{path}.options[{i}]") for i, o in enumerate(check.listing(options, f"{path}.options"))
            ]
            if item["expected"] not in item["options"]:
                check.problem(f"{path}.expected", f"{item['expected']!r} is not one of the options")
        else:
            try:
                float(item["expected"])
            except ValueError:
                check.problem(f"{path}.expected", f"a slider check expects a number, got {item['expected']!r}")
        if "tolerance" in entry:
            tolerance = entry["tolerance"]
            if not isinstance(tolerance, int | float) or isinstance(tolerance, bool) or tolerance < 0:
                check.problem(f"{path}.tolerance", "expected a number at least 0")
            else:
                item["tolerance"] = tolerance
        items.append(item)
    study["attention_checks"] = items
    per_rater = [
        _design_of(study, d)["stimuli_per_rater"] for d in deployments if not d["automatic_only"] and d.get("raters")
    ]
    _check_attention_early(check, study, items, min(per_rater, default=study["stimuli_per_rater"]))
    return items


def _check_attention_early(check: _Checker, study: dict, items: list[dict], per_rater: int) -> None:
    """A screen-out must not come after most of a rater's work (issue: fairness to raters).

    The check that can screen a rater out (the ``screen_out_after``-th by position) is
    shown within the first half of the rating pages of the deployment with the fewest
    (``per_rater``: its stimuli per rater).
    """
    after = study.get("attention_screen_out_after")
    positions = sorted(item["position"] for item in items if isinstance(item.get("position"), int))
    if not after or after < 1 or len(positions) < after:  # below 1: reported where it is given
        return
    deciding = positions[after - 1]
    half = per_rater // 2
    if deciding > half:
        check.problem(
            "attention_checks.items",
            f"the check that can screen a rater out comes after {deciding} of {per_rater} "
            f"rating pages; place the first {after} check(s) at position {half} or earlier, so a screen-out "
            "never follows most of the work",
        )
