"""The researcher panel: who may see it, what the dashboard costs, and what the export holds."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from studyapp.rating.models import AttentionCheckResponse, Participant, Slot
from studyapp.studies.models import Deployment, GenerationJob, Stimulus, Study
from studyapp.studies.selectors import RATING_COLUMNS, export_ratings_frame, export_stimuli_frame
from studyapp.studies.services import export_write
from tests.factories import (
    ConditionFactory,
    DeploymentFactory,
    ItemFactory,
    LanguageModelFactory,
    ParticipantFactory,
    RatingDimensionFactory,
    RatingFactory,
    ResearcherFactory,
    SlotFactory,
    StimulusFactory,
    StudyFactory,
    TaskFamilyFactory,
    UserFactory,
)


def build_design(*, n_deployments: int, raters_per_deployment: int, items: int = 2, samples: int = 2) -> Study:
    """A study with rated stimuli: deployments x (base, steered) x items x samples, every rater rating everything."""
    study = StudyFactory()
    dimensions = [RatingDimensionFactory(study=study, key=key) for key in ("originality", "surprise")]
    task = TaskFamilyFactory(study=study)
    task_items = [ItemFactory(task=task) for _ in range(items)]
    for d in range(n_deployments):
        model = LanguageModelFactory(study=study)
        base = ConditionFactory(study=study, model=model, method="base")
        steered = ConditionFactory(study=study, model=model, method="weight", params={"rho": 0.1})
        deployment = DeploymentFactory(study=study, model=model, task=task, slug=f"dep-{d}")
        deployment.conditions.set([base, steered])
        stimuli = []
        for condition in (base, steered):
            job = GenerationJob.objects.create(
                deployment=deployment, condition=condition, status="succeeded", total=items * samples
            )
            for item in task_items:
                for index in range(samples):
                    stimuli.append(
                        StimulusFactory(
                            job=job, item=item, sample_index=index, metrics={"n_words": 5.0, "aut_fluency": 2.0}
                        )
                    )
        for r in range(raters_per_deployment):
            participant = ParticipantFactory(study=study, step="complete" if r % 2 == 0 else "rating")
            slot = SlotFactory(deployment=deployment, index=r, participant=participant, status="active")
            for page, stimulus in enumerate(stimuli[::2][:3]):  # both conditions
                for position, dimension in enumerate(dimensions):
                    RatingFactory(
                        participant=participant,
                        slot=slot,
                        stimulus=stimulus,
                        dimension=dimension,
                        # Varied but deterministic, so a mixed model has variance to estimate.
                        score=float((37 * r + 53 * page + 29 * position + 11 * d + 17 * len(stimulus.token)) % 101),
                        page_index=page,
                        dimension_position=position,
                        seconds_on_page=5.0 + page,
                    )
            AttentionCheckResponse.objects.create(
                participant=participant, check_index=0, page_index=2, response="100", passed=r % 3 != 0
            )
    return study


@pytest.fixture
def researcher(db):
    return ResearcherFactory(username="researcher")


@pytest.fixture
def study(db, researcher) -> Study:
    study = build_design(n_deployments=2, raters_per_deployment=3)
    study.researchers.add(researcher)
    return study


PANEL_URLS = [
    ("studies:dashboard", ()),
    ("studies:export", ("ratings", "csv")),
    ("studies:export", ("stimuli", "parquet")),
    ("studies:report", ()),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "extra"), PANEL_URLS)
def test_panel_answers_only_to_staff_researchers_of_the_study(client, study, researcher, name, extra) -> None:
    url = reverse(name, args=[study.slug, *extra])
    assert client.get(url).status_code == 302  # anonymous: to the login page

    client.force_login(UserFactory(username="rater-ish"))  # logged in, not staff
    assert client.get(url).status_code == 403

    client.force_login(ResearcherFactory(username="other_researcher"))  # staff, not on this study
    assert client.get(url).status_code == 404

    client.force_login(researcher)
    assert client.get(url).status_code == 200

    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_panel_actions_are_post_only_and_guarded(client, study, researcher) -> None:
    url = reverse("studies:generation_start", args=[study.slug])
    client.force_login(ResearcherFactory(username="other_researcher"))
    assert client.post(url).status_code == 404
    client.force_login(researcher)
    assert client.get(url).status_code == 405


@pytest.mark.django_db
def test_unknown_study_or_export_is_404_not_500(client, study, researcher) -> None:
    client.force_login(researcher)
    assert client.get(reverse("studies:dashboard", args=["no-such-study"])).status_code == 404
    assert client.get(reverse("studies:export", args=[study.slug, "ratings", "xlsx"])).status_code == 404
    assert client.get(reverse("studies:export", args=[study.slug, "secrets", "csv"])).status_code == 404
    assert client.get(reverse("studies:report_file", args=[study.slug, 999, "../../etc/passwd"])).status_code == 404


@pytest.mark.django_db
def test_admin_shows_a_researcher_only_their_studies(client, study, researcher) -> None:
    other = build_design(n_deployments=1, raters_per_deployment=1)
    researcher.is_superuser = False
    researcher.user_permissions.set(
        __import__("django.contrib.auth.models", fromlist=["Permission"]).Permission.objects.filter(
            content_type__app_label__in=["studies", "rating"], codename__startswith="view_"
        )
    )
    client.force_login(researcher)
    page = client.get(reverse("admin:studies_study_changelist"))
    assert page.status_code == 200
    assert study.slug in page.content.decode() and other.slug not in page.content.decode()
    stimuli = client.get(reverse("admin:studies_stimulus_changelist"))
    assert stimuli.status_code == 200
    assert client.get(reverse("admin:studies_study_change", args=[other.pk])).status_code in (302, 404)


@pytest.mark.django_db
def test_dashboard_shows_progress_and_quality(client, study, researcher) -> None:
    client.force_login(researcher)
    page = client.get(reverse("studies:dashboard", args=[study.slug]))
    html = page.content.decode()
    for text in ("dep-0", "dep-1", "succeeded", "Ratings per condition", "Attention-check failures"):
        assert text in html
    d = page.context["d"]
    assert d.participants["total"] == 6
    assert d.completion_rate is None  # nobody consented in the factory data
    assert d.attention_checks == 6 and d.attention_failures == 2
    assert d.median_seconds_per_page == 6.0
    assert sum(row["ratings"] for row in d.ratings_per_condition) == 6 * 3 * 2
    assert {row.slug: row.slots.get("active") for row in d.deployments} == {"dep-0": 3, "dep-1": 3}
    assert [(row.raters, row.raters_complete) for row in d.deployments] == [(3, 2), (3, 2)]
    assert d.deployments[0].completion_rate == pytest.approx(2 / 3)
    assert len(d.raters) == 6


@pytest.mark.django_db
def test_dashboard_query_count_does_not_grow_with_the_design(client, researcher) -> None:
    counts = []
    for n_deployments, raters in ((1, 1), (4, 5)):
        study = build_design(n_deployments=n_deployments, raters_per_deployment=raters)
        study.researchers.add(researcher)
        client.force_login(researcher)
        url = reverse("studies:dashboard", args=[study.slug])
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    # A fixed cost per section (progress, raters, quality, screening, result tables, control
    # room): what matters is that it does not grow with the design, checked above.
    assert counts[1] <= 30


@pytest.mark.django_db
def test_export_queries_are_bounded(study, django_assert_max_num_queries) -> None:
    with django_assert_max_num_queries(1):
        export_ratings_frame(study=study)
    with django_assert_max_num_queries(2):
        export_stimuli_frame(study=study)


@pytest.mark.django_db
def test_ratings_export_matches_the_database(client, study, researcher) -> None:
    client.force_login(researcher)
    response = client.get(reverse("studies:export", args=[study.slug, "ratings", "csv"]))
    assert response["Content-Disposition"].startswith(f'attachment; filename="{study.slug}-ratings-')
    frame = pd.read_csv(io.BytesIO(response.content))
    assert list(frame.columns) == RATING_COLUMNS
    ratings = {
        (r.participant.token, r.stimulus.token, r.dimension.key): r
        for r in __import__("studyapp.rating.models", fromlist=["Rating"]).Rating.objects.select_related(
            "participant", "stimulus__condition__model", "stimulus__deployment", "stimulus__item__task", "dimension"
        )
    }
    assert len(frame) == len(ratings) == 2 * 3 * 3 * 2
    for row in frame.to_dict("records"):
        rating = ratings[(row["rater"], row["stimulus"], row["dimension"])]
        assert row["score"] == rating.score
        assert row["deployment"] == rating.stimulus.deployment.slug
        assert row["condition"] == (rating.stimulus.condition.label or rating.stimulus.condition.method)
        assert row["condition_key"] == rating.stimulus.condition.key
        assert row["method"] == rating.stimulus.condition.method
        assert row["model"] == rating.stimulus.condition.model.key
        assert row["task"] == rating.stimulus.item.task.key
        assert row["item"] == rating.stimulus.item.key
        assert row["page_index"] == rating.page_index
        assert row["seconds_on_page"] == rating.seconds_on_page
        assert (row["scale_min"], row["scale_max"]) == (0, 100)
        assert row["rater_complete"] == (rating.participant.step == Participant.Step.COMPLETE)
    # The condition never appears in what a rater could see, but the export carries it for analysis.
    assert set(frame["method"]) == {"base", "weight"}


@pytest.mark.django_db
def test_stimuli_export_carries_text_provenance_and_metrics(client, study, researcher) -> None:
    client.force_login(researcher)
    response = client.get(reverse("studies:export", args=[study.slug, "stimuli", "parquet"]))
    frame = pd.read_parquet(io.BytesIO(response.content))
    assert len(frame) == Stimulus.objects.filter(deployment__study=study).count() == 2 * 2 * 2 * 2
    for column in ("stimulus", "deployment", "condition", "model", "task", "item", "sample_index", "text"):
        assert column in frame.columns
    for column in ("model_source", "model_sha256", "artifact_sha256", "seed", "decoding", "n_words", "aut_fluency"):
        assert column in frame.columns
    stimulus = Stimulus.objects.filter(deployment__study=study).first()
    row = frame.set_index("stimulus").loc[stimulus.token]
    assert row["text"] == stimulus.text
    assert row["model_sha256"] == stimulus.model_sha256


@pytest.mark.django_db
def test_export_study_command_writes_csv_and_parquet(study, tmp_path) -> None:
    from django.core.management import call_command

    call_command("export_study", study.slug, "--out", str(tmp_path))
    ratings = pd.read_parquet(tmp_path / f"{study.slug}-ratings.parquet")
    assert len(ratings) == len(pd.read_csv(tmp_path / f"{study.slug}-ratings.csv")) == 36
    assert len(pd.read_csv(tmp_path / f"{study.slug}-stimuli.csv")) == 16
    assert sorted(export_write(study=study, out_dir=tmp_path)) == [
        "ratings_csv",
        "ratings_parquet",
        "stimuli_csv",
        "stimuli_parquet",
    ]


@pytest.mark.django_db
def test_export_study_command_unknown_slug_exits_2() -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as raised:
        call_command("export_study", "nope")
    assert raised.value.returncode == 2


@pytest.mark.django_db
def test_empty_study_exports_headers_only(client, researcher) -> None:
    study = StudyFactory()
    study.researchers.add(researcher)
    client.force_login(researcher)
    frame = pd.read_csv(io.BytesIO(client.get(reverse("studies:export", args=[study.slug, "ratings", "csv"])).content))
    assert list(frame.columns) == RATING_COLUMNS and frame.empty
    assert client.get(reverse("studies:dashboard", args=[study.slug])).status_code == 200
    assert Deployment.objects.filter(study=study).count() == 0 and Slot.objects.count() == 0


@pytest.mark.django_db
def test_every_admin_page_of_the_panel_renders(client, study) -> None:
    from django.contrib import admin

    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    for model in admin.site._registry:
        if model._meta.app_label not in ("studies", "rating"):
            continue
        info = (model._meta.app_label, model._meta.model_name)
        assert client.get(reverse("admin:{}_{}_changelist".format(*info))).status_code == 200, info
        obj = model.objects.first()
        if obj is not None:
            assert client.get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk])).status_code == 200, info


@pytest.mark.django_db
def test_admin_actions_queue_generation_and_retry(client, study, django_capture_on_commit_callbacks, monkeypatch):
    from studyapp.studies import tasks

    queued = []
    monkeypatch.setattr(tasks.generation_run_job, "apply_async", lambda args, **options: queued.append(args[0]))
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    GenerationJob.objects.filter(deployment__study=study).update(status="failed", error_message="boom")
    job_ids = list(GenerationJob.objects.filter(deployment__study=study).values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:studies_generationjob_changelist"),
            {"action": "retry", "_selected_action": job_ids},
        )
    assert response.status_code == 302
    assert sorted(queued) == sorted(job_ids)
    assert set(GenerationJob.objects.filter(pk__in=job_ids).values_list("status", flat=True)) == {"queued"}


@pytest.mark.django_db
def test_loading_a_spec_in_the_admin_lists_problems_or_loads(client) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.studyapp.studies.test_spec import BROKEN, DEMO

    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    client.force_login(boss)
    url = reverse("admin:studies_study_load_spec")
    assert "Load a spec" in client.get(reverse("admin:studies_study_changelist")).content.decode()
    page = client.post(url, {"spec": SimpleUploadedFile("broken.yaml", BROKEN.encode())})
    assert page.status_code == 200
    assert "16 problems; nothing was loaded" in page.content.decode()
    assert "deployments[1].conditions[1]: unknown condition" in page.content.decode()
    assert not Study.objects.filter(slug="broken").exists()

    response = client.post(url, {"spec": SimpleUploadedFile("demo.yaml", DEMO.read_bytes())})
    assert response.status_code == 302 and response["Location"] == reverse("studies:dashboard", args=["demo"])
    assert list(Study.objects.get(slug="demo").researchers.all()) == [boss]
