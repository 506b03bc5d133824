"""The dashboard of a realistic study in Chromium at 1280 px: three rated deployments and an
automatic-only one, every summary metric filled in, jobs failed (with a long message), running and
succeeded, raters real, pilot and simulated. The page itself never scrolls sideways; a wide table
scrolls inside its own box."""

from __future__ import annotations

import pytest
from django.test import Client

from studyapp.rating.models import Participant
from studyapp.studies.metrics import SUMMARY_METRICS
from studyapp.studies.models import DiversityMetric, GenerationJob, Stimulus
from tests.factories import DeploymentFactory, GenerationJobFactory, ResearcherFactory, StimulusFactory
from tests.studyapp.rating.helpers import Bot, build_rating_study, panel_login, panel_password
from tests.studyapp.rating.test_browser import CHROMIUM, CHROMIUM_ARGS

DESKTOP = {"width": 1280, "height": 900}
LONG_ERROR = (
    "OSError: /srv/models/an-unusually-long-model-directory-name-that-never-breaks-because-it-has-no-spaces/"
    "weights/model-00001-of-00004.safetensors: No such file or directory " * 3
)


def _realistic_study():
    built = build_rating_study(n_deployments=3, raters=4, per_rater=4)
    study = built.study
    automatic = DeploymentFactory(
        study=study, slug="dat-automatic-only", automatic_only=True, task=built.deployments[0].task
    )
    automatic_job = GenerationJobFactory(deployment=automatic)
    for _ in range(4):
        StimulusFactory(job=automatic_job)
    every_metric = {
        name: 0.5 + index / 100 for index, name in enumerate(SUMMARY_METRICS) if not name.startswith("group_")
    }
    Stimulus.objects.filter(deployment__study=study).update(metrics=every_metric)
    for stimulus in Stimulus.objects.filter(deployment__study=study).distinct("job_id", "item_id"):
        DiversityMetric.objects.get_or_create(
            deployment=stimulus.deployment,
            condition=stimulus.condition,
            item=stimulus.item,
            defaults={"metrics": {"mean_pairwise_similarity": 0.4, "vendi_score": 2.5, "distinct_2": 0.8}},
        )
    GenerationJob.objects.filter(deployment__study=study).update(total=8, done=8, attempts=1, tokens_per_second=41.7)
    jobs = list(GenerationJob.objects.filter(deployment__study=study).order_by("pk"))
    GenerationJob.objects.filter(pk=jobs[0].pk).update(status="failed", error_message=LONG_ERROR)
    GenerationJob.objects.filter(pk=jobs[1].pk).update(status="running", done=4)
    GenerationJob.objects.filter(pk__in=[job.pk for job in jobs[2:]]).update(status="succeeded")
    for n in range(3):
        Bot(Client(), study.slug, f"5f00000000000000000150{n:02d}").walk()
    study.pilot_mode = True
    study.save(update_fields=["pilot_mode"])
    Bot(Client(), study.slug, "5f0000000000000000015010").walk()
    Participant.objects.filter(prolific_pid="5f0000000000000000015001").update(simulated=True)
    return study


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_dashboard_of_a_realistic_study_has_no_horizontal_page_scroll_at_1280(live_server):
    from playwright.sync_api import sync_playwright

    study = _realistic_study()
    researcher = panel_password(ResearcherFactory(username="dashboard-width"))
    study.researchers.add(researcher)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=DESKTOP).new_page()
        panel_login(page, live_server.url, username=researcher.username, next_path=f"/panel/{study.slug}/")
        page.wait_for_selector("[data-metrics]")
        # One script reads everything at once: the page refreshes itself while a job runs.
        seen = page.evaluate(
            """() => {
              const count = (selector) => document.querySelectorAll(selector).length;
              const metricsBox = document.querySelector("[data-metrics]").parentElement;
              return {
                page: document.documentElement.scrollWidth, window: window.innerWidth,
                metrics: [metricsBox.scrollWidth, metricsBox.clientWidth],
                jobs: count("[data-jobs] tr[data-job]"), metricRows: count("[data-metrics] tr"),
                pilot: count("[data-rater-pilot]"), simulated: count("[data-rater-simulated]"),
                previews: count("[data-preview-link]"), refreshing: count("[data-refreshing]"),
              };
            }"""
        )
        browser.close()
    # What the page shows: the pieces whose width this test is about.
    assert (seen["jobs"], seen["metricRows"]) == (6 + 1, 1 + 6 + 1), seen
    assert (seen["pilot"], seen["simulated"], seen["previews"], seen["refreshing"]) == (1, 1, 3, 1), seen
    assert seen["page"] <= seen["window"], seen
    # Every summary metric is filled in: the metrics table is wider than the page and scrolls in its box.
    assert seen["metrics"][0] > seen["metrics"][1], seen
