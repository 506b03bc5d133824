"""Screening stimuli before raters see them: truncation and length stored, shown and warned about; exclusion."""

from __future__ import annotations

import pytest

from studyapp.rating.models import SlotStimulus
from studyapp.rating.services import SlotPlanError
from studyapp.rating.slots import slots_build
from studyapp.studies.exports import export_stimuli_frame
from studyapp.studies.generation_jobs import (
    count_words,
    generation_start,
    sample_seed,
    stimuli_regenerate_excluded,
    stimulus_exclude,
)
from studyapp.studies.models import GenerationJob, Stimulus, Study
from studyapp.studies.screening import study_screening
from studyapp.studies.study_loading import StudyLoadError
from tests.factories import ResearcherFactory
from tests.studyapp.rating.helpers import researcher_client
from tests.studyapp.studies.conftest import tiny_spec


def _generated(tiny_study, django_capture_on_commit_callbacks, **options):
    study = tiny_study(**options)
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study)
    jobs = GenerationJob.objects.filter(deployment__study=study)
    assert {job.status for job in jobs} == {"succeeded"}, [job.error_message for job in jobs]
    return study


@pytest.mark.django_db
def test_truncation_and_length_are_stored_and_exported(
    tiny_study, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path
) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = _generated(tiny_study, django_capture_on_commit_callbacks, conditions=("base", "weight"), max_new_tokens=6)
    stimuli = list(Stimulus.objects.filter(deployment__study=study))
    assert stimuli and all(s.finished is not None for s in stimuli)
    assert all(s.n_words == count_words(s.text) for s in stimuli)
    # A response that ran to max_new_tokens was cut off; one that ended early was not.
    assert all(s.finished is False for s in stimuli if s.n_new_tokens == 6 and not s.finished)
    assert all(s.n_new_tokens < 6 for s in stimuli if s.finished)
    frame = export_stimuli_frame(study=study)
    for column in ("finished", "length_words", "excluded", "exclusion_reason", "replaces"):
        assert column in frame.columns
    assert frame["length_words"].tolist() == [Stimulus.objects.get(token=token).n_words for token in frame["stimulus"]]
    assert not frame["excluded"].any()


def test_words_are_tokens_with_a_letter() -> None:
    assert count_words("1. Build a house\n2. Door-stop!  ") == 4
    assert count_words("") == 0


@pytest.fixture
def screened(client, tiny_study, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path):
    """A generated base-vs-prompt study, with its researcher logged in."""
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = _generated(tiny_study, django_capture_on_commit_callbacks, conditions=("base", "prompt"))
    researcher = ResearcherFactory(username="screener")
    study.researchers.add(researcher)
    client.force_login(researcher)
    return study


@pytest.mark.django_db
def test_dashboard_shows_length_and_truncation_and_warns(client, screened) -> None:
    study = screened
    Stimulus.objects.filter(deployment__study=study).update(finished=True, n_words=40)
    html = client.get(f"/panel/{study.slug}/").content.decode()
    assert "data-screening" in html and "data-screening-warning" not in html
    # The prompt condition writes much shorter answers, and most are cut off: two warnings.
    prompt = Stimulus.objects.filter(deployment__study=study, condition__key="prompt")
    prompt.update(n_words=12)
    Stimulus.objects.filter(pk__in=list(prompt.values_list("pk", flat=True)[:3])).update(finished=False)
    html = client.get(f"/panel/{study.slug}/").content.decode()
    assert html.count("data-screening-warning") == 2
    assert "base responses average 40 words, prompt 12" in html
    assert "75% of prompt responses are cut off" in html


