"""Researcher pages (staff only): dashboard, exports, report."""

from django.urls import path

from studyapp.studies import control_views, views

app_name = "studies"
urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:slug>/", views.dashboard, name="dashboard"),
    path("<slug:slug>/generate/", views.generation_start, name="generation_start"),
    path("<slug:slug>/jobs/<int:job_id>/retry/", views.job_retry, name="job_retry"),
    path("<slug:slug>/slots/", views.slots_build, name="slots_build"),
    path("<slug:slug>/stimuli/exclude/", views.stimulus_exclude, name="stimulus_exclude"),
    path("<slug:slug>/stimuli/regenerate/", views.stimuli_regenerate, name="stimuli_regenerate"),
    path("<slug:slug>/texts/<slug:deployment>/<slug:condition>/", views.texts, name="texts"),
    path("<slug:slug>/truncation/<slug:deployment>/", views.truncation_accept, name="truncation_accept"),
    path("<slug:slug>/decoding/", views.generation_round, name="generation_round"),
    path("<slug:slug>/open/", control_views.study_open, name="study_open"),
    path("<slug:slug>/pilot/", control_views.study_pilot, name="study_pilot"),
    path("<slug:slug>/metrics/", views.metrics_start, name="metrics_start"),
    path("<slug:slug>/export/<str:table>.<str:fmt>", views.export, name="export"),
    path("<slug:slug>/report/", views.report, name="report"),
    path("<slug:slug>/report/build/", views.report_request, name="report_request"),
    path("<slug:slug>/report/<int:report_id>/<path:name>", views.report_file, name="report_file"),
]
