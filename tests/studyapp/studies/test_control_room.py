"""Issue 13 on the dashboard: open/close, pilot mode end to end (database, dashboard, export,
analysis), the Prolific links with placeholders, and the rater-quality figures."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from analysis.mixed import prepare_ratings
from studyapp.rating.models import Participant, Rating
from studyapp.studies.exports import export_ratings_frame
from tests.factories import ResearcherFactory
from tests.studyapp.rating.helpers import Bot, build_rating_study, researcher_client, text_of

pytestmark = pytest.mark.django_db


def test_the_dashboard_gives_prolific_links_with_placeholders_pinned_links_and_the_preview():
    built = build_rating_study(n_deployments=2)
    client = researcher_client(built.study)
    body = text_of(client.get(reverse("studies:dashboard", args=[built.study.slug])))
    placeholders = "PROLIFIC_PID={{%PROLIFIC_PID%}}&amp;STUDY_ID={{%STUDY_ID%}}&amp;SESSION_ID={{%SESSION_ID%}}"
    assert f"http://testserver/r/{built.study.slug}/?{placeholders}" in body
    for deployment in built.deployments:
        token = deployment.rater_link.token
        assert f"http://testserver/r/{built.study.slug}/{token}/?{placeholders}" in body
        assert deployment.slug not in f"/r/{built.study.slug}/{token}/"
    assert body.count("data-copy=") == 3
    # One preview per deployment, each of its own slot's pages.
    for deployment in built.deployments:
        assert f"http://testserver/r/{built.study.slug}/-/preview/?deployment={deployment.slug}" in body
    assert body.count("data-preview-link=") == 2


def test_open_and_close_from_the_dashboard_and_only_by_the_studys_researchers():
    built = build_rating_study()
    client = researcher_client(built.study)
    url = reverse("studies:study_open", args=[built.study.slug])
    assert client.post(url, {"state": "off"}).status_code == 302
    built.study.refresh_from_db()
    assert built.study.is_open is False
    assert "This study is closed" in text_of(Bot(Client(), built.study.slug, "5f0000000000000000013200").enter())
    client.post(url, {"state": "on"})
    built.study.refresh_from_db()
    assert built.study.is_open is True
    assert client.post(url, {"state": "maybe"}).status_code == 400
    assert client.get(url).status_code == 405

    stranger = Client()
    stranger.force_login(ResearcherFactory())
    assert stranger.post(url, {"state": "off"}).status_code == 404
    built.study.refresh_from_db()
    assert built.study.is_open is True


def test_a_pilot_is_marked_in_the_database_dashboard_and_export_and_left_out_of_the_analysis():
    built = build_rating_study(raters=4, per_rater=4, min_seconds_per_page=30)
    client = researcher_client(built.study)
    client.post(reverse("studies:study_pilot", args=[built.study.slug]), {"state": "on"})
    pilot = Bot(Client(), built.study.slug, "5f0000000000000000013210")
    pilot.walk()
    client.post(reverse("studies:study_pilot", args=[built.study.slug]), {"state": "off"})
    real = Bot(Client(), built.study.slug, "5f0000000000000000013211")
    real.walk()

    assert Participant.objects.get(prolific_pid=pilot.pid).pilot is True
    assert Participant.objects.get(prolific_pid=real.pid).pilot is False
    assert set(Rating.objects.filter(participant__prolific_pid=pilot.pid).values_list("pilot", flat=True)) == {True}
    assert set(Rating.objects.filter(participant__prolific_pid=real.pid).values_list("pilot", flat=True)) == {False}

    body = text_of(client.get(reverse("studies:dashboard", args=[built.study.slug])))
    assert "Not in pilot mode" in body
    quality_row = body[body.index("data-rater-quality") :]
    assert "1 / 4" in quality_row  # one pilot rater, four pilot pages
    assert "8 / 8" in quality_row  # every page of both bots was faster than 30 s

    frame = export_ratings_frame(study=built.study)
    by_rater = frame.groupby("rater")["pilot"].all()
    assert sorted(by_rater.tolist()) == [False, True]
    assert frame["speeding"].all()
    kept = prepare_ratings(frame)
    assert kept["rater"].nunique() == 1 and not kept["pilot"].any()
    assert kept.attrs["excluded_raters"]["pilot"] == 1


def test_live_progress_per_stimulus_against_the_target_charts_and_time_to_completion():
    built = build_rating_study(raters=4, per_rater=4, n_items=4)  # 8 stimuli, each rated twice when done
    client = researcher_client(built.study)
    url = reverse("studies:dashboard", args=[built.study.slug])
    body = text_of(client.get(url))
    slug = built.deployments[0].slug
    assert (
        f'<tr data-stimulus-progress-row="{slug}"><td>{slug}</td> <td class="num">8</td><td class="num">2</td>' in body
    )
    assert "No completed raters yet." in body

    for n in range(2):
        Bot(Client(), built.study.slug, f"5f00000000000000000132{20 + n}").walk()
    response = client.get(url)
    html = response.content.decode()
    room = response.context["control"]
    # Two of four raters done: each of the 8 stimuli was rated once; 2 slots left, 2 done in the last hour.
    [progress] = room.stimulus_progress
    assert (progress.stimuli, progress.target, progress.at_target) == (8, "2", 0)
    assert progress.by_times_rated == [(1, 8), (2, 0)]
    assert (room.slots_left, room.quality.completions_last_hour, room.hours_to_completion) == (2, 2, 1.0)
    assert html.count("<svg") == 2 and "<script" not in room.completions_chart + room.conditions_chart
    assert 'aria-label="2 completed raters' in html
    assert "ratings per condition: activation-cond-d0 12, base-cond-d0 12" in html
