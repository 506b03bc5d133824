"""A spec's ``factorial`` block: models x tasks x methods, each method against the model's base.

The block is expanded into the explicit form (plain ``conditions`` and ``deployments``
entries, exactly as a researcher would write them) *before* :func:`studyapp.studies.spec.spec_parse`
checks the spec, so one set of checks covers both forms and both load to the same study.
The expanded entries follow the explicit ones, which may use them (a deployment of your own
may list an expanded condition). A problem the checks find in an expanded entry is reported
at the place in the block it came from, once for all the entries it concerns::

    factorial:
      models: [m1, m2]                  # default: every model of `models`
      methods:                          # each compared with the model's base; params shared by the models
        weight: {rho: 0.1, alpha: 1.0, prompt_set: dat}
        activation: {coeff: 3.0}
      per_model:                        # a model's own params for a method (replacing the shared ones)
        m2: {weight: {rho: 0.2, alpha: 2.0, prompt_set: dat}}
      versus_base: [aut, task_task]     # one deployment per model x task x method: [<m>-base, <m>-<method>]
      all_conditions:                   # one deployment per model x task with every condition of the model
        - {task: dat, samples_per_item: 100, automatic_only: true}

Conditions: ``<model>-base`` and ``<model>-<method>`` (labelled with the method). Deployments:
``<model>-<task>-<method>`` and ``<model>-<task>``, a task key's underscores written as hyphens
(``task_task`` -> ``m1-task-task-weight``). A task entry is a task key, or a mapping with
``task`` and the deployment fields ``samples_per_item``, ``automatic_only``,
``accept_truncation`` and ``raters``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studyapp.studies.vocabulary import METHODS, did_you_mean

if TYPE_CHECKING:
    from studyapp.studies.spec import _Checker

FACTORIAL_FIELDS = {"models", "methods", "per_model", "versus_base", "all_conditions"}
TASK_ENTRY_FIELDS = {"task", "samples_per_item", "automatic_only", "accept_truncation", "raters"}
BASE = "base"


@dataclass(frozen=True)
class Origin:
    """Where an expanded entry comes from: ``path`` in the block, and the path of each of its
    fields that the block spells out (a condition's ``params``, a deployment's ``raters``...)."""

    path: str
    name: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Expansion:
    """The spec's conditions and deployments, explicit ones first, then the expanded ones."""

    conditions: Any
    deployments: Any
    origins: dict[tuple[str, int], Origin] = field(default_factory=dict)

    def relocate(self, problems: list[str]) -> list[str]:
        """``problems`` with each one about an expanded entry said at its origin in the block,
        once, naming the expanded entries it concerns."""
        names: dict[str, tuple[str, list[str]]] = {}
        relocated: list[str] = []
        for problem in problems:
            match = _EXPANDED_PROBLEM.match(problem)
            origin = self.origins.get((match[1], int(match[2]))) if match else None
            if match is None or origin is None:
                relocated.append(problem)
                continue
            suffix = match[3]
            first = re.match(r"\.?([^.\[]+)", suffix)
            if first and first[1] in origin.fields:
                path = origin.fields[first[1]] + suffix[first.end() :]
            else:
                path = origin.path
            text = f"{path}: {match[4]}"
            if text not in names:
                names[text] = (match[1], [])
                relocated.append(text)
            names[text][1].append(origin.name)
        return [f"{text} ({_entries(*names[text])})" if text in names else text for text in relocated]


_EXPANDED_PROBLEM = re.compile(r"^(conditions|deployments)\[(\d+)\]((?:\.[^\s:\[]+|\[\d+\])*): (.*)$", re.S)


