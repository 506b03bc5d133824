"""Issue 20, point 4: the participants table, in export_study, the dashboard's export links and
the rated-effects notebook; the ratings keep their opaque rater token, the join key of both tables."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from studyapp.rating.models import Participant
from tests.factories import ResearcherFactory
from tests.notebooks import execute_notebook
from tests.studyapp.rating.helpers import Bot, build_rating_study, researcher_client

pytestmark = pytest.mark.django_db
CHECK = {"position": 1, "text": "Attention check: move the slider to the right end.", "expected": 100}
QUESTIONS = [
    {"key": "strategy", "question": "How did you decide?"},
    {"key": "age", "question": "How old are you?", "type": "number"},
    {"key": "device", "question": "Your device?", "options": ["phone", "computer"]},
]


def _walked_study():
    built = build_rating_study(raters=8, per_rater=4, attention_checks=[CHECK], debrief_questions=QUESTIONS,
                               prolific_timed_out_code="PARTIAL1", prolific_no_consent_code="NOCONS1")  # fmt: skip
    slug = built.study.slug
    for n in range(6):
        Bot(Client(), slug, f"5f00000000000000000204{n:02d}").walk()
    failing = Bot(Client(), slug, "5f0000000000000000020490", attention_answer="3")
    failing.walk()
    declined = Bot(Client(), slug, "5f0000000000000000020491")
    declined.post(declined.follow(declined.enter()).request["PATH_INFO"], {"choice": "decline"})
    return built


def test_export_study_writes_the_participants_table_with_the_ratings_join_key(tmp_path):
    built = _walked_study()
    call_command("export_study", built.study.slug, "--out", str(tmp_path))
    csv = pd.read_csv(tmp_path / f"{built.study.slug}-participants.csv")
    frame = pd.read_parquet(tmp_path / f"{built.study.slug}-participants.parquet")
    assert len(frame) == len(csv) == 8
    ratings = pd.read_parquet(tmp_path / f"{built.study.slug}-ratings.parquet")
    assert set(ratings["rater"]) <= set(frame["rater"])  # every rating joins one participant
    joined = ratings.merge(frame, on="rater", how="left", validate="many_to_one")
    assert joined["prolific_pid"].notna().all()

    rows = frame.set_index("prolific_pid")
    done = rows.loc["5f0000000000000000020400"]
    participant = Participant.objects.get(prolific_pid="5f0000000000000000020400")
    assert done["rater"] == participant.token and done["prolific_session_id"] == "sess-5f0000000000000000020400"
    assert done["step"] == "complete" and done["completion_code"] == "C0MPL3TE"
    assert done["deployment"] == built.deployments[0].slug
    assert (done["pages_rated"], done["ratings"]) == (4, 12)
    times = [done[f"{step}_at"] for step in ("instructions", "practice", "rating", "debrief", "complete")]
    assert all(pd.notna(t) for t in times) and times == sorted(times) and done["started_at"] <= times[0]
    assert done["check_1_response"] == "100" and bool(done["check_1_passed"]) is True
    assert done["debrief_strategy"] == "I read each one carefully."
    assert done["debrief_device"] in {"phone", "computer"}
    assert pd.api.types.is_float_dtype(frame["debrief_age"])
    for flag in ("pilot", "simulated", "speeding", "partial", "returned"):
        assert bool(done[flag]) is False

    failing = rows.loc["5f0000000000000000020490"]
    assert failing["check_1_response"] == "3" and bool(failing["check_1_passed"]) is False
    assert failing["attention_failures"] == 1 and "attention_check_failed" in failing["flags"]
    declined = rows.loc["5f0000000000000000020491"]
    assert declined["step"] == "declined" and declined["completion_code"] == "NOCONS1"
    assert pd.notna(declined["declined_at"]) and pd.isna(declined["rating_at"]) and declined["pages_rated"] == 0


def test_the_dashboard_links_the_participants_table_under_the_same_access_rule():
    built = _walked_study()
    url = reverse("studies:export", args=[built.study.slug, "participants", "csv"])
    client = researcher_client(built.study)
    assert url in client.get(reverse("studies:dashboard", args=[built.study.slug])).content.decode()
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert len(pd.read_csv(io.BytesIO(response.content))) == 8
    parquet = client.get(reverse("studies:export", args=[built.study.slug, "participants", "parquet"]))
    assert len(pd.read_parquet(io.BytesIO(parquet.content))) == 8
    stranger = Client()
    stranger.force_login(ResearcherFactory())
    assert stranger.get(url).status_code == 404  # another team's researcher: the study does not exist
    assert Client().get(url).status_code == 302  # anonymous: to the login page


def test_the_rated_effects_notebook_reads_the_participants_table(tmp_path, monkeypatch):
    built = _walked_study()
    call_command("export_study", built.study.slug, "--out", str(tmp_path))
    execute_notebook(
        "rated_effects.ipynb",
        monkeypatch,
        ANALYSIS_RATINGS=tmp_path / f"{built.study.slug}-ratings.parquet",
        ANALYSIS_PARTICIPANTS=tmp_path / f"{built.study.slug}-participants.csv",
        ANALYSIS_OUT=tmp_path,
    )
    per_rater = pd.read_csv(tmp_path / "notebook_participants.csv").set_index("prolific_pid")
    # The notebook joins each participant to their analysed ratings: the one who failed the
    # check has none analysed, the one who declined none at all.
    assert per_rater.loc["5f0000000000000000020400", "ratings_analysed"] == 12
    assert per_rater.loc["5f0000000000000000020490", "ratings_analysed"] == 0
    assert per_rater.loc["5f0000000000000000020491", "ratings_analysed"] == 0
    assert "debrief_strategy" in per_rater.columns
