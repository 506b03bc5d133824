"""The report page: analysis.write_report runs in a task on the study's export; the page shows it when ready."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils.html import escape

from studyapp.rating.models import Participant, Rating, Slot
from studyapp.studies.models import RatingDimension, StudyReport
from studyapp.studies.reports import report_build
from tests.factories import other_team_researcher, researcher_of, study_with_ratings
from tests.studyapp.rating.helpers import panel_login, panel_password
from tests.studyapp.rating.test_browser import CHROMIUM, CHROMIUM_ARGS

DESKTOP = {"width": 1280, "height": 900}


def _study_with_pilot_and_likert():
    """6 raters x 2 deployments x 3 pages x 2 dimensions = 72 ratings; 'surprise' on a 1-5 Likert scale.

    Raters 0 and 3 of each deployment fail the attention check (4 raters, 24 ratings) and
    rater 1 of dep-0 is a pilot rater (6 ratings): 42 ratings are analysed of 72.
    """
    study = study_with_ratings(n_deployments=2, raters_per_deployment=6)
    surprise = RatingDimension.objects.get(study=study, key="surprise")
    surprise.scale = "likert_5"
    surprise.save()
    for rating in Rating.objects.filter(dimension=surprise):
        rating.score = 1 + int(rating.score) % 5
        rating.save(update_fields=["score"])
    # The factory records failed checks; the rating flow also counts them on the participant.
    Participant.objects.filter(study=study, attention_checks__passed=False).update(attention_failures=1)
    pilot = Slot.objects.get(deployment__study=study, deployment__slug="dep-0", index=1).participant
    Rating.objects.filter(participant=pilot).update(pilot=True)
    return study


@pytest.mark.slow
@pytest.mark.django_db
def test_report_is_built_in_a_task_and_shown_when_ready(
    client, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path
) -> None:
    settings.VAR_DIR = tmp_path
    study = _study_with_pilot_and_likert()
    researcher = researcher_of(study)
    client.force_login(researcher)
    url = reverse("studies:report", args=[study.slug])
    assert "No report yet" in client.get(url).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("studies:report_request", args=[study.slug]))
    assert response.status_code == 302
    report = StudyReport.objects.get(study=study)
    assert report.status == StudyReport.Status.READY, report.error_message
    assert report.n_ratings == 2 * 6 * 3 * 2

    page = client.get(url).content.decode()
    # The panel counts what was analysed, not only what was collected, and says who was left out.
    assert "42 ratings analysed of 72 collected" in page
    assert "(7 of 12 raters; excluded: 1 pilot, 4 attention_failed)" in page
    file_url = reverse("studies:report_file", args=[study.slug, report.pk, report.html_name])
    assert file_url in page
    served = client.get(file_url)
    assert served.status_code == 200 and served["Content-Type"].startswith("text/html")
    html = b"".join(served.streaming_content).decode()
    # The report names the study, in its title and its summary.
    assert f"<title>{study.title} ({study.slug}): analysis report</title>" in html
    assert f"Summary: {study.title} ({study.slug})" in html and f"Summary: {study.title}" in page

    results = json.loads((Path(report.out_dir) / "results.json").read_text())
    summary = results["summary"]
    assert summary["data"]["ratings_analysed"] == 42 and summary["data"]["pilot"] == "excluded"
    # The sentence of each rated effect carries the fitted estimate and CI, on its dimension's own scale.
    rows = {row["dimension"]: row for row in results["effects"]["rows"]}
    for finding in (f for f in summary["findings"] if f["result"] == "rated effect"):
        row = rows[finding["dimension"]]
        assert finding["estimate"] == pytest.approx(row["estimate"])
        assert f"{abs(row['estimate']):.2f} points" in finding["sentence"]
        assert f"95% CI {row['ci_low']:.2f} to {row['ci_high']:.2f}" in finding["sentence"]
        scale = "1-5" if finding["dimension"] == "surprise" else "0-100"
        assert f"on the {scale} scale" in finding["sentence"] and escape(finding["sentence"]) in page
    # A study without a DAT task has no DAT section, nor a DAT warning.
    assert results["dat"] is None and not (Path(report.out_dir) / "dat_table.csv").exists()
    assert "3. DAT" not in html and "no DAT answers" not in html and "DAT, model" not in html

    # The result tables of results.json, formatted by analysis, on the report page and the dashboard.
    for shown in (page, client.get(reverse("studies:dashboard", args=[study.slug])).content.decode()):
        for title in ("1. Rated effects", "2. Mode collapse"):
            assert title in shown
        assert "3. DAT" not in shown and "no DAT answers" not in shown
        assert "score ~ condition + " in shown  # the model each dimension was fitted with
    assert client.get(reverse("studies:report_file", args=[study.slug, report.pk, "results.json"])).status_code == 200
    # Another researcher's staff account cannot read the files either.
    client.force_login(other_team_researcher())
    assert client.get(file_url).status_code == 404


@pytest.mark.slow
@pytest.mark.django_db
def test_the_export_carries_each_dimensions_scale_to_the_histogram(settings, tmp_path) -> None:
    from analysis.report import distributions_figure
    from analysis.report_summary import dimension_scales
    from studyapp.studies.exports import export_ratings_frame

    study = _study_with_pilot_and_likert()
    ratings = export_ratings_frame(study=study)
    figure = distributions_figure(ratings, dimension_scales(ratings))
    axes = {ax.get_title(): ax for ax in figure.axes}
    assert axes["surprise"].get_xlim() == (0.5, 5.5) and list(axes["surprise"].get_xticks()) == [1, 2, 3, 4, 5]
    assert axes["originality"].get_xlim() == (0.0, 100.0)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_report_page_in_chromium_has_no_horizontal_scroll(live_server, settings, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    settings.VAR_DIR = tmp_path
    study = _study_with_pilot_and_likert()
    report = report_build(report_id=StudyReport.objects.create(study=study).pk)
    assert report.status == StudyReport.Status.READY, report.error_message
    researcher = panel_password(researcher_of(study))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=DESKTOP).new_page()
        panel_login(page, live_server.url, username=researcher.username, next_path=f"/panel/{study.slug}/report/")
        assert "42 ratings analysed of 72 collected" in page.inner_text("[data-ratings-analysed]")
        assert "What the data cannot say" in page.inner_text("[data-summary]")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        # The report itself, in its frame, opens with the summary naming the study.
        frame = page.frame_locator("iframe")
        assert study.title in frame.locator("h1").inner_text()
        assert frame.locator("section.summary img").count() >= 1
        browser.close()
