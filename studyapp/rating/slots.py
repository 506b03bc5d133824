"""Building the rater slots of a study: its balanced plan (``services.slot_plan_compute``) stored.

One builder, :func:`slots_build`, for the researcher's "Build rater slots" button,
``manage.py build_slots``, the demo and the tests. It raises :class:`SlotPlanError` with a
message for the researcher when the numbers cannot balance or slots in use would change.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from studyapp.rating.models import DeploymentLink, Rating, Slot, SlotStimulus
from studyapp.rating.services import SlotPlanError, slot_plan_compute
from studyapp.studies.models import Deployment, RatingDimension, Stimulus, Study
from studyapp.studies.vocabulary import pairing_problem


def slots_build(*, study: Study, deployments: Iterable[Deployment] | None = None) -> dict[str, list[Slot]]:
    """Build the slots of the study's deployments (``deployments``: only those); idempotent.

    Returns the slots per rated deployment's slug. Building again with the same stimuli
    and settings changes nothing; with different ones a deployment's slots are rebuilt,
    unless a rater already used one. An automatic-only deployment gets no slots (any built
    before it became so are removed) and no entry in the result.

    Raises
    ------
    SlotPlanError
        Its message names the deployment and says why; deployments built before it stay built.
    """
    chosen = (
        list(deployments)
        if deployments is not None
        else list(Deployment.objects.filter(study=study).select_related("study", "task").order_by("slug"))
    )
    built: dict[str, list[Slot]] = {}
    for deployment in chosen:
        try:
            if deployment.automatic_only:
                _automatic_only_clear_slots(deployment=deployment)
            else:
                built[deployment.slug] = _deployment_slots_build(deployment=deployment)
        except SlotPlanError as error:
            raise SlotPlanError(f"deployment {deployment.slug}: {error}") from error
    return built


def _deployment_slots_build(*, deployment: Deployment) -> list[Slot]:
    """Build one rated deployment's slots (see :func:`slots_build`)."""
    study = deployment.study
    with transaction.atomic():
        # Serialises concurrent builders of the same deployment.
        Deployment.objects.select_for_update().filter(pk=deployment.pk).first()
        rated = rated_stimuli(deployment=deployment)
        _truncation_check(deployment=deployment, rated=rated)
        stimuli_by_condition: dict[str, list[int]] = {}
        for stimulus_id, condition_key in rated.values_list("id", "condition__key"):
            stimuli_by_condition.setdefault(condition_key, []).append(stimulus_id)
        plan = slot_plan_compute(
            stimuli_by_condition=stimuli_by_condition,
            raters=deployment.raters_planned,
            per_rater=deployment.per_rater,
            seed=f"{study.seed}:{deployment.slug}",
        )
        _pairing_check(deployment=deployment, rated=rated, n_conditions=len(stimuli_by_condition))
        if not RatingDimension.objects.filter(study=study).exists():
            raise SlotPlanError("the study has no rating dimensions: a rating page would have nothing to ask")
        # The balanced design only: pilot slots are copies outside it and never block a rebuild.
        existing = list(Slot.objects.filter(deployment=deployment, pilot=False).order_by("index"))
        if existing:
            planned: dict[int, list[int]] = {slot.id: [] for slot in existing}
            for slot_id, stimulus_id in (
                SlotStimulus.objects.filter(slot__deployment=deployment, slot__pilot=False)
                .order_by("slot_id", "position")
                .values_list("slot_id", "stimulus_id")
            ):
                planned[slot_id].append(stimulus_id)
            if [planned[slot.id] for slot in existing] == plan.slots:
                DeploymentLink.objects.get_or_create(deployment=deployment)
                return existing
            used = any(slot.status != Slot.Status.FREE or slot.times_released for slot in existing)
            if used or Rating.objects.filter(slot__deployment=deployment, slot__pilot=False).exists():
                raise SlotPlanError(
                    "its slots are already in use by raters and the stimuli or settings changed; they cannot be rebuilt"
                )
            Slot.objects.filter(deployment=deployment, pilot=False).delete()
        slots = Slot.objects.bulk_create([Slot(deployment=deployment, index=j) for j in range(len(plan.slots))])
        SlotStimulus.objects.bulk_create(
            [
                SlotStimulus(slot=slot, stimulus_id=stimulus_id, position=position)
                for slot, stimulus_ids in zip(slots, plan.slots, strict=True)
                for position, stimulus_id in enumerate(stimulus_ids)
            ]
        )
        DeploymentLink.objects.get_or_create(deployment=deployment)
    return slots


def _pairing_check(*, deployment: Deployment, rated, n_conditions: int) -> None:
    """The loader's rule (``vocabulary.pairing_problem``) on the numbers as they are now (the admin edits them)."""
    if deployment.allow_paired_items or n_conditions < 2:
        return
    n_items = rated.values("item_id").distinct().count()
    problem = pairing_problem(
        n_conditions=n_conditions,
        n_items=n_items,
        rated_samples=deployment.rated_samples or deployment.generated_samples_per_item,
        per_rater=deployment.per_rater,
    )
    if problem:
        raise SlotPlanError(problem)


def _truncation_check(*, deployment: Deployment, rated) -> None:
    """A text cut mid-word is never shown to raters unless the deployment accepts truncation."""
    if deployment.accept_truncation:
        return
    n_cut = rated.filter(ends_mid_word=True).count()
    if n_cut:
        raise SlotPlanError(
            f"{n_cut} of its rated texts end mid-word, cut by max_new_tokens: exclude and regenerate them "
            "(its texts page), raise max_new_tokens (a new generation round), or accept truncation for it"
        )


def rated_stimuli(*, deployment: Deployment):
    """The deployment's stimuli that enter the rater design (``studies.design.rated_stimulus_ids``)."""
    from studyapp.studies.design import SampleRow, rated_stimulus_ids

    study = deployment.study
    n_samples = deployment.generated_samples_per_item
    stimuli = Stimulus.objects.current().filter(deployment=deployment)
    rows = (
        SampleRow(stimulus_id, task_key, item_key, n_samples, sample_index, replaces_id, excluded_at is not None)
        for stimulus_id, task_key, item_key, sample_index, replaces_id, excluded_at in stimuli.values_list(
            "id", "item__task__key", "item__key", "sample_index", "replaces_id", "excluded_at"
        )
    )
    ids = rated_stimulus_ids(rows=rows, study_seed=study.seed, n_rated=deployment.rated_samples)
    return stimuli.filter(id__in=ids)


def _automatic_only_clear_slots(*, deployment: Deployment) -> list[Slot]:
    """An automatic-only deployment has no slots and no entry link (ones built before it became so go)."""
    with transaction.atomic():
        Deployment.objects.select_for_update().filter(pk=deployment.pk).first()
        slots = Slot.objects.filter(deployment=deployment)
        if (
            slots.exclude(status=Slot.Status.FREE).exists()
            or Rating.objects.filter(slot__deployment=deployment).exists()
        ):
            raise SlotPlanError("it is automatic-only, but raters already used its slots; they cannot be removed")
        slots.delete()
        DeploymentLink.objects.filter(deployment=deployment).delete()
    return []
