"""``{{ text|response_text }}``: the one normalisation every shown response goes through."""

from __future__ import annotations

from django import template

from studyapp.rating.response_text import normalise_response

register = template.Library()
register.filter("response_text", normalise_response)
