"""The dashboard tells the truth: each deployment's own rating target over its design stimuli,
raters counted in their deployment after their slot went back to the pool, pilot and simulated
raters marked, retry only for failed jobs, a page that refreshes itself while jobs run, no
empty metric columns, and a preview per deployment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from studyapp.rating.models import Participant, Slot
from studyapp.rating.services import slots_release_stale
from studyapp.rating.slots import slots_build
from studyapp.studies.exports import export_participants_frame
from studyapp.studies.models import Deployment, GenerationJob
from tests.factories import DeploymentFactory, GenerationJobFactory, StimulusFactory
from tests.studyapp.rating.helpers import Bot, build_rating_study, researcher_client, text_of

pytestmark = pytest.mark.django_db

CHECK_FIRST = {"position": 0, "text": "Attention check: move the slider all the way to the right.", "expected": 100}


def _dashboard(client, study):
    return client.get(reverse("studies:dashboard", args=[study.slug]))


def test_times_rated_has_each_deployments_own_target_over_its_design_stimuli_only():
    # 4 items x 2 conditions x 2 samples generated per deployment, 1 sample of each rated: 8 of
    # its 16 stimuli are in the design. The first deployment plans each twice (4 raters x 4),
    # the second once (2 raters x 4); an automatic-only deployment has no target at all.
    built = build_rating_study(
        n_deployments=2, samples=2, samples_per_item=2, rated_samples_per_item=1, build_slots=False
    )
    study = built.study
    Deployment.objects.filter(pk=built.deployments[1].pk).update(raters_per_deployment=2)
    automatic = DeploymentFactory(study=study, slug="dat-only", automatic_only=True, task=built.deployments[0].task)
    for _ in range(3):
        StimulusFactory(job=GenerationJobFactory(deployment=automatic))
    slots_build(study=study)
    first, second = (d.slug for d in built.deployments)
    for n in range(2):  # the whole-study link fills slot 0 of each deployment first
        Bot(Client(), study.slug, f"5f00000000000000000141{n:02d}").walk()

    response = _dashboard(researcher_client(study), study)
    progress = {row.deployment: row for row in response.context["control"].stimulus_progress}
    assert set(progress) == {first, second}
    assert (progress[first].stimuli, progress[first].target, progress[first].at_target) == (8, "2", 0)
    assert progress[first].by_times_rated == [(0, 4), (1, 4), (2, 0)]
    assert (progress[second].stimuli, progress[second].target, progress[second].at_target) == (8, "1", 4)
    assert progress[second].by_times_rated == [(0, 4), (1, 4)]
    body = text_of(response)
    assert (
        f'data-stimulus-progress-row="{second}"><td>{second}</td> <td class="num">8</td><td class="num">1</td>' in body
    )
    assert 'data-stimulus-progress-row="dat-only"' not in body


def test_a_deployment_without_slots_says_so_instead_of_a_target():
    built = build_rating_study(build_slots=False)
    response = _dashboard(researcher_client(built.study), built.study)
    [row] = response.context["control"].stimulus_progress
    assert not row.slots_built
    assert "slots not built yet" in text_of(response)


def test_screened_out_and_timed_out_raters_count_in_their_deployment_after_their_slot_is_released():
    built = build_rating_study(
        n_deployments=2, attention_checks=[CHECK_FIRST], attention_screen_out_after=1, slot_timeout_minutes=30
    )
    study = built.study
    pinned = built.deployments[1]
    screened = Bot(Client(), study.slug, "5f0000000000000000014200", attention_answer="3")
    assert screened.step_name(screened.walk(path=f"/r/{study.slug}/{pinned.rater_link.token}/")) == "ended"
    silent = Bot(Client(), study.slug, "5f0000000000000000014201")
    silent.walk(stop_after_pages=1, path=f"/r/{study.slug}/{pinned.rater_link.token}/")
    Participant.objects.filter(prolific_pid=silent.pid).update(last_seen_at=timezone.now() - timedelta(hours=1))
    assert slots_release_stale(study=study) == 1
    participants = {p.prolific_pid: p for p in Participant.objects.all()}
    assert participants[screened.pid].step == Participant.Step.SCREENED_OUT
    assert participants[silent.pid].step == Participant.Step.TIMED_OUT
    assert not Slot.objects.filter(participant__prolific_pid__in=[screened.pid, silent.pid]).exists()

    response = _dashboard(researcher_client(study), study)
    d = response.context["d"]
    row = next(row for row in d.deployments if row.slug == pinned.slug)
    assert (row.raters_screened_out, row.raters_timed_out) == (1, 1)
    assert sum(r.raters_screened_out for r in d.deployments) == d.participants["screened_out"] == 1
    assert sum(r.raters_timed_out for r in d.deployments) == d.participants["timed_out"] == 1
    table_deployments = {r["token"]: r["deployment_slug"] for r in d.raters}
    assert table_deployments[participants[screened.pid].token] == table_deployments[participants[silent.pid].token]
    assert table_deployments[participants[silent.pid].token] == pinned.slug
    frame = export_participants_frame(study=study).set_index("prolific_pid")
    assert frame.loc[screened.pid, "deployment"] == frame.loc[silent.pid, "deployment"] == pinned.slug


def test_the_raters_table_marks_pilot_and_simulated_raters():
    built = build_rating_study(raters=4)
    study = built.study
    Bot(Client(), study.slug, "5f0000000000000000014300").walk()
    study.pilot_mode = True
    study.save()
    Bot(Client(), study.slug, "5f0000000000000000014301").walk()
    study.pilot_mode = False
    study.save()
    Bot(Client(), study.slug, "5f0000000000000000014302").walk()
    Participant.objects.filter(prolific_pid="5f0000000000000000014302").update(simulated=True)
    tokens = dict(Participant.objects.values_list("prolific_pid", "token"))

    response = _dashboard(researcher_client(study), study)
    html = response.content.decode()
    # The study's raters table counts the pilot apart, as the deployments' table leaves it out.
    assert {k: response.context["d"].participants[k] for k in ("total", "pilot", "simulated")} == {
        "total": 3, "pilot": 1, "simulated": 1,
    }  # fmt: skip
    assert sum(row.raters for row in response.context["d"].deployments) == 2

    def row_of(pid: str) -> str:
        start = html.index(f'<tr data-rater="{tokens[pid]}">')
        return html[start : html.index("</tr>", start)]

    real, pilot, simulated = (row_of(f"5f00000000000000000143{n:02d}") for n in range(3))
    assert "data-rater-pilot" not in real and "data-rater-simulated" not in real and ">rater<" in real
    assert "data-rater-pilot" in pilot and "data-rater-simulated" not in pilot
    assert "data-rater-simulated" in simulated and "data-rater-pilot" not in simulated


@pytest.mark.parametrize("status", ["queued", "running"])
def test_the_dashboard_refreshes_itself_while_a_job_is_queued_or_running(status):
    built = build_rating_study()
    client = researcher_client(built.study)
    refresh = '<meta http-equiv="refresh"'
    assert refresh not in _dashboard(client, built.study).content.decode()  # every job ended
    GenerationJob.objects.filter(deployment__study=built.study).update(status=status)
    html = _dashboard(client, built.study).content.decode()
    assert refresh in html and "data-refreshing" in html


@pytest.mark.parametrize(
    ("status", "offered"),
    [("failed", True), ("queued", False), ("running", False), ("succeeded", False), ("pending", False)],
)
def test_retry_is_offered_for_failed_jobs_only(status, offered):
    built = build_rating_study()
    job = GenerationJob.objects.filter(deployment__study=built.study).first()
    GenerationJob.objects.filter(pk=job.pk).update(status=status)
    html = _dashboard(researcher_client(built.study), built.study).content.decode()
    retry = reverse("studies:job_retry", args=[built.study.slug, job.pk])
    assert (retry in html) is offered


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_retry_post_of_a_queued_or_running_job_is_refused_with_a_message(status, django_capture_on_commit_callbacks):
    built = build_rating_study()
    job = GenerationJob.objects.filter(deployment__study=built.study).first()
    GenerationJob.objects.filter(pk=job.pk).update(status=status, attempts=1)
    client = researcher_client(built.study)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("studies:job_retry", args=[built.study.slug, job.pk]), follow=True)
    assert response.status_code == 200 and callbacks == []  # nothing handed to the broker
    assert f"Not retried: job {job} is {status} already" in text_of(response)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (status, 1)


def test_metric_columns_empty_in_every_row_are_left_out():
    built = build_rating_study(n_deployments=2)
    for job in GenerationJob.objects.filter(deployment__study=built.study):
        job.stimuli.update(metrics={"n_words": 9.0, "aut_fluency": 2.0, "cc_valid": None})
    response = _dashboard(researcher_client(built.study), built.study)
    assert response.context["summary_metrics"] == ["n_words", "aut_fluency"]
    table = text_of(response).split("data-metrics>")[1].split("</table>")[0]
    assert "cc_" not in table and "dat_score" not in table
    assert table.count("<tr>") == 1 + 4  # the header and one row per (deployment, condition)
    assert table.count("<td") == 4 * (3 + 2)


def test_each_deployment_has_its_own_preview_and_an_unknown_one_is_404():
    built = build_rating_study(n_deployments=2)
    study = built.study
    client = researcher_client(study)
    for deployment in built.deployments:
        bot = Bot(client, study.slug, "preview")
        response = bot.follow(bot.get(f"/r/{study.slug}/-/preview/?deployment={deployment.slug}"))
        shown = set()
        while bot.step_name(response) != "done":
            if bot.step_name(response) == "rate":
                shown.add(response.context["page"].stimulus.pk)
            response = bot.act(response)
        first_slot = Slot.objects.get(deployment=deployment, pilot=False, index=0)
        assert shown == set(first_slot.planned.values_list("stimulus_id", flat=True)), deployment.slug
    missing = client.get(f"/r/{study.slug}/-/preview/?deployment=no-such-deployment")
    assert missing.status_code == 404 and "has no rated deployment" in text_of(missing)
    assert not Participant.objects.exists()