def _entries(section: str, names: list[str]) -> str:
    kind = section[:-1] if len(names) == 1 else section
    shown = ", ".join(repr(name) for name in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"expanded {kind} {shown}{more}"


def slug_part(task: str) -> str:
    """A task key as it appears in an expanded deployment's slug."""
    return task.replace("_", "-")


def factorial_expand(check: _Checker, top: dict) -> Expansion | None:
    """The spec's conditions and deployments with its ``factorial`` block expanded (None: no block).

    Problems in the block itself (an unknown model or method, an empty cross product, a name
    that an explicit entry already has) are reported here with their path in the block.
    """
    if "factorial" not in top:
        return None
    block = check.mapping(top["factorial"], "factorial", allowed=FACTORIAL_FIELDS)
    model_keys = _model_keys(top.get("models"))
    models = _factorial_models(check, block, model_keys)
    methods = _factorial_methods(check, block.get("methods"))
    per_model = _factorial_per_model(check, block.get("per_model"), models, methods, model_keys)
    versus_base = _task_entries(check, block.get("versus_base"), "factorial.versus_base")
    all_conditions = _task_entries(check, block.get("all_conditions"), "factorial.all_conditions")
    if isinstance(top["factorial"], Mapping):
        _check_cross_product(check, block, methods, versus_base)
    conditions = list(_expand_conditions(models, methods, per_model, block))
    deployments = list(_expand_deployments(models, methods, versus_base, all_conditions))
    expansion = Expansion(conditions=top.get("conditions"), deployments=top.get("deployments"))
    _merge(check, expansion, "conditions", "key", conditions)
    _merge(check, expansion, "deployments", "slug", deployments)
    return expansion


def _model_keys(value: Any) -> list[str]:
    entries = value if isinstance(value, list) else []
    return [entry["key"] for entry in entries if isinstance(entry, Mapping) and isinstance(entry.get("key"), str)]


def _factorial_models(check: _Checker, block: dict, model_keys: list[str]) -> list[str]:
    if "models" not in block:
        return model_keys
    models: list[str] = []
    for index, key in enumerate(check.listing(block["models"], "factorial.models")):
        path = f"factorial.models[{index}]"
        if not isinstance(key, str) or key not in model_keys:
            shown = key if isinstance(key, str) else str(key)
            check.problem(path, f"unknown model {shown!r}{did_you_mean(shown, model_keys)} (the keys of `models`)")
        elif key in models:
            check.problem(path, f"model {key!r} is listed twice")
        else:
            models.append(key)
    return models


def _factorial_methods(check: _Checker, value: Any) -> dict[str, Any]:
    """``methods``: method name -> the params every model's condition of that method gets."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        check.problem("factorial.methods", "expected a mapping of method -> params, e.g. {weight: {rho: 0.1}}")
        return {}
    methods: dict[str, Any] = {}
    known = [method for method in METHODS if method != BASE]
    for name, params in value.items():
        name = str(name)
        if name == BASE:
            check.problem(
                "factorial.methods.base", "every model's base condition is made for you: leave base out of methods"
            )
        elif name not in known:
            check.problem(
                f"factorial.methods.{name}",
                f"unknown method {name!r}{did_you_mean(name, known)} (expected one of: {', '.join(known)})",
            )
        else:
            methods[name] = params
    return methods


def _factorial_per_model(
    check: _Checker, value: Any, models: list[str], methods: dict[str, Any], model_keys: list[str]
) -> dict[str, dict[str, Any]]:
    """``per_model``: model -> method -> that model's own params (replacing the shared ones)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        check.problem("factorial.per_model", "expected a mapping of model -> {method: params}")
        return {}
    per_model: dict[str, dict[str, Any]] = {}
    for model, settings in value.items():
        model, path = str(model), f"factorial.per_model.{model}"
        if model not in model_keys:
            check.problem(path, f"unknown model {model!r}{did_you_mean(model, model_keys)} (the keys of `models`)")
            continue
        if model not in models:
            check.problem(path, f"model {model!r} is not in factorial.models ({', '.join(models)})")
            continue
        if not isinstance(settings, Mapping):
            check.problem(path, "expected a mapping of method -> params, e.g. {weight: {rho: 0.1}}")
            continue
        for method in map(str, settings):
            if method not in methods:
                listed = ", ".join(methods) or "none"
                check.problem(f"{path}.{method}", f"{method!r} is not one of factorial.methods ({listed})")
        per_model[model] = {str(method): params for method, params in settings.items() if str(method) in methods}
    return per_model


def _task_entries(check: _Checker, value: Any, path: str) -> list[tuple[str, dict, dict[str, str]]]:
    """(path, deployment fields, each field's path) per task entry of ``versus_base`` or ``all_conditions``."""
    entries: list[tuple[str, dict, dict[str, str]]] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(check.listing(value, path, required=False)):
        entry_path = f"{path}[{index}]"
        if isinstance(entry, str):
            fields, paths = {"task": entry}, {"task": entry_path}
        else:
            fields = check.mapping(entry, entry_path, allowed=TASK_ENTRY_FIELDS, required={"task"})
            paths = {name: f"{entry_path}.{name}" for name in fields}
            if "task" not in fields:
                continue
        task = fields["task"]
        if not isinstance(task, str):
            check.problem(paths["task"], "expected a task key")
        elif task in seen:
            check.problem(paths["task"], f"task {task!r} is listed twice (first at {seen[task]})")
        else:
            seen[task] = entry_path
            entries.append((entry_path, fields, paths))
    return entries


def _check_cross_product(check: _Checker, block: dict, methods: dict, versus_base: list) -> None:
    """A block that would expand to no deployment says why, rather than load a study without one
    (no models: reported where `models` is given)."""
    if not block.get("versus_base") and not block.get("all_conditions"):
        check.problem("factorial", "the cross product is empty: give tasks in versus_base or all_conditions")
    if versus_base and not methods:
        check.problem("factorial.methods", "versus_base compares each method with base: give at least one method")


def _expand_conditions(models: list[str], methods: dict, per_model: dict, block: dict):
    """(condition, origin) per model: its base, then one per method, in the block's order."""
    models_path = "factorial.models" if "models" in block else "models"
    for model in models:
        key = f"{model}-{BASE}"
        yield {"key": key, "model": model, "method": BASE}, Origin(models_path, key)
        for method, shared in methods.items():
            own = per_model.get(model, {})
            params, path = (
                (own[method], f"factorial.per_model.{model}.{method}")
                if method in own
                else (shared, f"factorial.methods.{method}")
            )
            key = f"{model}-{method}"
            condition = {"key": key, "model": model, "method": method}
            if params is not None:
                condition["params"] = params
            yield condition, Origin(path, key, {"params": path, "method": path})


def _expand_deployments(models: list[str], methods: dict, versus_base: list, all_conditions: list):
    """(deployment, origin) per model: each versus_base task x method, then each all_conditions task."""
    for model in models:
        base = f"{model}-{BASE}"
        for path, fields, paths in versus_base:
            for method in methods:
                slug = f"{model}-{slug_part(fields['task'])}-{method}"
                conditions = [base, f"{model}-{method}"]
                yield _deployment(fields, slug, model, conditions), Origin(path, slug, paths)
        for path, fields, paths in all_conditions:
            slug = f"{model}-{slug_part(fields['task'])}"
            conditions = [base, *(f"{model}-{method}" for method in methods)]
            yield _deployment(fields, slug, model, conditions), Origin(path, slug, paths)


def _deployment(fields: dict, slug: str, model: str, conditions: list[str]) -> dict:
    return {"slug": slug, "model": model, **fields, "conditions": conditions}


def _merge(check: _Checker, expansion: Expansion, section: str, key: str, expanded: list[tuple[dict, Origin]]) -> None:
    """Append the expanded entries to the explicit ones; a name both have is a problem (and the
    expanded entry is left out, so it is reported once)."""
    explicit = getattr(expansion, section)
    if explicit is not None and not isinstance(explicit, list):
        return  # the spec's checks report the explicit section's type
    merged = list(explicit or [])
    taken = {
        entry[key]: f"{section}[{index}]"
        for index, entry in enumerate(merged)
        if isinstance(entry, Mapping) and isinstance(entry.get(key), str)
    }
    for entry, origin in expanded:
        name = entry[key]
        where = taken.get(name)
        if where is not None and where.startswith(f"{section}["):
            check.problem(
                f"{where}.{key}",
                f"{name!r} is also a {section[:-1]} the factorial block makes ({origin.path}): "
                "rename it, or leave it out of the factorial block",
            )
            continue
        if where is not None:
            check.problem(origin.path, f"makes the {section[:-1]} {name!r} that {where} makes too")
            continue
        taken[name] = origin.path
        expansion.origins[(section, len(merged))] = origin
        merged.append(entry)
    setattr(expansion, section, merged)
