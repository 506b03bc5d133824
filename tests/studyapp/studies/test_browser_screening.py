"""Issue 20, point 5, in Chromium: a researcher reads each condition's texts on the dashboard a
page at a time, excludes and regenerates by a click, raises max_new_tokens as a new generation
round of the same study, and accepts truncation for a deployment before building slots."""

from __future__ import annotations

import pytest

from studyapp.rating.models import Slot, SlotStimulus
from studyapp.studies.generation_jobs import generation_start
from studyapp.studies.models import GenerationJob, Stimulus
from tests.factories import ResearcherFactory
from tests.studyapp.rating.helpers import panel_login, panel_password
from tests.studyapp.rating.test_browser import CHROMIUM, CHROMIUM_ARGS

DESKTOP = {"width": 1280, "height": 900}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_screening_texts_by_clicks_on_the_dashboard(live_server, tiny_study, celery_eager, settings, tmp_path):
    from playwright.sync_api import sync_playwright

    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    study = tiny_study(samples=11, accept_truncation=False)  # 2 items x 11 samples: two pages per condition
    generation_start(study=study)  # eager: the jobs run now, in this process
    assert {job.status for job in GenerationJob.objects.all()} == {"succeeded"}
    researcher = panel_password(ResearcherFactory(username="screener"))
    study.researchers.add(researcher)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=DESKTOP).new_page()
        panel_login(page, live_server.url, username=researcher.username, next_path=f"/panel/{study.slug}/")

        # The texts of one condition, a page at a time.
        page.locator('[data-screening-row="aut-0/base"]').get_by_role("link", name="Read the texts").click()
        assert "Texts of aut-0, condition base" in page.inner_text("h1")
        assert page.locator("[data-texts] tr[data-stimulus]").count() == 20
        assert "Page 1 of 2 (22 texts)" in page.inner_text("[data-pages]")
        page.get_by_role("link", name="next").click()
        assert page.locator("[data-texts] tr[data-stimulus]").count() == 2

        # Exclude one by a click (the reason is filled in for a cut text), then regenerate it.
        row = page.locator("[data-texts] tr[data-stimulus]").first
        token = row.get_attribute("data-stimulus")
        row.locator("input[name=reason]").fill("reads oddly")
        row.get_by_role("button", name="Exclude").click()
        assert f"Excluded {token}: reads oddly." in page.inner_text(".messages")
        assert "Page 2 of 2" in page.inner_text("[data-pages]")  # back on the same page
        page.get_by_role("button", name="Regenerate excluded texts (new seeds)").click()
        assert "Queued 1 job(s)" in page.inner_text(".messages")
        replaced = page.locator(f'tr[data-stimulus="{token}"]').inner_text()
        assert "reads oddly" in replaced and "replaced by " in replaced
        replacement_token = replaced.split("replaced by ")[1].split()[0]

        # Cut texts block the slots until the deployment accepts truncation ...
        page.goto(f"{live_server.url}/panel/{study.slug}/")
        page.get_by_role("button", name="Build rater slots").click()
        assert "end mid-word, cut by max_new_tokens" in page.inner_text(".messages")
        assert "Rater slots:" not in page.inner_text(".messages")

        # ... or a new generation round with a larger max_new_tokens replaces every text.
        form = page.locator("[data-decoding-round]")
        assert "generation round 1" in form.inner_text()
        form.locator("input[name=max_new_tokens]").fill("12")
        form.get_by_role("button", name="Generate again with these settings").click()
        assert "Generation round 2 started" in page.inner_text(".messages")
        assert "generation round 2" in page.locator("[data-decoding-round]").inner_text()

        page.get_by_role("button", name="Accept cut texts for aut-0").click()
        assert "texts cut mid-word may be rated" in page.inner_text(".messages")
        page.get_by_role("button", name="Build rater slots").click()
        assert "Rater slots: aut-0 22" in page.inner_text(".messages")
        browser.close()

    excluded = Stimulus.objects.get(token=token)
    assert excluded.exclusion_reason == "reads oddly" and excluded.generation_round == 1
    assert Stimulus.objects.get(token=replacement_token).replaces_id == excluded.pk
    study.refresh_from_db()
    assert study.generation_round == 2 and study.decoding["max_new_tokens"] == 12
    current = Stimulus.objects.current().filter(deployment__study=study)
    assert current.count() == 2 * 22 and not current.filter(excluded_at__isnull=False).exists()
    assert {s.decoding["max_new_tokens"] for s in current} == {12}
    assert Slot.objects.count() == 22
    rated = Stimulus.objects.filter(pk__in=SlotStimulus.objects.values("stimulus_id"))
    assert {s.generation_round for s in rated} == {2}
