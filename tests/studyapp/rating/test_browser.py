"""A real Chromium, phone-sized, walks one rater through the study by touch and slider."""

from __future__ import annotations

import pytest

from studyapp.rating.models import AttentionCheckResponse, Participant, Rating
from tests.studyapp.rating.helpers import build_rating_study, prolific_query

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}


def _move_sliders(page, fraction: float) -> None:
    """Tap each slider at a point along its track, as a thumb would."""
    for slider in page.locator("input[type=range]").all():
        slider.scroll_into_view_if_needed()
        box = slider.bounding_box()
        page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_rater_on_a_phone_rates_with_sliders_and_reaches_prolific(live_server, tmp_path):
    from playwright.sync_api import sync_playwright

    check = {"position": 2, "text": "Attention check: please move the slider to the far right.", "expected": 100}
    built = build_rating_study(attention_checks=[check], debrief_questions=["Anything to tell us?"])
    slug = built.study.slug
    screenshots = []
    # Django's ORM refuses to run inside Playwright's event loop: read the database afterwards.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
        page = context.new_page()
        page.goto(f"{live_server.url}/r/{slug}/?{prolific_query('5f0000000000000000004000')}")
        assert page.locator("h1").inner_text() == "Before you start"
        page.get_by_role("button", name="I agree to take part").click()
        page.get_by_role("button", name="Start with a practice example").click()
        assert page.locator("h1").inner_text() == "Practice example"

        submit = page.get_by_role("button", name="Continue to the study")
        assert submit.is_disabled()  # the slider must be moved first
        _move_sliders(page, 0.8)
        assert submit.is_disabled()  # the practice feedback comes first
        page.get_by_role("button", name="Compare my answers").click()
        assert page.locator("[data-practice-feedback]").is_visible()
        assert submit.is_enabled()
        submit.click()

        for n in range(5):
            assert page.locator(".progress").inner_text().startswith(f"Page {n + 1} of 5")
            submit = page.get_by_role("button", name="Save and continue")
            assert submit.is_disabled()
            if n == 2:
                assert "Attention check" in page.locator(".card").inner_text()
                _move_sliders(page, 0.999)
            else:
                assert "What is an unusual use for a thing number" in page.locator(".card").inner_text()
                _move_sliders(page, 0.25 + 0.1 * n)
                # Fits the phone: nothing wider than the screen.
                assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
                if n == 0:
                    path = tmp_path / "rating-page-phone.png"
                    page.screenshot(path=str(path), full_page=True)
                    screenshots.append(path)
            assert submit.is_enabled()
            submit.click()

        assert page.locator("h1").inner_text() == "A few last questions"
        page.locator("textarea").fill("The sliders were easy to use.")
        # Prolific is unreachable here: answer its completion URL locally to see the redirect arrive.
        page.route("https://app.prolific.com/**", lambda route: route.fulfill(status=200, body="prolific"))
        page.get_by_role("button", name="Finish").click()
        assert page.locator("[data-completion-code]").inner_text() == "C0MPL3TE"
        assert page.get_by_role("link", name="Return to Prolific").get_attribute("href") == (
            "https://app.prolific.com/submissions/complete?cc=C0MPL3TE"
        )
        page.wait_for_url("https://app.prolific.com/submissions/complete?cc=C0MPL3TE", timeout=15_000)
        browser.close()

    assert screenshots[0].stat().st_size > 10_000
    participant = Participant.objects.get(prolific_pid="5f0000000000000000004000")
    assert participant.step == Participant.Step.COMPLETE
    assert participant.debrief == {"q1": "The sliders were easy to use."}
    scores = sorted(Rating.objects.filter(participant=participant).values_list("page_index", "score"))
    assert len(scores) == 4 * 3
    # Tapped at 25%, 35%, 55% and 65% of the track (the check was page 2): the stored scores follow.
    for page_index, expected in [(0, 25), (1, 35), (3, 55), (4, 65)]:
        page_scores = [score for index, score in scores if index == page_index]
        assert all(abs(score - expected) <= 6 for score in page_scores), (page_index, page_scores)
    assert AttentionCheckResponse.objects.get(participant=participant).passed
