"""The researcher panel: who may see it, what the dashboard costs, and what the export holds."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from analysis.csv_cells import frame_csv_read
from studyapp.rating.models import Participant, Slot
from studyapp.studies.exports import RATING_COLUMNS, export_ratings_frame, export_stimuli_frame, export_write
from studyapp.studies.models import Deployment, DiversityMetric, GenerationJob, Stimulus, Study, new_opaque_token
from tests.factories import (
    ParticipantFactory,
    StudyFactory,
    non_staff_user,
    other_team_researcher,
    researcher_of,
    study_with_ratings,
    superuser,
)


@pytest.fixture
def study(db) -> Study:
    return study_with_ratings(n_deployments=2, raters_per_deployment=3)


@pytest.fixture
def researcher(study):
    return researcher_of(study)


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

    client.force_login(non_staff_user())
    assert client.get(url).status_code == 403

    client.force_login(other_team_researcher())
    assert client.get(url).status_code == 404

    client.force_login(researcher)
    assert client.get(url).status_code == 200

    client.force_login(superuser())
    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_panel_actions_are_post_only_and_guarded(client, study, researcher) -> None:
    url = reverse("studies:generation_start", args=[study.slug])
    client.force_login(other_team_researcher())
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
    other = study_with_ratings(n_deployments=1, raters_per_deployment=1)
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
def test_dashboard_counts_dropouts_consents_and_simulated_raters() -> None:
    """A drop-out timed out, or went silent past the slot timeout before the end; someone who
    only opened the consent page a moment ago is not one yet."""
    from datetime import timedelta

    from django.utils import timezone

    from studyapp.studies.dashboard import study_dashboard

    study = StudyFactory(slot_timeout_minutes=30)
    now, silent = timezone.now(), timezone.now() - timedelta(minutes=45)
    cases = [  # (step, consented, last seen, simulated, a drop-out?)
        ("timed_out", True, now, False, True),
        ("rating", True, silent, False, True),
        ("rating", True, now, True, False),
        ("consent", False, silent, False, True),
        ("consent", False, now, False, False),
        ("complete", True, silent, True, False),
    ]
    for step, consented, last_seen, simulated, _ in cases:
        participant = ParticipantFactory(
            study=study, step=step, consented_at=now if consented else None, simulated=simulated
        )
        Participant.objects.filter(pk=participant.pk).update(last_seen_at=last_seen)
    d = study_dashboard(study=study)
    assert d.dropouts == sum(case[-1] for case in cases) == 3
    assert d.participants["consented"] == 4 and d.participants["simulated"] == 2
    assert d.participants["total"] == 6 and d.participants["rating"] == 2
    assert d.completion_rate == pytest.approx(1 / 4)


@pytest.mark.django_db
def test_dashboard_query_count_does_not_grow_with_the_design(client) -> None:
    counts = []
    for n_deployments, raters in ((1, 1), (4, 5)):
        study = study_with_ratings(n_deployments=n_deployments, raters_per_deployment=raters)
        client.force_login(researcher_of(study))
        url = reverse("studies:dashboard", args=[study.slug])
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    # A fixed cost per section: 3 for the request (session, user, study), 15 for the
    # dashboard's figures (the latest ready report read once), 2 for the metrics summary,
    # 2 for screening, 5 for the control room (its time estimate reads the deployments' stimuli
    # per rater) and 1 for checking the rater pages' settings. One more is a section that grew.
    assert counts[1] == 28, counts


@pytest.mark.django_db
def test_export_queries_are_bounded(study, django_assert_max_num_queries) -> None:
    with django_assert_max_num_queries(1):
        export_ratings_frame(study=study)
    with django_assert_max_num_queries(2):
        export_stimuli_frame(study=study)


def test_opaque_tokens_never_start_as_a_spreadsheet_formula() -> None:
    # A token starting "-" is marked in the CSV ("'-x"), so a plain read_csv of the ratings would
    # not match the same stimulus in the Parquet export (token_urlsafe starts with "-" 1 time in 32).
    tokens = [new_opaque_token() for _ in range(2000)]
    assert all(token[0].isalnum() for token in tokens)
    assert len(set(tokens)) == len(tokens)
    assert {len(token) for token in tokens} == {16}


@pytest.mark.django_db
def test_ratings_export_matches_the_database(client, study, researcher) -> None:
    client.force_login(researcher)
    response = client.get(reverse("studies:export", args=[study.slug, "ratings", "csv"]))
    assert response["Content-Disposition"].startswith(f'attachment; filename="{study.slug}-ratings-')
    # Read as the analysis reads it: free text may begin with "=" or "-", which the CSV marks.
    frame = frame_csv_read(io.BytesIO(response.content))
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
        "participants_csv",
        "participants_parquet",
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
def test_empty_study_exports_headers_only(client) -> None:
    study = StudyFactory()
    client.force_login(researcher_of(study))
    frame = pd.read_csv(io.BytesIO(client.get(reverse("studies:export", args=[study.slug, "ratings", "csv"])).content))
    assert list(frame.columns) == RATING_COLUMNS and frame.empty
    assert client.get(reverse("studies:dashboard", args=[study.slug])).status_code == 200
    assert Deployment.objects.filter(study=study).count() == 0 and Slot.objects.count() == 0


@pytest.mark.django_db
def test_every_admin_page_of_the_panel_renders(client, study) -> None:
    from django.contrib import admin

    client.force_login(superuser())
    for model in admin.site._registry:
        if model._meta.app_label not in ("studies", "rating"):
            continue
        info = (model._meta.app_label, model._meta.model_name)
        assert client.get(reverse("admin:{}_{}_changelist".format(*info))).status_code == 200, info
        obj = model.objects.first()
        if obj is not None:
            assert client.get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk])).status_code == 200, info


@pytest.mark.slow
@pytest.mark.django_db
def test_admin_retry_action_runs_the_failed_jobs_and_their_metrics(
    client, study, celery_eager, django_capture_on_commit_callbacks
):
    """The action queues each job on commit; run in this process, the real task finishes it.

    Every sample of these jobs is stored already, so the run loads no model: it counts what
    it has, succeeds, and queues the job's metrics, which run too.
    """
    client.force_login(superuser())
    GenerationJob.objects.filter(deployment__study=study).update(status="failed", error_message="boom")
    job_ids = list(GenerationJob.objects.filter(deployment__study=study).values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:studies_generationjob_changelist"),
            {"action": "retry", "_selected_action": job_ids},
        )
    assert response.status_code == 302
    jobs = list(GenerationJob.objects.filter(pk__in=job_ids))
    assert {job.status for job in jobs} == {GenerationJob.Status.SUCCEEDED}
    assert all(job.attempts == 1 and job.error_message == "" for job in jobs)
    assert all(job.done == job.stimuli.count() > 0 for job in jobs)
    # The metrics hook ran for every job: per-stimulus metrics and one diversity row per (job, item).
    assert all(job.metrics_computed_at is not None and job.metrics_error == "" for job in jobs), [
        job.metrics_error for job in jobs
    ]
    assert DiversityMetric.objects.filter(deployment__study=study).count() == len(jobs) * 2


@pytest.mark.django_db
def test_loading_a_spec_in_the_admin_lists_problems_or_loads(client) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.studyapp.studies.test_spec import BROKEN, DEMO

    boss = superuser()
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
