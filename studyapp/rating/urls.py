"""Rater pages: Prolific entry, consent, instructions, practice, rating, debrief, completion."""

from django.urls import path  # noqa: F401

app_name = "rating"
urlpatterns: list = []
