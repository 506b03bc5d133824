"""Issue 13 in a real Chromium at desktop width: no slider anchor, a numeric readout, the
definitions on demand, practice feedback, and the gentle minimum time per page."""

from __future__ import annotations

import io

import pytest

from studyapp.rating.models import Participant
from studyapp.rating.quality import study_rater_quality
from studyapp.studies.exports import export_ratings_frame
from tests.studyapp.rating.helpers import build_rating_study, prolific_query, wait_for_progress
from tests.studyapp.rating.test_browser import CHROMIUM, CHROMIUM_ARGS

DESKTOP = {"width": 1280, "height": 900}
THUMB_RGB = (0x2B, 0x57, 0x97)


def thumb_pixels(png: bytes) -> int:
    """Pixels of the slider thumb's colour in a screenshot of one slider."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(
        1
        for pixel in image.get_flattened_data()
        if all(abs(a - b) <= 12 for a, b in zip(pixel, THUMB_RGB, strict=True))
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_sliders_have_no_anchor_pages_explain_the_scales_and_speeding_gets_a_gentle_message(live_server):
    from playwright.sync_api import sync_playwright

    built = build_rating_study(
        min_seconds_per_page=3,
        practice={"prompt": "Uses for a brick?", "text": "A doorstop.", "typical": {"originality": 20}},
    )
    for dimension in built.dimensions:
        dimension.definition = f"Meaning of {dimension.key}."
        dimension.save()
    slug = built.study.slug
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=DESKTOP).new_page()
        page.goto(f"{live_server.url}/r/{slug}/?{prolific_query('5f0000000000000000013100')}")
        assert "This study takes about" in page.locator("[data-duration]").inner_text()
        page.get_by_role("button", name="I agree to take part").click()
        assert "Meaning of surprise." in page.locator("main").inner_text()
        page.get_by_role("button", name="Start with a practice example").click()

        # Untouched: no thumb is drawn, the readout and the screen reader say "not rated yet".
        sliders = page.locator("input[type=range]")
        first = sliders.first
        assert thumb_pixels(first.screenshot()) == 0
        assert first.get_attribute("aria-valuetext") == "not rated yet"
        assert page.locator("[data-readout]").first.inner_text() == "not rated yet"
        # The first key press shows the thumb and a number; the server gets that number.
        first.focus()
        page.keyboard.press("ArrowRight")
        assert thumb_pixels(first.screenshot()) > 20
        assert page.locator("[data-readout]").first.inner_text() == "51"
        assert first.get_attribute("aria-valuetext") is None
        for n in range(1, sliders.count()):
            slider = sliders.nth(n)
            box = slider.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
            readout = int(page.locator("[data-readout]").nth(n).inner_text())
            assert 85 <= readout <= 95

        # Definitions on demand, and feedback against the typical ratings before real pages.
        definitions = page.locator("details[data-definitions]")
        assert not definitions.locator("dd").first.is_visible()
        definitions.locator("summary").click()
        assert definitions.locator("dd").first.is_visible()
        page.get_by_role("button", name="Compare my answers").click()
        feedback = page.locator("[data-practice-feedback]").inner_text()
        assert "Originality: you gave" in feedback and "about 20 (their estimate, not measured from raters)" in feedback
        page.get_by_role("button", name="Continue to the study").click()

        # Too fast: a gentle message, the page stays; after the minimum time the same click goes on.
        assert page.locator(".progress").inner_text().startswith("Page 1 of 4")
        for slider in page.locator("input[type=range]").all():
            box = slider.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
        save = page.get_by_role("button", name="Save and continue")
        save.click()
        message = page.locator("[data-slow-down]")
        assert message.is_visible() and "take a moment to read" in message.inner_text()
        assert page.locator(".progress").inner_text().startswith("Page 1 of 4")
        message.wait_for(state="hidden", timeout=5_000)
        save.click()
        wait_for_progress(page, "Page 2 of 4")
        browser.close()

    # The page waited for the minimum time, so the server's clock alone would not see it; the
    # held-back click is recorded with the page and flags the rater (issue 20, point 3).
    participant = Participant.objects.get(prolific_pid="5f0000000000000000013100")
    assert participant.ratings.count() == 3
    assert all(r.seconds_on_page >= 3 for r in participant.ratings.all())
    assert {r.held_back for r in participant.ratings.all()} == {1}
    assert "speeding" in participant.flags
    frame = export_ratings_frame(study=built.study)
    assert frame["held_back"].tolist() == [1, 1, 1] and frame["speeding"].all()
    quality = study_rater_quality(study=built.study)
    assert (quality.speeding_pages, quality.speeding_raters, quality.pages) == (1, 1, 1)
