"""The report page: analysis.write_report runs in a task on the study's export; the page shows it when ready."""

from __future__ import annotations

import pytest
from django.urls import reverse

from studyapp.studies.models import StudyReport
from tests.factories import other_team_researcher, researcher_of, study_with_ratings


@pytest.mark.slow
@pytest.mark.django_db
def test_report_is_built_in_a_task_and_shown_when_ready(
    client, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path
) -> None:
    settings.VAR_DIR = tmp_path
    study = study_with_ratings(n_deployments=2, raters_per_deployment=4)
    researcher = researcher_of(study)
    client.force_login(researcher)
    url = reverse("studies:report", args=[study.slug])
    assert "No report yet" in client.get(url).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("studies:report_request", args=[study.slug]))
    assert response.status_code == 302
    report = StudyReport.objects.get(study=study)
    assert report.status == StudyReport.Status.READY, report.error_message
    assert report.n_ratings == 2 * 4 * 3 * 2

    page = client.get(url).content.decode()
    file_url = reverse("studies:report_file", args=[study.slug, report.pk, report.html_name])
    assert file_url in page
    served = client.get(file_url)
    assert served.status_code == 200 and served["Content-Type"].startswith("text/html")
    # The three result tables of results.json, formatted by analysis, on the report page and the dashboard.
    for shown in (page, client.get(reverse("studies:dashboard", args=[study.slug])).content.decode()):
        for title in ("1. Rated effects", "2. Mode collapse", "3. DAT per model and condition"):
            assert title in shown
        assert "score ~ condition + " in shown  # the model each dimension was fitted with
    assert client.get(reverse("studies:report_file", args=[study.slug, report.pk, "results.json"])).status_code == 200
    # Another researcher's staff account cannot read the files either.
    client.force_login(other_team_researcher())
    assert client.get(file_url).status_code == 404
