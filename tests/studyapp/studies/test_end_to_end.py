"""From spec to export: load, generate, build slots, raters walk the flow, export and report match the database."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pandas as pd
import pytest
from django.urls import reverse

from studyapp.rating.models import Participant, Rating
from studyapp.rating.slots import slots_build
from studyapp.studies.generation_jobs import generation_start
from studyapp.studies.models import Stimulus, StudyReport
from tests.factories import ResearcherFactory
from tests.studyapp.rating.helpers import Bot


@pytest.mark.slow
@pytest.mark.django_db
def test_spec_to_ratings_to_export(
    client, tiny_study, celery_eager, django_capture_on_commit_callbacks, settings, tmp_path
) -> None:
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    settings.VAR_DIR = tmp_path
    study = tiny_study(conditions=("base", "weight"), raters=8)
    # Two stimuli of each condition per rater: with one, rater and stimulus intercepts can
    # absorb 16 random scores per dimension and the mixed model has no residual left to fit.
    study.is_open, study.stimuli_per_rater = True, 4
    study.save(update_fields=["is_open", "stimuli_per_rater"])
    with django_capture_on_commit_callbacks(execute=True):
        generation_start(study=study)
    assert {slug: len(slots) for slug, slots in slots_build(study=study).items()} == {"aut-0": 8}

    for index in range(8):
        bot = Bot(client=client, study_slug=study.slug, pid=f"pid-{index}", rng=random.Random(index))
        final = bot.walk()
        assert bot.step_name(final) == "done", bot.log
    assert Participant.objects.filter(study=study, step="complete").count() == 8

    researcher = ResearcherFactory(username="researcher")
    study.researchers.add(researcher)
    client.force_login(researcher)
    response = client.get(reverse("studies:export", args=[study.slug, "ratings", "csv"]))
    ratings = pd.read_csv(io.BytesIO(response.content))
    assert len(ratings) == Rating.objects.filter(participant__study=study).count() == 8 * 4 * 3
    assert ratings["rater_complete"].all()
    assert set(ratings["condition"]) == {"base", "weight"}
    # Each rater saw each condition twice, on pages in order, each page timed.
    assert (ratings.groupby(["rater", "condition"])["stimulus"].nunique() == 2).all()
    assert ratings["seconds_on_page"].notna().all()
    # Every stimulus got the same number of ratings (the balanced design).
    assert ratings.groupby("stimulus")["rater"].nunique().tolist() == [4] * Stimulus.objects.count()

    stimuli = pd.read_parquet(
        io.BytesIO(client.get(reverse("studies:export", args=[study.slug, "stimuli", "parquet"])).content)
    )
    assert set(ratings["stimulus"]) <= set(stimuli["stimulus"])

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("studies:report_request", args=[study.slug]))
    # The analysis of these ratings: every rating in, the weight arm against base on each dimension.
    report = StudyReport.objects.get(study=study)
    assert report.status == StudyReport.Status.READY, report.error_message
    assert report.n_ratings == len(ratings)
    results = json.loads((Path(report.out_dir) / "results.json").read_text())
    effects = results["effects"]["rows"]
    assert {row["dimension"] for row in effects} == {"originality", "surprise", "creativity"}
    assert all(row["term"].endswith("[T.weight]") and math.isfinite(row["estimate"]) for row in effects)
    assert {row["condition"] for row in results["diversity"]["pooled"]} == {"weight"}
    html = (Path(report.out_dir) / report.html_name).read_text()
    assert "96 ratings analysed of 96 collected, by 8 of 8 raters" in html and "1. Rated effects" in html
    page = client.get(reverse("studies:report", args=[study.slug]))
    assert page.status_code == 200 and report.html_name in page.content.decode()
