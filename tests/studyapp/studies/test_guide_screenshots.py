"""The README's launch guide, walked in Chromium: the researcher's dashboard (control room) and
the rater's pages, with the screenshots the guide shows.

Screenshots go to a temporary folder; with GUIDE_SCREENSHOTS=1 they replace those in
docs/screenshots/ (how the README's images were made).
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import REPO_ROOT
from tests.factories import ResearcherFactory
from tests.studyapp.rating.helpers import Bot, build_rating_study, panel_login, panel_password, prolific_query
from tests.studyapp.rating.test_browser import CHROMIUM, CHROMIUM_ARGS

DOCS = REPO_ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_launch_guide_walked_in_a_browser_with_its_screenshots(live_server, tmp_path):
    from django.test import Client
    from playwright.sync_api import sync_playwright

    built = build_rating_study(
        n_deployments=2,
        prolific_study_id="prolific-study-1",
        practice={"prompt": "List unusual uses for a brick.", "text": "A doorstop.", "typical": {"originality": 30}},
        is_open=False,
    )
    for dimension, definition in zip(
        built.dimensions, ("How new or uncommon the ideas are.", "How unexpected it is.", "Original and fitting."),
        strict=True,
    ):  # fmt: skip
        dimension.definition = definition
        dimension.save()
    researcher = panel_password(ResearcherFactory(username="researcher"))
    built.study.researchers.add(researcher)
    slug = built.study.slug
    shots = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        desk = browser.new_context(viewport=DESKTOP).new_page()
        panel_login(desk, live_server.url, username=researcher.username, next_path=f"/panel/{slug}/")
        # Step: a pilot first. Open the study in pilot mode from the control room.
        desk.get_by_role("button", name="Start a pilot").click()
        desk.get_by_role("button", name="Open the study").click()
        assert "Open to raters" in desk.inner_text("main") and "Pilot mode" in desk.inner_text("main")
        entry = desk.locator("[data-entry-links] code").first.inner_text()
        assert entry.endswith("?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}")

        phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True).new_page()
        phone.goto(f"{live_server.url}/r/{slug}/?{prolific_query('5f0000000000000000013600')}")
        phone.get_by_role("button", name="I agree to take part").click()
        phone.get_by_role("button", name="Start with a practice example").click()
        shots["rater-practice-untouched"] = phone.screenshot(full_page=True)
        for slider in phone.locator("input[type=range]").all():
            box = slider.bounding_box()
            phone.mouse.click(box["x"] + box["width"] * 0.7, box["y"] + box["height"] / 2)
        phone.get_by_role("button", name="Compare my answers").click()
        shots["rater-practice-feedback"] = phone.screenshot(full_page=True)
        phone.get_by_role("button", name="Continue to the study").click()
        phone.locator("details[data-definitions] summary").click()
        slider = phone.locator("input[type=range]").first
        box = slider.bounding_box()
        phone.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
        shots["rater-rating-page"] = phone.screenshot(full_page=True)
        # The pilot looked fine: end it (the pilot rater keeps a slot of its own, outside the design).
        desk.reload()
        desk.get_by_role("button", name="End the pilot").click()
        assert "Not in pilot mode" in desk.inner_text("main")
        browser.close()

    # Two real raters finish (by HTTP) so that the dashboard has something to show.
    for n in range(2):
        Bot(Client(), slug, f"5f00000000000000000136{10 + n}").walk()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=DESKTOP)
        desk = context.new_page()
        panel_login(desk, live_server.url, username=researcher.username, next_path=f"/panel/{slug}/")
        assert "Not in pilot mode" in desk.inner_text("main")
        assert desk.locator("svg").count() == 2
        shots["dashboard-control-room"] = desk.locator("main").screenshot()
        browser.close()

    out = DOCS if os.environ.get("GUIDE_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    for name, png in shots.items():
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name
        (out / f"{name}.png").write_bytes(png)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{name}.png" for name in shots)