@pytest.mark.django_db
def test_excluded_stimuli_are_replaced_with_new_seeds_and_never_rated(
    client, screened, django_capture_on_commit_callbacks
) -> None:
    study = screened
    victim = Stimulus.objects.get(deployment__study=study, condition__key="prompt", item__key="brick", sample_index=1)
    with pytest.raises(StudyLoadError, match="why"):
        stimulus_exclude(stimulus=victim, reason="  ")
    response = client.post(
        f"/panel/{study.slug}/stimuli/exclude/", {"stimulus": victim.token, "reason": "cut off mid-word"}
    )
    assert response.status_code == 302
    victim.refresh_from_db()
    assert victim.excluded_at is not None and victim.exclusion_reason == "cut off mid-word"
    assert "cut off mid-word" in client.get(f"/panel/{study.slug}/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        assert len(stimuli_regenerate_excluded(study=study)) == 1
    replacement = Stimulus.objects.get(replaces=victim)
    assert replacement.item_id == victim.item_id and replacement.condition_id == victim.condition_id
    assert replacement.sample_index == study.samples_per_item  # the next free index ...
    assert replacement.seed == sample_seed(
        study_seed=study.seed, task_key="aut", item_key="brick", sample_index=study.samples_per_item
    )
    assert replacement.seed != victim.seed  # ... hence a new seed
    with django_capture_on_commit_callbacks(execute=True):
        assert stimuli_regenerate_excluded(study=study) == []  # nothing left to replace

    deployment = victim.deployment
    slots_build(study=study, deployments=[deployment])
    rated = set(SlotStimulus.objects.filter(slot__deployment=deployment).values_list("stimulus_id", flat=True))
    assert victim.pk not in rated and replacement.pk in rated
    frame = export_stimuli_frame(study=study).set_index("stimulus")
    assert frame.loc[victim.token, "excluded"] and frame.loc[victim.token, "exclusion_reason"] == "cut off mid-word"
    assert frame.loc[replacement.token, "replaces"] == victim.token
    # Once slots exist, excluding would change what raters were promised: refused.
    other = Stimulus.objects.filter(deployment=deployment, excluded_at__isnull=True).first()
    with pytest.raises(StudyLoadError, match="slots"):
        stimulus_exclude(stimulus=other, reason="too late")
    response = client.post(f"/panel/{study.slug}/stimuli/exclude/", {"stimulus": "nope", "reason": "x"})
    assert response.status_code == 302


# --- Issue 20, point 5: screening before raters see anything -----------------------------


@pytest.mark.django_db
def test_a_text_cut_mid_word_is_never_rated_unless_the_deployment_accepts_truncation(
    client, tiny_study, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path
) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = _generated(tiny_study, django_capture_on_commit_callbacks, accept_truncation=False)
    deployment = study.deployments.get()
    stimuli = Stimulus.objects.filter(deployment=deployment)
    cut = [s for s in stimuli if s.finished is False and s.text[-1:].isalnum()]
    assert cut, "the tiny model's 8-token texts are cut"  # what the test is about
    assert {s.pk for s in stimuli if s.ends_mid_word} == {s.pk for s in cut}
    with pytest.raises(SlotPlanError, match=f"{len(cut)} of its rated texts end mid-word"):
        slots_build(study=study)
    assert not SlotStimulus.objects.exists()

    researcher = ResearcherFactory(username="truncation")
    study.researchers.add(researcher)
    client.force_login(researcher)
    row = client.get(f"/panel/{study.slug}/").content.decode()
    assert "Accept cut texts for aut-0" in row
    client.post(f"/panel/{study.slug}/truncation/aut-0/", {"state": "on"})
    deployment.refresh_from_db()
    assert deployment.accept_truncation
    slots_build(study=study)
    assert SlotStimulus.objects.filter(stimulus__ends_mid_word=True).exists()
    # Settled once slots exist.
    client.post(f"/panel/{study.slug}/truncation/aut-0/", {"state": "off"})
    deployment.refresh_from_db()
    assert deployment.accept_truncation


@pytest.mark.django_db
def test_an_automatic_only_deployment_offers_no_truncation_choice_and_refuses_one(
    tiny_study, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path
) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = _generated(tiny_study, django_capture_on_commit_callbacks, accept_truncation=False)
    study.deployments.update(automatic_only=True)
    client = researcher_client(study)
    page = client.get(f"/panel/{study.slug}/").content.decode()
    assert "data-automatic-only" in page and "Accept cut texts for aut-0" not in page
    response = client.post(f"/panel/{study.slug}/truncation/aut-0/", {"state": "on"}, follow=True)
    assert "automatic only: its texts are never rated" in response.content.decode()
    assert not study.deployments.get().accept_truncation


@pytest.mark.django_db
def test_a_changed_decoding_is_a_new_generation_round_of_the_same_study_with_provenance_per_stimulus(
    tiny_model_dir, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path, capsys
) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec(tiny_model_dir, max_new_tokens=6))
    call_command("load_study", str(spec))
    study = Study.objects.get(slug="tiny")
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study)
    first = {
        (s.condition.key, s.item.key, s.sample_index): s for s in Stimulus.objects.select_related("item", "condition")
    }
    assert {s.decoding["max_new_tokens"] for s in first.values()} == {6}

    # Raising max_new_tokens in the spec: the same study, a new round (it used to be refused).
    spec.write_text(tiny_spec(tiny_model_dir, max_new_tokens=12))
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_study", str(spec))
    assert "generation round 2" in capsys.readouterr().out
    study.refresh_from_db()
    assert study.generation_round == 2 and study.decoding["max_new_tokens"] == 12
    jobs = GenerationJob.objects.filter(deployment__study=study)
    assert {job.status for job in jobs} == {"succeeded"}
    current = list(Stimulus.objects.current().filter(deployment__study=study).select_related("item", "condition"))
    assert len(current) == len(first) and {s.generation_round for s in current} == {2}
    for stimulus in current:
        old = first[(stimulus.condition.key, stimulus.item.key, stimulus.sample_index)]
        assert stimulus.decoding["max_new_tokens"] == 12 and stimulus.seed == old.seed
        # The same seed continues the same text further (greedy or sampled alike: the prefix is shared).
        assert stimulus.n_new_tokens >= old.n_new_tokens
    # The first round is kept, with the settings that made it, and no longer screened or exported.
    kept = Stimulus.objects.filter(pk__in=[s.pk for s in first.values()])
    assert kept.count() == len(first) and {s.decoding["max_new_tokens"] for s in kept} == {6}
    frame = export_stimuli_frame(study=study)
    assert set(frame["generation_round"]) == {2} and len(frame) == len(current)
    assert sum(row.n for row in study_screening(study=study).rows) == len(current)

    # Once slots exist the design is settled: a further change of decoding is refused.
    slots_build(study=study)
    spec.write_text(tiny_spec(tiny_model_dir, max_new_tokens=16))
    with pytest.raises(CommandError, match=r"decoding changed, but .* already has rater slots") as raised:
        call_command("load_study", str(spec))
    assert raised.value.returncode == 2
    study.refresh_from_db()
    assert study.generation_round == 2 and study.decoding["max_new_tokens"] == 12
    # Anything else changed is refused as before.
    spec.write_text(tiny_spec(tiny_model_dir, max_new_tokens=12, samples=3))
    with pytest.raises(CommandError, match="already has stimuli or participants"):
        call_command("load_study", str(spec))
