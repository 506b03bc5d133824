"""Researcher isolation in the admin (issue 11, item 2): one persona test per admin model.

Two studies, each with its own researcher and full data. For every model of the panel each
persona's change list, change pages, form choices (inlines included), list filters and
actions are checked against what belongs to their own study.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from studyapp.studies.admin_scoping import STUDY_PATHS
from studyapp.studies.models import DiversityMetric, GenerationJob, RatingDimension, Stimulus, Study, StudyReport
from tests.factories import personas, study_with_ratings

pytestmark = pytest.mark.django_db
PANEL_MODELS = sorted(
    f"{model._meta.app_label}.{model._meta.model_name}"
    for model in admin.site._registry
    if model._meta.app_label in ("studies", "rating")
)


def _rows_of(model, study):
    path = STUDY_PATHS[model]
    return model.objects.filter(pk=study.pk) if path == "" else model.objects.filter(**{path: study})


def _with_everything(study: Study) -> Study:
    stimulus = Stimulus.objects.filter(deployment__study=study).select_related("deployment", "condition").first()
    DiversityMetric.objects.create(
        deployment=stimulus.deployment, condition=stimulus.condition, item=stimulus.item, n_samples=2, metrics={}
    )
    StudyReport.objects.create(study=study, status=StudyReport.Status.READY)
    return study


@pytest.fixture
def world():
    a = _with_everything(study_with_ratings(n_deployments=1, raters_per_deployment=2))
    b = _with_everything(study_with_ratings(n_deployments=1, raters_per_deployment=2))
    return {"a": a, "b": b, **personas(study=a, other_study=b)}


def _model(label: str):
    return next(m for m in admin.site._registry if f"{m._meta.app_label}.{m._meta.model_name}" == label)


def _choice_querysets(response):
    """Every queryset offered by a form on the page: the main form and each inline's empty form."""
    forms = [response.context["adminform"].form]
    for inline in response.context.get("inline_admin_formsets", []):
        forms.append(inline.formset.empty_form)
    for form in forms:
        for name, field in form.fields.items():
            # An inline's hidden primary-key field is no choice: Django looks rows up in the
            # inline's own (parent-filtered) queryset.
            if name == form._meta.model._meta.pk.name:
                continue
            if getattr(field, "queryset", None) is not None:
                yield name, field.queryset


@pytest.mark.parametrize("label", PANEL_MODELS)
@pytest.mark.parametrize("persona", ["researcher", "other_researcher"])
def test_a_researcher_sees_and_picks_only_their_own_studys_rows(client, world, label, persona) -> None:
    model = _model(label)
    own, foreign = (world["a"], world["b"]) if persona == "researcher" else (world["b"], world["a"])
    client.force_login(world[persona])
    info = (model._meta.app_label, model._meta.model_name)
    changelist = client.get(reverse("admin:{}_{}_changelist".format(*info)))
    assert changelist.status_code == 200
    listed = {obj.pk for obj in changelist.context["cl"].result_list}
    assert listed == set(_rows_of(model, own).values_list("pk", flat=True)) and listed
    foreign_pks = {pk for pk in _rows_of(model, foreign).values_list("pk", flat=True)}
    foreign_study_rows = {(m, pk) for m in STUDY_PATHS for pk in _rows_of(m, foreign).values_list("pk", flat=True)}
    for spec in changelist.context["cl"].filter_specs:
        for value, _title in getattr(spec, "lookup_choices", []):
            related = getattr(getattr(spec, "field", None), "related_model", None)
            assert (related, value) not in foreign_study_rows, (spec.title, value)

    foreign_row = _rows_of(model, foreign).first()
    response = client.get(reverse("admin:{}_{}_change".format(*info), args=[foreign_row.pk]))
    assert response.status_code == 302 and foreign_row.pk in foreign_pks

    own_row = _rows_of(model, own).first()
    pages = [client.get(reverse("admin:{}_{}_change".format(*info), args=[own_row.pk]))]
    add = client.get(reverse("admin:{}_{}_add".format(*info)))
    if add.status_code == 200:
        pages.append(add)
    for page in pages:
        assert page.status_code == 200
        for name, queryset in _choice_querysets(page):
            if queryset.model in STUDY_PATHS:
                leaked = queryset.filter(pk__in=_rows_of(queryset.model, foreign).values("pk"))
                assert not leaked.exists(), (label, name)


