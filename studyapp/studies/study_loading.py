"""Stage 1, the spec: a checked study spec written into the database, all or nothing.

``spec.py`` checks the file; this module writes what it describes (models, conditions,
task families and items, rating dimensions, deployments) and decides who may load it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from studyapp.studies.access import user_can_view_study, user_sees_every_study
from studyapp.studies.models import (
    Condition,
    Deployment,
    Item,
    LanguageModel,
    RatingDimension,
    Stimulus,
    Study,
    TaskFamily,
)
from studyapp.studies.spec import SpecError, StudySpec, spec_parse


class StudyLoadError(ValueError):
    """The spec is fine but cannot replace what the database holds."""


# Said for every slug an uploader may not use, whether a study the uploader is not a
# researcher of holds it or it is reserved: the words never confirm that another team's
# study exists, nor anything about it (title, data, researchers). See docs/trust.md.
SLUG_UNAVAILABLE = "the slug {slug} is not available to you: give the study another slug"
# Names a researcher is never given, so that a refusal cannot be told apart from these.
RESERVED_SLUGS = frozenset({"admin", "panel", "r", "static", "healthz", "login", "logout", "new", "preview"})


# --- Loading a spec -------------------------------------------------------------------


def study_load_file(*, path: str | Path, researchers: Sequence[str] = ()) -> tuple[Study, bool]:
    """Load a spec file; see :func:`study_load`. Raises :class:`SpecError` for a missing file too."""
    return study_load(content=_spec_file_read(Path(path)), source=str(path), researchers=researchers)


def spec_file_parse(path: str | Path) -> StudySpec:
    """Check a spec file without writing anything (``load_study --dry-run``); :class:`SpecError` as for a load."""
    return spec_parse(_spec_file_read(Path(path)), source=str(path))


def _spec_file_read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SpecError([f"cannot read the file ({error.strerror or error})"], str(path)) from None


def study_load(
    *, content: str | bytes, source: str = "spec", researchers: Sequence[str] = (), acting_user=None
) -> tuple[Study, bool]:
    """Check a spec and write it, all or nothing. Returns ``(study, changed)``.

    ``acting_user``: who asks (the admin's uploader). Unless a superuser, they may load only
    a new slug or a study they are already a researcher of; any other slug is refused
    with :data:`SLUG_UNAVAILABLE` before anything is read or written. ``None`` is the
    operator's command line, trusted as the database owner.

    Loading the same spec again (same sha256) changes nothing, so the demo and deploy
    scripts can load unconditionally. A different spec for an existing slug replaces the
    study's definition only while nothing has been generated or rated for it: rows that
    stimuli or ratings point to are never rewritten underneath them.
    """
    spec = spec_parse(content, source=source)
    users = _researchers_lookup(researchers, source)
    if acting_user is not None and acting_user not in users:
        users.append(acting_user)  # the uploader becomes a researcher of what they loaded
    try:
        return _study_load_checked(spec=spec, users=users, acting_user=acting_user, source=source)
    except IntegrityError:
        # Two loads of one new slug at once: both found no study, the other one created it
        # first. Once more, this one sees it and follows the rules for an existing study.
        pass
    try:
        return _study_load_checked(spec=spec, users=users, acting_user=acting_user, source=source)
    except IntegrityError:
        raise StudyLoadError(
            f"{source}: another load of {spec.study['slug']!r} changed it at the same moment; load it again"
        ) from None


def _study_load_checked(*, spec: StudySpec, users: list, acting_user, source: str) -> tuple[Study, bool]:
    """The writing half of :func:`study_load`, in one transaction."""
    with transaction.atomic():
        study = Study.objects.select_for_update().filter(slug=spec.study["slug"]).first()
        _study_load_allowed(study=study, slug=spec.study["slug"], acting_user=acting_user, source=source)
        if study is not None and study.spec_sha256 == spec.sha256:
            study.researchers.add(*users)
            return study, False
        if study is not None:
            if Stimulus.objects.filter(deployment__study=study).exists() or study.participants.exists():
                if _only_decoding_changed(study=study, spec=spec):
                    _study_new_round(study=study, spec=spec, source=source)
                    study.researchers.add(*users)
                    return study, True
                raise StudyLoadError(
                    f"{source}: study {study.slug!r} already has stimuli or participants; "
                    "load the changed spec under a new slug (or edit it in the admin); a spec that changes "
                    "only `decoding` starts a new generation round of the same study while no rater slot exists"
                )
            # Children only: the Study row (and its researchers) stays.
            study.deployments.all().delete()
            study.conditions.all().delete()
            study.language_models.all().delete()
            study.task_families.all().delete()
            study.dimensions.all().delete()
        study = _study_write(study=study, spec=spec)
        study.researchers.add(*users)
    return study, True


def _only_decoding_changed(*, study: Study, spec: StudySpec) -> bool:
    """The new spec differs from the loaded one in ``decoding`` and nothing else."""
    stored = {key: value for key, value in (study.spec or {}).items() if key != "decoding"}
    loaded = {key: value for key, value in json_safe(spec.raw).items() if key != "decoding"}
    return stored == loaded and spec.study["decoding"] != study.decoding


def _study_new_round(*, study: Study, spec: StudySpec, source: str) -> None:
    """The changed decoding as a new generation round (``generation_jobs.generation_round_start``)."""
    from studyapp.studies.generation_jobs import generation_round_start

    try:
        generation_round_start(study=study, decoding=spec.study["decoding"])
    except StudyLoadError as error:
        raise StudyLoadError(f"{source}: decoding changed, but {error}") from None
    Study.objects.filter(pk=study.pk).update(
        spec=json_safe(spec.raw), spec_version=spec.version, spec_sha256=spec.sha256
    )
    study.refresh_from_db()


def _study_load_allowed(*, study: Study | None, slug: str, acting_user, source: str) -> None:
    if acting_user is None or user_sees_every_study(user=acting_user):
        return
    if slug in RESERVED_SLUGS or (study is not None and not user_can_view_study(user=acting_user, study=study)):
        raise StudyLoadError(f"{source}: {SLUG_UNAVAILABLE.format(slug=slug)}")


def _researchers_lookup(usernames: Sequence[str], source: str) -> list:
    if not usernames:
        return []
    users = list(get_user_model().objects.filter(username__in=usernames))
    missing = sorted(set(usernames) - {u.username for u in users})
    if missing:
        raise SpecError([f"researchers: no user named {name!r}" for name in missing], source)
    return users


def _study_write(*, study: Study | None, spec: StudySpec) -> Study:
    fields = dict(spec.study)
    fields.update(spec=json_safe(spec.raw), spec_version=spec.version, spec_sha256=spec.sha256)
    if study is None:
        study = Study.objects.create(**fields)
    else:
        for name, value in fields.items():
            setattr(study, name, value)
        study.save()

    models = {
        m["key"]: LanguageModel.objects.create(
            study=study, key=m["key"], source=m["source"], backend=m["backend"], device=m["device"], dtype=m["dtype"]
        )
        for m in spec.models
    }
    conditions = {
        c["key"]: Condition.objects.create(
            study=study,
            model=models[c["model"]],
            key=c["key"],
            label=c["label"],
            method=c["method"],
            params=c["params"],
            artifact_path=c["artifact_path"],
        )
        for c in spec.conditions
    }
    tasks = {}
    for t in spec.tasks:
        task = TaskFamily.objects.create(
            study=study,
            key=t["key"],
            template=t["template"],
            system_prompt=t["system_prompt"],
            parser=t["parser"],
            description=t["description"],
        )
        Item.objects.bulk_create([Item(task=task, key=i["key"], text=i["text"]) for i in t["items"]])
        tasks[t["key"]] = task
    RatingDimension.objects.bulk_create(
        [RatingDimension(study=study, position=position, **d) for position, d in enumerate(spec.dimensions)]
    )
    for d in spec.deployments:
        deployment = Deployment.objects.create(
            study=study,
            slug=d["slug"],
            model=models[d["model"]],
            task=tasks[d["task"]],
            samples_per_item=d["samples_per_item"],
            automatic_only=d["automatic_only"],
            accept_truncation=d["accept_truncation"],
            **d["raters"],
        )
        deployment.conditions.set([conditions[key] for key in d["conditions"]])
    return study


def json_safe(value: Any) -> Any:
    """``value`` as a JSONField stores it: dates (YAML has them) become strings."""
    return json.loads(json.dumps(value, default=str))
