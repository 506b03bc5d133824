"""Issue 11, item 6: the agree/decline race, slug entry links, odd report-file names."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from studyapp.rating.models import Participant, Slot
from studyapp.rating.services import participant_consent
from studyapp.studies.models import StudyReport
from tests.factories import ParticipantFactory, StudyFactory, panel_user
from tests.studyapp.rating.helpers import Bot, build_rating_study

Step = Participant.Step


@pytest.mark.django_db(transaction=True)
def test_simultaneous_agree_and_decline_leave_one_consistent_outcome():
    built = build_rating_study(n_items=10, raters=20, per_rater=4)
    participants = [ParticipantFactory(study=built.study) for _ in range(12)]
    errors: list[BaseException] = []

    def click(participant, agree, barrier, delay):
        try:
            barrier.wait(timeout=30)
            if not agree:
                time.sleep(delay)  # staggered, so that some declines land inside an agree, some after it
            participant_consent(participant=Participant.objects.get(pk=participant.pk), agree=agree)
        except BaseException as error:  # collected and asserted below
            errors.append(error)
        finally:
            connection.close()

    for n, participant in enumerate(participants):
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=click, args=(participant, agree, barrier, n * 0.004)) for agree in (True, False)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    for participant in Participant.objects.filter(pk__in=[p.pk for p in participants]):
        held = Slot.objects.filter(participant=participant, status=Slot.Status.ACTIVE).count()
        if participant.step == Step.DECLINED:
            assert participant.consented_at is None and held == 0, participant.pk
        else:
            assert participant.step == Step.INSTRUCTIONS and participant.consented_at is not None and held == 1


@pytest.mark.django_db
def test_a_deployment_slug_is_not_an_entry_link():
    built = build_rating_study(n_deployments=2)
    slug = built.deployments[1].slug
    response = Bot(Client(), built.study.slug, "5f0000000000000000000601").enter(f"/r/{built.study.slug}/{slug}/")
    assert response.status_code == 404
    assert not Participant.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["report%00.html", "a\x00b", "x" * 300, "%00", "d/" * 200 + "f"])
def test_report_file_with_a_nul_byte_or_a_long_name_is_404(client, tmp_path, name):
    study = StudyFactory()
    (tmp_path / "report.html").write_text("<p>ok</p>")
    report = StudyReport.objects.create(
        study=study, status=StudyReport.Status.READY, out_dir=str(tmp_path), html_name="report.html"
    )
    client.force_login(panel_user(username="researcher", study=study))
    good = reverse("studies:report_file", args=[study.slug, report.pk, "report.html"])
    assert client.get(good).status_code == 200
    response = client.get(f"{good.rsplit('/', 1)[0]}/{name}")
    assert response.status_code == 404
