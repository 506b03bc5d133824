"""Once a condition has stimuli, what made them is read-only (issue 11, item 3)."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from studyapp.studies.models import Condition, LanguageModel, Stimulus, Study
from studyapp.studies.provenance import NEW_VERSION_ADVICE, ProvenanceLockedError
from tests.factories import ConditionFactory, panel_user, study_with_ratings

pytestmark = pytest.mark.django_db


def _weight_condition(study: Study) -> Condition:
    return Condition.objects.filter(study=study, method="weight").first()


def _change_form(condition: Condition) -> dict:
    return {
        "study": condition.study_id,
        "model": condition.model_id,
        "key": condition.key,
        "method": condition.method,
        "label": condition.label,
        "params": '{"rho": 0.1, "alpha": 2.0}',
        "artifact_path": condition.artifact_path,
    }


def test_admin_shows_a_generated_conditions_parameters_read_only_and_ignores_a_change(client) -> None:
    study = study_with_ratings(n_deployments=1, raters_per_deployment=1)
    condition = _weight_condition(study)
    client.force_login(panel_user(username="researcher", study=study))
    url = reverse("admin:studies_condition_change", args=[condition.pk])
    page = client.get(url)
    form = page.context["adminform"].form
    assert not {"method", "params", "model"} & set(form.fields)
    assert NEW_VERSION_ADVICE in html.unescape(page.content.decode())
    response = client.post(url, _change_form(condition))
    assert response.status_code == 302
    condition.refresh_from_db()
    assert condition.params == {"rho": 0.1}
    exported = {s.condition.params["rho"] for s in Stimulus.objects.filter(condition=condition)}
    assert exported == {0.1}


def test_no_other_path_changes_provenance_once_stimuli_exist() -> None:
    study = study_with_ratings(n_deployments=1, raters_per_deployment=1)
    condition = _weight_condition(study)
    condition.params = {"rho": 0.1, "alpha": 2.0}
    with pytest.raises(ProvenanceLockedError, match="params cannot change"):
        condition.save()
    condition.refresh_from_db()
    condition.method = "activation"
    with pytest.raises(ProvenanceLockedError, match="method cannot change"):
        condition.save(update_fields=["method"])
    study.refresh_from_db()
    study.decoding = {"temperature": 1.5}
    with pytest.raises(ProvenanceLockedError, match="decoding cannot change"):
        study.save()
    model = LanguageModel.objects.filter(study=study).first()
    model.source = "/elsewhere/model"
    with pytest.raises(ProvenanceLockedError, match="source cannot change"):
        model.save()
    # What made no stimulus stays editable: the label, and a condition without stimuli.
    condition.refresh_from_db()
    condition.label = "renamed-arm"
    condition.save()
    fresh = ConditionFactory(study=study, model=model, params={"alpha": 1.0})
    fresh.params = {"alpha": 3.0}
    fresh.save()
    assert Condition.objects.get(pk=fresh.pk).params == {"alpha": 3.0}


def test_a_condition_without_stimuli_is_editable_in_the_admin(client) -> None:
    study = study_with_ratings(n_deployments=1, raters_per_deployment=1)
    condition = ConditionFactory(study=study, model=LanguageModel.objects.filter(study=study).first(), method="weight")
    client.force_login(panel_user(username="researcher", study=study))
    url = reverse("admin:studies_condition_change", args=[condition.pk])
    assert "params" in client.get(url).context["adminform"].form.fields
    assert client.post(url, _change_form(condition)).status_code == 302
    condition.refresh_from_db()
    assert condition.params == {"rho": 0.1, "alpha": 2.0}


def test_a_generated_conditions_artifact_path_is_locked_like_its_siblings(client) -> None:
    """Issue 20, point 9: the artifact a condition's stimuli came from cannot be repointed."""
    study = study_with_ratings(n_deployments=1, raters_per_deployment=1)
    condition = _weight_condition(study)
    # Outside ARTIFACT_DIR/<study>: written before the artifact roots were checked (or ARTIFACT_DIR
    # moved since). Read-only, it is a record: saving the condition is no 500 (the roots' error
    # had no form field to go to), and a job start still refuses the path.
    Condition.objects.filter(pk=condition.pk).update(artifact_path="/artifacts/weight-abc123")
    client.force_login(panel_user(username="researcher", study=study))
    url = reverse("admin:studies_condition_change", args=[condition.pk])
    assert "artifact_path" not in client.get(url).context["adminform"].form.fields
    response = client.post(url, {**_change_form(condition), "artifact_path": "/elsewhere/other-artifact"})
    assert response.status_code == 302
    condition.refresh_from_db()
    assert condition.artifact_path == "/artifacts/weight-abc123"
    condition.artifact_path = "/elsewhere/other-artifact"
    with pytest.raises(ProvenanceLockedError, match="artifact_path cannot change"):
        condition.save()
    # Before any stimulus, a spec's artifact_path stays editable (a reused artifact chosen by hand).
    fresh = ConditionFactory(study=study, model=condition.model, method="weight", artifact_path="/a/one")
    fresh.artifact_path = "/a/two"
    fresh.save()
    assert Condition.objects.get(pk=fresh.pk).artifact_path == "/a/two"


def test_a_locked_model_source_outside_the_model_roots_does_not_stop_an_admin_save(client) -> None:
    """A generated model's source is read-only; a source from before MODEL_ROOTS is a record, not
    a form error with no field to show it on (a 500), in the model's page and the study's inline."""
    study = study_with_ratings(n_deployments=1, raters_per_deployment=1)
    model = LanguageModel.objects.filter(study=study).first()
    LanguageModel.objects.filter(pk=model.pk).update(source="/opt/old-models/smol")
    client.force_login(panel_user(username="researcher", study=study))
    url = reverse("admin:studies_languagemodel_change", args=[model.pk])
    assert "source" not in client.get(url).context["adminform"].form.fields
    fields = {"study": study.pk, "key": model.key, "backend": model.backend, "device": "cpu", "dtype": model.dtype}
    assert client.post(url, fields).status_code == 302
    model.refresh_from_db()
    assert (model.source, model.device) == ("/opt/old-models/smol", "cpu")
