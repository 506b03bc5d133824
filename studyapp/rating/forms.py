"""Rater forms: plain Django forms; field names carry dimension keys and opaque tokens only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core import signing

from studyapp.rating.selectors import AttentionCheck, DebriefQuestion
from studyapp.studies.models import RatingDimension
from studyapp.studies.vocabulary import SLIDER

PAGE_SALT = "rating.page"
# A page left open longer than this is answered from a fresh copy; it bounds replays too.
PAGE_MAX_AGE_SECONDS = 24 * 3600

MOVE_SLIDER = "Please move the slider to give your answer."
# The most held-back clicks one page records; more says nothing new.
HELD_BACK_MAX = 99


class HeldBackMixin:
    """``held_back``: how many clicks the page's script held back as too fast (issue 20, point 3).

    A count only the page's script writes: anything but a whole number counts as 0 rather than
    a form error the rater could not mend.
    """

    data: Any

    def held_back_count(self) -> int:
        try:
            value = int(str(self.data.get("held_back", "0")).strip() or "0")
        except (ValueError, AttributeError):
            return 0
        return min(max(value, 0), HELD_BACK_MAX)


@dataclass(frozen=True)
class PageTicket:
    """What the server told the browser about a page: its position and when it was shown.

    Signed, so the time on page cannot be forged and a page of one rater cannot be posted
    as another's; it holds the rater's opaque token, a position and a time, nothing else.
    """

    index: int
    shown_at: float
    check_index: int | None = None

    @property
    def seconds_on_page(self) -> float:
        return round(max(0.0, time.time() - self.shown_at), 3)


def page_ticket_sign(*, rater_token: str, index: int, check_index: int | None = None) -> str:
    payload = {"r": rater_token, "i": index, "t": round(time.time(), 3)}
    if check_index is not None:
        payload["c"] = check_index
    return signing.dumps(payload, salt=PAGE_SALT, compress=False)


def page_ticket_load(*, value: str, rater_token: str) -> PageTicket | None:
    try:
        payload = signing.loads(value, salt=PAGE_SALT, max_age=PAGE_MAX_AGE_SECONDS)
        if payload.get("r") != rater_token:
            return None
        return PageTicket(index=int(payload["i"]), shown_at=float(payload["t"]), check_index=payload.get("c"))
    except (signing.BadSignature, KeyError, TypeError, ValueError, AttributeError):
        return None


def score_field_name(dimension: RatingDimension) -> str:
    return f"score-{dimension.key}"


def _score_field(dimension: RatingDimension) -> forms.Field:
    low, high = dimension.scale_range
    messages = {"required": MOVE_SLIDER if dimension.scale == SLIDER else "Please choose."}
    if dimension.scale == SLIDER:
        return forms.IntegerField(min_value=low, max_value=high, error_messages=messages)
    return forms.TypedChoiceField(
        choices=[(str(v), str(v)) for v in range(low, high + 1)], coerce=int, error_messages=messages
    )


class ScoresForm(forms.Form):
    """One score per dimension, in the rater's order (used by practice and rating pages)."""

    def __init__(self, *args, dimensions: list[RatingDimension], **kwargs):
        super().__init__(*args, **kwargs)
        self.dimensions = dimensions
        for dimension in dimensions:
            self.fields[score_field_name(dimension)] = _score_field(dimension)

    def scores(self) -> dict[str, float]:
        return {dimension.key: self.cleaned_data[score_field_name(dimension)] for dimension in self.dimensions}


class RatingPageForm(HeldBackMixin, ScoresForm):
    page = forms.CharField(widget=forms.HiddenInput)
    stimulus = forms.CharField(widget=forms.HiddenInput, max_length=32)

    def __init__(self, *args, rater_token: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.rater_token = rater_token

    def clean_page(self) -> PageTicket:
        ticket = page_ticket_load(value=self.cleaned_data["page"], rater_token=self.rater_token)
        if ticket is None or ticket.check_index is not None:
            raise forms.ValidationError("This page is out of date. Please continue from the current page.")
        return ticket


class AttentionCheckForm(HeldBackMixin, forms.Form):
    page = forms.CharField(widget=forms.HiddenInput)
    response = forms.CharField(max_length=200, error_messages={"required": "Please answer this question."})

    def __init__(self, *args, rater_token: str, check: AttentionCheck, **kwargs):
        super().__init__(*args, **kwargs)
        self.rater_token = rater_token
        self.check = check
        if check.options:
            self.fields["response"] = forms.ChoiceField(
                choices=[(option, option) for option in check.options],
                widget=forms.RadioSelect,
                error_messages={"required": "Please answer this question."},
            )
        else:
            self.fields["response"] = forms.IntegerField(
                min_value=0, max_value=100, error_messages={"required": MOVE_SLIDER}
            )

    def clean_page(self) -> PageTicket:
        ticket = page_ticket_load(value=self.cleaned_data["page"], rater_token=self.rater_token)
        if ticket is None or ticket.check_index is None:
            raise forms.ValidationError("This page is out of date. Please continue from the current page.")
        return ticket


class ConsentForm(forms.Form):
    choice = forms.ChoiceField(choices=[("agree", "I agree"), ("decline", "I do not agree")])


class DebriefForm(forms.Form):
    def __init__(self, *args, questions: list[DebriefQuestion], **kwargs):
        super().__init__(*args, **kwargs)
        self.questions = questions
        for question in questions:
            name = f"debrief-{question.key}"
            if question.kind == "choice":
                self.fields[name] = forms.ChoiceField(
                    label=question.text,
                    choices=[(o, o) for o in question.options],
                    widget=forms.RadioSelect,
                    required=question.required,
                )
            elif question.kind == "number":
                self.fields[name] = forms.FloatField(label=question.text, required=question.required)
            else:
                self.fields[name] = forms.CharField(
                    label=question.text,
                    required=question.required,
                    max_length=2000,
                    widget=forms.Textarea(attrs={"rows": 3}),
                )

    def answers(self) -> dict:
        return {question.key: self.cleaned_data.get(f"debrief-{question.key}") for question in self.questions}
