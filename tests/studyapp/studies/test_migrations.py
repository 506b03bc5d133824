"""Data migrations: each moves stored rows to the new form and loses nothing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("studies", "0004_job_metrics_error"), ("rating", "0002_deployment_link")]
AFTER = [("studies", "0005_stimulus_text_id")]


def _old_study(apps, *, slug: str):
    """A study as an older schema stored it: one model, a base condition, the AUT with one item."""
    study = apps.get_model("studies", "Study").objects.create(slug=slug, title="Old")
    model = apps.get_model("studies", "LanguageModel").objects.create(study=study, key="m", source="embedded")
    condition = apps.get_model("studies", "Condition").objects.create(study=study, model=model, key="b", method="base")
    task = apps.get_model("studies", "TaskFamily").objects.create(study=study, key="aut", template="{item}")
    item = apps.get_model("studies", "Item").objects.create(task=task, key="brick", text="brick")
    return study, model, condition, task, item


@pytest.mark.django_db(transaction=True)
def test_text_ids_of_existing_stimuli_follow_the_twin_copies() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    study, model, condition, task, item = _old_study(apps, slug="old")
    Deployment = apps.get_model("studies", "Deployment")
    Job = apps.get_model("studies", "GenerationJob")
    Stimulus = apps.get_model("studies", "Stimulus")
    for slug in ("twin-a", "twin-b"):
        deployment = Deployment.objects.create(study=study, slug=slug, model=model, task=task)
        job = Job.objects.create(deployment=deployment, condition=condition)
        for sample in range(2):
            Stimulus.objects.create(
                token=f"{slug}-{sample}",
                job=job,
                deployment=deployment,
                condition=condition,
                item=item,
                sample_index=sample,
                prompt="p",
                text=f"text {sample}",
                seed=sample,
                model_source="embedded",
                model_sha256="0" * 64,
            )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    Stimulus = executor.loader.project_state(AFTER).apps.get_model("studies", "Stimulus")
    ids = dict(Stimulus.objects.values_list("token", "text_id"))
    assert ids["twin-a-0"] == ids["twin-b-0"] and ids["twin-a-1"] == ids["twin-b-1"]
    assert ids["twin-a-0"] != ids["twin-a-1"] and all(ids.values())
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # leave the database as the other tests expect it


@pytest.mark.django_db(transaction=True)
def test_stored_debrief_questions_and_practice_move_to_the_one_form() -> None:
    before = [("studies", "0010_study_rater_quality_endings_pilot")]
    after = [("studies", "0011_debrief_questions_one_form")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    Study = executor.loader.project_state(before).apps.get_model("studies", "Study")
    Study.objects.create(
        slug="old-debrief",
        title="Old",
        debrief_questions=["Comments?", {"key": "dev", "text": "Device?", "choices": ["phone", "pc"]}],
        practice={"prompt": "p", "response": "r"},
    )
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    study = executor.loader.project_state(after).apps.get_model("studies", "Study").objects.get(slug="old-debrief")
    assert study.debrief_questions == [
        {"key": "q1", "question": "Comments?", "type": "text", "options": [], "required": False},
        {"key": "dev", "question": "Device?", "type": "choice", "options": ["phone", "pc"], "required": False},
    ]
    assert study.practice == {"prompt": "p", "text": "r"}
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # leave the database as the other tests expect it


@pytest.mark.django_db(transaction=True)
def test_participants_stored_before_get_the_deployment_of_their_slot_their_ratings_or_their_link() -> None:
    before = [("rating", "0011_bonus_ledger")]
    after = [("rating", "0012_participant_deployment_kept")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    study, model, condition, task, item = _old_study(apps, slug="old-raters")
    dimension = apps.get_model("studies", "RatingDimension").objects.create(study=study, key="originality")
    Deployment = apps.get_model("studies", "Deployment")
    held, rated, pinned = (
        Deployment.objects.create(study=study, slug=slug, model=model, task=task)
        for slug in ("held", "rated", "pinned")
    )
    job = apps.get_model("studies", "GenerationJob").objects.create(deployment=rated, condition=condition)
    stimulus = apps.get_model("studies", "Stimulus").objects.create(
        token="s", job=job, deployment=rated, condition=condition, item=item, sample_index=0, prompt="p", text="t",
        seed=0, model_source="embedded", model_sha256="0" * 64,
    )  # fmt: skip
    Participant = apps.get_model("rating", "Participant")
    Slot = apps.get_model("rating", "Slot")

    def participant(pid: str, **fields):
        return Participant.objects.create(study=study, token=pid, prolific_pid=pid, prolific_session_id=pid, **fields)

    holder, timed_out, screened = (participant(pid) for pid in ("holder", "timed-out", "screened"))
    participant("declined")  # never given a slot: no deployment
    Participant.objects.filter(pk=screened.pk).update(pinned_deployment=pinned)
    Slot.objects.create(deployment=held, index=0, participant=holder, status="active")
    released = Slot.objects.create(deployment=rated, index=0)  # its rater timed out: no participant any more
    apps.get_model("rating", "Rating").objects.create(
        participant=timed_out, slot=released, stimulus=stimulus, dimension=dimension, score=50, page_index=0
    )

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    Participant = executor.loader.project_state(after).apps.get_model("rating", "Participant")
    found = dict(Participant.objects.values_list("token", "deployment__slug"))
    assert found == {"holder": "held", "timed-out": "rated", "screened": "pinned", "declined": None}
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # leave the database as the other tests expect it
