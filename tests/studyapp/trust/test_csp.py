"""A Content-Security-Policy on every page (issue 21, item 9): scripts only from the site's own
files or inline with the response's nonce; and the pages still work under it in Chromium."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from studyapp.rating.models import Participant
from tests.factories import panel_user
from tests.studyapp.rating.helpers import Bot, build_rating_study, prolific_query
from tests.studyapp.rating.test_browser import CHROMIUM, CHROMIUM_ARGS, _move_sliders

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)([^>]*)>", re.IGNORECASE)


def _assert_policy(response) -> None:
    policy = response.get("Content-Security-Policy", "")
    parts = (part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    directives = {part[0]: part[1] if len(part) > 1 else "" for part in parts}
    assert "'self'" in directives.get("script-src", ""), (response.request["PATH_INFO"], policy)
    assert "unsafe-inline" not in directives["script-src"] and "unsafe-eval" not in directives["script-src"]
    assert directives.get("object-src") == "'none'" and directives.get("frame-ancestors") == "'self'"
    nonce = re.search(r"'nonce-([^']+)'", directives["script-src"])
    for attributes in INLINE_SCRIPT.findall(response.content.decode(errors="replace")):
        assert nonce and f'nonce="{nonce.group(1)}"' in attributes, (response.request["PATH_INFO"], attributes)


@pytest.mark.django_db
def test_every_kind_of_page_carries_the_policy_and_its_inline_scripts_the_nonce() -> None:
    built = build_rating_study(attention_checks=[{"position": 1, "text": "Check", "expected": 100}])
    seen: list = []
    bot = Bot(
        Client(raise_request_exception=False), built.study.slug, "5f0000000000000000001900", on_response=seen.append
    )
    bot.walk()  # consent, instructions, practice, rating pages, a check, debrief, done
    assert {bot.step_name(r) for r in seen if r.status_code == 200} >= {"consent", "practice", "rate", "done"}
    researcher = Client(raise_request_exception=False)
    researcher.force_login(panel_user(username="researcher", study=built.study))
    deployment, condition = built.deployments[0], built.conditions[0]
    participant = Participant.objects.get(prolific_pid=bot.pid)
    pages = [
        *seen,
        researcher.get(reverse("studies:dashboard", args=[built.study.slug])),
        # Issue 20's pages: the screening texts and the admin's withdrawal page.
        researcher.get(reverse("studies:texts", args=[built.study.slug, deployment.slug, condition.key])),
        researcher.post(
            reverse("admin:rating_participant_changelist"),
            {"action": "withdraw_to_pool", "_selected_action": [participant.pk]},
        ),
        researcher.get(reverse("admin:studies_study_change", args=[built.study.pk])),
        researcher.get("/admin/studies/study/?status__exact=%00"),  # the 400 page
        Client().get("/admin/login/"),
        Client().get("/r/no-such-study/"),  # the rater 404 page, made outside the views
        Client().get("/no/such/page/"),
    ]
    assert [response.status_code for response in pages[len(seen) :][:3]] == [200, 200, 200]
    for response in pages:
        _assert_policy(response)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_no_page_breaks_the_policy_in_chromium(live_server) -> None:
    from playwright.sync_api import sync_playwright

    built = build_rating_study(raters=1, per_rater=2, n_items=1)
    slug = built.study.slug
    researcher = Client()
    researcher.force_login(panel_user(username="researcher", study=built.study))
    violations: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_init_script(
            "document.addEventListener('securitypolicyviolation',"
            " e => console.error('CSP violation: ' + e.violatedDirective));"
        )
        page = context.new_page()
        page.on(
            "console",
            lambda message: (
                violations.append(message.text)
                if "CSP" in message.text or "Content Security Policy" in message.text
                else None
            ),
        )
        page.goto(f"{live_server.url}/r/{slug}/?{prolific_query('5f0000000000000000001901')}")
        page.get_by_role("button", name="I agree to take part").click()
        page.get_by_role("button", name="Start with a practice example").click()
        submit = page.get_by_role("button", name="Continue to the study")
        assert submit.is_disabled()  # the page's script ran: nothing to send before a slider moves
        _move_sliders(page, 0.6)
        page.get_by_role("button", name="Compare my answers").click()
        submit.click()
        for _ in range(2):
            _move_sliders(page, 0.4)
            page.get_by_role("button", name="Save and continue").click()
        assert page.locator("h1").count() == 1
        context.add_cookies(
            [{"name": "sessionid", "value": researcher.cookies["sessionid"].value, "url": live_server.url}]
        )
        page.goto(f"{live_server.url}/panel/{slug}/")
        page.get_by_role("button", name=re.compile("Copy the link")).first.click()
        page.goto(f"{live_server.url}/admin/studies/study/{built.study.pk}/change/")
        assert page.locator("#id_researchers_from, #id_researchers").count() >= 1
        browser.close()
    assert violations == []
