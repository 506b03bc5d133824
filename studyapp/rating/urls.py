"""Rater pages: Prolific entry, consent, instructions, practice, rating, debrief, completion.

Flow pages live under ``-/`` so that they can never collide with a deployment link.
"""

from django.urls import path

from studyapp.rating import views

app_name = "rating"
urlpatterns = [
    path("<slug:study_slug>/", views.entry, name="entry"),
    path("<slug:study_slug>/-/preview/", views.preview_start, name="preview"),
    path("<slug:study_slug>/-/consent/", views.consent, name="consent"),
    path("<slug:study_slug>/-/instructions/", views.instructions, name="instructions"),
    path("<slug:study_slug>/-/practice/", views.practice, name="practice"),
    path("<slug:study_slug>/-/rate/", views.rate, name="rate"),
    path("<slug:study_slug>/-/debrief/", views.debrief, name="debrief"),
    path("<slug:study_slug>/-/done/", views.done, name="done"),
    path("<slug:study_slug>/-/ended/", views.ended, name="ended"),
    path("<slug:study_slug>/-/alive/", views.alive, name="alive"),
    path("<slug:study_slug>/<slug:deployment_ref>/", views.entry, name="entry_pinned"),
]