@pytest.mark.parametrize("label", PANEL_MODELS)
def test_a_non_staff_user_and_a_superuser(client, world, label) -> None:
    model = _model(label)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    client.force_login(world["non_staff"])
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(world["superuser"])
    listed = {obj.pk for obj in client.get(url).context["cl"].result_list}
    both = set(_rows_of(model, world["a"]).values_list("pk", flat=True)) | set(
        _rows_of(model, world["b"]).values_list("pk", flat=True)
    )
    assert both <= listed


def test_another_teams_study_cannot_get_a_rating_question(client, world) -> None:
    """The reported attack: B's researcher adds a dimension to A's live study."""
    client.force_login(world["other_researcher"])
    before = RatingDimension.objects.filter(study=world["a"]).count()
    response = client.post(
        reverse("admin:studies_ratingdimension_add"),
        {"study": world["a"].pk, "key": "injected", "question": "Injected?", "scale": "slider_0_100",
         "low_label": "no", "high_label": "yes", "position": 9},
    )  # fmt: skip
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert RatingDimension.objects.filter(study=world["a"]).count() == before


def test_a_researcher_of_two_studies_cannot_cross_wire_them(client, world) -> None:
    world["a"].researchers.add(world["other_researcher"])
    client.force_login(world["other_researcher"])
    deployment = world["a"].deployments.first()
    foreign_model = world["b"].language_models.first()
    response = client.post(
        reverse("admin:studies_deployment_change", args=[deployment.pk]),
        {"study": world["a"].pk, "slug": deployment.slug, "model": foreign_model.pk, "task": deployment.task_id,
         "conditions": list(deployment.conditions.values_list("pk", flat=True))},
    )  # fmt: skip
    assert response.status_code == 200 and "this row&#x27;s own study" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.model.study_id == world["a"].pk


def test_actions_never_reach_another_teams_rows(client, world, django_capture_on_commit_callbacks) -> None:
    jobs = GenerationJob.objects.filter(deployment__study=world["a"])
    jobs.update(status="failed", error_message="kept")
    client.force_login(world["other_researcher"])
    with django_capture_on_commit_callbacks(execute=False) as queued:
        client.post(
            reverse("admin:studies_generationjob_changelist"),
            {"action": "retry", "_selected_action": list(jobs.values_list("pk", flat=True))},
        )
        client.post(
            reverse("admin:studies_study_changelist"),
            {"action": "start_generation", "_selected_action": [world["a"].pk]},
        )
    assert not queued
    assert set(jobs.values_list("status", flat=True)) == {"failed"}


def test_the_study_form_lists_only_co_researchers_never_every_username(client) -> None:
    """Issue 21, item 9: the researchers field listed every account of the platform."""
    from tests.factories import StudyFactory, panel_user

    mine, theirs, shared = StudyFactory(slug="mine"), StudyFactory(slug="theirs"), StudyFactory(slug="shared")
    me = panel_user(username="me", study=mine)
    colleague = panel_user(username="colleague", study=shared)
    shared.researchers.add(me)
    stranger = panel_user(username="stranger-of-another-team", study=theirs)
    panel_user(username="root", superuser=True)
    client.force_login(me)
    url = reverse("admin:studies_study_change", args=[mine.pk])
    choices = client.get(url).context["adminform"].form.fields["researchers"].queryset
    assert sorted(choices.values_list("username", flat=True)) == ["colleague", "me"]
    assert "stranger-of-another-team" not in client.get(url).content.decode()
    forged = client.post(url, {"slug": "mine", "title": "Mine", "researchers": [me.pk, stranger.pk]})
    assert forged.status_code == 200 and "Select a valid choice" in forged.content.decode()
    assert list(mine.researchers.values_list("username", flat=True)) == ["me"]
    assert colleague.pk in set(choices.values_list("pk", flat=True))
    client.force_login(panel_user(username="superuser", superuser=True))
    everyone = client.get(url).context["adminform"].form.fields["researchers"].queryset
    assert "stranger-of-another-team" in set(everyone.values_list("username", flat=True))
