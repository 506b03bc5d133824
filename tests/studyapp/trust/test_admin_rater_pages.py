"""Issue 20, point 7: admin edits cannot break the rater pages.

The practice item, attention checks and debrief questions are checked with the spec's rules
when the admin saves them (a form error, nothing saved); and whatever was stored before,
a rater page never answers with a server error.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from studyapp.rating.models import Participant, Slot
from studyapp.studies.models import Study
from tests.factories import panel_user
from tests.studyapp.rating.helpers import (
    Bot,
    build_rating_study,
    panel_login,
    panel_password,
    researcher_client,
    text_of,
)
from tests.studyapp.rating.test_browser import CHROMIUM, CHROMIUM_ARGS

GOOD_CHECK = {"position": 1, "text": "Move the slider to the right end.", "expected": "100", "tolerance": 5}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_admin_refuses_rater_page_settings_the_pages_could_not_use(live_server):
    from playwright.sync_api import sync_playwright

    built = build_rating_study(attention_checks=[GOOD_CHECK], debrief_questions=["How did you decide?"])
    study = built.study
    stored = {name: getattr(study, name) for name in ("attention_checks", "debrief_questions", "practice")}
    researcher = panel_password(panel_user(username="editor", study=study))
    refused = {
        "attention_checks": [
            ([{"position": "three", "text": "Check", "expected": 100}], "position: expected a whole number"),
            ([{"position": 1, "text": "Check", "expected": 100, "tolerance": "wide"}], "tolerance: expected a number"),
            ([{"position": 1, "text": "Check \u0000", "expected": 100}], "NUL character"),
            (
                [{"position": 1, "text": "Pick", "options": ["a", "b"], "expected": "c"}],
                "'c' is not one of the options",
            ),
        ],
        "debrief_questions": [
            ([{"key": "q", "question": "Pick one", "type": "choice", "options": ["only"]}], "at least two options"),
            ([{"key": "bad key!", "question": "Age?"}], "is not a valid key"),
        ],
        "practice": [({"prompt": "Uses?", "typical": {"originality": "high"}}, "expected a rating (a number)")],
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context().new_page()
        change = f"{live_server.url}/admin/studies/study/{study.pk}/change/"
        panel_login(page, live_server.url, username=researcher.username, next_path=change)
        for field, cases in refused.items():
            for value, message in cases:
                page.goto(change)
                page.fill(f"#id_{field}", json.dumps(value))
                page.click("input[name=_save]")
                errors = page.locator(f".field-{field} .errorlist").inner_text()
                assert message in errors, (field, value, errors)
        # A debrief question without a key is what a spec may say: saved in the stored form.
        page.goto(change)
        page.fill("#id_debrief_questions", json.dumps([{"question": "How old are you?", "type": "number"}]))
        page.click("input[name=_save]")
        assert "was changed successfully" in page.locator(".messagelist").inner_text()
        browser.close()
    study.refresh_from_db()
    assert study.attention_checks == stored["attention_checks"] and study.practice == stored["practice"]
    assert study.debrief_questions == [
        {"key": "q1", "question": "How old are you?", "type": "number", "options": [], "required": False}
    ]


@pytest.mark.django_db
def test_rater_pages_never_fail_on_stored_settings_the_admin_would_refuse():
    built = build_rating_study(attention_checks=[GOOD_CHECK], prolific_study_id="prolific-study-1")
    # Stored before the admin checked them (an older version, a shell): every kind the issue met.
    Study.objects.filter(pk=built.study.pk).update(
        attention_checks=[
            {"position": "three", "text": "A check placed in words"},
            {"position": 2, "text": "A check with a worded tolerance", "expected": 100, "tolerance": "wide"},
            "a bare string",
            GOOD_CHECK,
        ],
        debrief_questions=[
            {"question": "A question without a key?"},
            {"key": "bad key!", "question": "A key with a space?"},
            "A plain string question?",
        ],
        practice={"prompt": ["not", "text"], "typical": "high"},
    )
    bot = Bot(Client(raise_request_exception=False), built.study.slug, "5f0000000000000000020700")
    statuses = []
    bot.on_response = lambda response: statuses.append(response.status_code)
    final = bot.walk()
    assert bot.step_name(final) == "done" and all(status < 500 for status in statuses), statuses
    participant = Participant.objects.get(prolific_pid=bot.pid)
    assert participant.step == "complete" and participant.attention_checks.count() == 1
    assert set(participant.debrief) == {"q1", "q3"}
    assert Slot.objects.get(participant=participant).status == Slot.Status.COMPLETE
    # The researcher is told what the pages left out, with the spec's words.
    body = text_of(researcher_client(built.study).get(f"/panel/{built.study.slug}/"))
    assert "The rater pages' settings have problems" in body
    assert "attention_checks.items[1].tolerance: expected a number at least 0" in body
    assert "debrief_questions[1].key" in body
