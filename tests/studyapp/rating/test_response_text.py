"""Every response is shown through one normalisation of markdown and whitespace, whatever its condition."""

from __future__ import annotations

import pytest
from django.test import Client

from studyapp.rating.response_text import normalise_response
from studyapp.studies.models import Stimulus
from tests.studyapp.rating.helpers import Bot, build_rating_study

MARKDOWN = (
    "## Uses for a **brick**\r\n\r\n\r\n"
    "1. Build a *tiny* house\n"
    "2)   A __door stop__ for `windy` days\n"
    "- Paperweight, see [this](http://example.com)\n"
    "> quoted   text\n"
    "---\n"
    "\tSnake_case_words stay, as do 2*3*4 and x_1.\n\n\n\n"
)
PLAIN = (
    "Uses for a brick\n\n"
    "• Build a tiny house\n"
    "• A door stop for windy days\n"
    "• Paperweight, see this\n"
    "quoted text\n\n"
    "Snake_case_words stay, as do 2*3*4 and x_1."
)


def test_markdown_and_whitespace_are_normalised() -> None:
    assert normalise_response(MARKDOWN) == PLAIN
    assert normalise_response(PLAIN) == PLAIN  # idempotent: plain text passes unchanged
    assert normalise_response("") == ""


def test_numbered_and_bulleted_lists_look_the_same() -> None:
    numbered = normalise_response("1. rope\n2. bucket")
    bulleted = normalise_response("* rope\n+ bucket")
    assert numbered == bulleted == "• rope\n• bucket"


@pytest.mark.django_db
def test_rater_page_shows_every_condition_through_the_same_normalisation() -> None:
    built = build_rating_study(n_items=2, raters=1, per_rater=4, build_slots=False)
    # One condition writes markdown, the other plain text with the same words.
    for stimulus in Stimulus.objects.filter(deployment__study=built.study).select_related("condition"):
        markdown = stimulus.condition.method == "base"
        stimulus.text = MARKDOWN if markdown else PLAIN
        stimulus.save(update_fields=["text"])
    from studyapp.rating.slots import slots_build

    slots_build(study=built.study)
    shown: list[str] = []

    def keep(response) -> None:
        if response.status_code == 200 and b'class="response"' in response.content:
            html = response.content.decode()
            start = html.index('<div class="response">')
            shown.append(html[start : html.index("</div>", start)])

    bot = Bot(client=Client(), study_slug=built.study.slug, pid="reader-1", on_response=keep)
    bot.walk()
    rated = [block for block in shown if "brick" in block]
    assert len(rated) == 4  # 2 items x 2 conditions
    assert len(set(rated)) == 1  # markdown and plain responses are indistinguishable on the page
    assert "**" not in rated[0] and "##" not in rated[0] and "<h2>" not in rated[0]
    assert "• Build a tiny house<br>" in rated[0]
    # Stored text is untouched (the export has it as generated).
    assert Stimulus.objects.filter(text=MARKDOWN).count() == 2
