"""Every rater page passes axe-core's WCAG 2.1 A/AA rules at desktop and phone widths, and the
whole flow, from consent to the completion code, works with the keyboard alone.

axe-core comes from the npm registry (package.json, package-lock.json; `make setup` runs
`npm ci`) and is injected into the real Chromium page by Playwright.
"""

from __future__ import annotations

import pytest

from studyapp.rating.models import Participant
from tests.conftest import REPO_ROOT
from tests.studyapp.rating.helpers import build_rating_study, prolific_query, wait_for_progress
from tests.studyapp.rating.test_browser import CHROMIUM, CHROMIUM_ARGS

AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
# axe-core is injected by the test, not served by the site: the page's Content-Security-Policy
# (scripts only with its nonce) would block it. The policy itself is tested in test_csp.py.
AXE_CONTEXT = {"bypass_csp": True}


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async (tags) => {
             const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
             return result.violations.map(v => ({id: v.id, impact: v.impact,
                                                 nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
           }""",
        WCAG21_AA,
    )


def tab_to(page, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_rater_page_passes_axe_and_the_flow_works_with_the_keyboard_alone(live_server, width):
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed at {AXE}: run `npm ci` (make setup does)")
    from playwright.sync_api import sync_playwright

    check = {
        "position": 1,
        "text": "Attention check: please move the slider all the way to the right.",
        "expected": 100,
    }
    built = build_rating_study(
        attention_checks=[check],
        debrief_questions=["Anything to tell us?"],
        prolific_no_consent_code="N0C0NSENT",
        practice={"prompt": "Uses for a brick?", "text": "A doorstop.", "typical": {"originality": 30}},
    )
    pid = f"5f00000000000000000135{list(WIDTHS).index(width):02d}"
    report: dict[str, list[dict]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=WIDTHS[width], **AXE_CONTEXT).new_page()

        def audit(name: str) -> None:
            report[name] = axe_violations(page)

        page.goto(f"{live_server.url}/r/{built.study.slug}/?{prolific_query(pid)}")
        audit("consent")
        tab_to(page, "button[value=agree]")
        page.keyboard.press("Enter")
        page.wait_for_selector("text=What the scales mean")
        audit("instructions")
        tab_to(page, "button[type=submit]")
        page.keyboard.press("Enter")
        page.wait_for_selector("h1:has-text('Practice example')")
        audit("practice")
        # Each slider: reached by Tab, set by arrow keys; then the feedback, then on.
        for n in range(page.locator("input[type=range]").count()):
            tab_to(page, f"fieldset:nth-of-type({n + 1}) input[type=range]")
            page.keyboard.press("ArrowLeft")
        tab_to(page, "button[data-compare]")
        page.keyboard.press("Enter")
        audit("practice feedback")
        tab_to(page, "button[type=submit]")
        page.keyboard.press("Enter")

        for n in range(5):  # four stimuli and the attention check after the first
            wait_for_progress(page, f"Page {n + 1} of 5")
            audit("attention check" if n == 1 else f"rating page {n + 1}")
            sliders = page.locator("input[type=range]")
            for s in range(sliders.count()):
                tab_to(page, f"form [data-scale]:nth-of-type({s + 1}) input[type=range], "
                             f"fieldset.scale:nth-of-type({s + 1}) input[type=range]")  # fmt: skip
                page.keyboard.press("End" if n == 1 else "PageUp")
            tab_to(page, "button[type=submit]")
            page.keyboard.press("Enter")

        page.wait_for_selector("h1:has-text('A few last questions')")
        audit("debrief")
        tab_to(page, "textarea")
        page.keyboard.type("Typed with the keyboard only.")
        page.route("https://app.prolific.com/**", lambda route: route.fulfill(status=200, body="prolific"))
        tab_to(page, "button[type=submit]")
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-completion-code]")
        audit("completion")

        report |= _other_endings_audited(browser, live_server.url, built.study.slug, pid=pid, width=width)
        browser.close()

    failures = {name: violations for name, violations in report.items() if violations}
    assert not failures, failures
    assert len(report) == 13
    participant = Participant.objects.get(prolific_pid=pid)
    assert participant.step == Participant.Step.COMPLETE
    assert participant.debrief == {"q1": "Typed with the keyboard only."}
    assert participant.ratings.count() == 4 * 3 and participant.attention_checks.get().passed


def _other_endings_audited(browser, base_url: str, slug: str, *, pid: str, width: str) -> dict[str, list[dict]]:
    """The endings off the main path, audited: declined consent (with its code) and a link to no study."""
    other = browser.new_context(viewport=WIDTHS[width], **AXE_CONTEXT).new_page()
    other.goto(f"{base_url}/r/{slug}/?{prolific_query(pid[:-2] + '99')}")
    other.get_by_role("button", name="I do not agree").click()
    assert other.locator("[data-prolific-code]").inner_text() == "N0C0NSENT"
    other.get_by_role("button", name="Stay on this page").click()
    report = {"declined": axe_violations(other)}
    other.goto(f"{base_url}/r/no-such-study/?{prolific_query(pid)}")
    report["not found"] = axe_violations(other)
    return report
