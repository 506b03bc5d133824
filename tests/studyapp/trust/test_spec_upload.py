"""Spec upload never touches, nor reveals, a study the uploader is not a researcher of (issue 11, item 1)."""

from __future__ import annotations

import html

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from studyapp.studies.models import Study
from studyapp.studies.study_loading import SLUG_UNAVAILABLE, StudyLoadError, study_load
from tests.conftest import REPO_ROOT
from tests.factories import StimulusFactory, StudyFactory, panel_user

DEMO = (REPO_ROOT / "studies" / "demo.yaml").read_text()
pytestmark = pytest.mark.django_db


def _upload(client, text: str, name: str = "spec.yaml"):
    return client.post(reverse("admin:studies_study_load_spec"), {"spec": SimpleUploadedFile(name, text.encode())})


def _spec_for(slug: str, title: str = "Takeover") -> str:
    return DEMO.replace("slug: demo", f"slug: {slug}").replace(
        'title: "Demo: steering a small model toward divergent thinking"', f"title: {title}"
    )


@pytest.fixture
def two_teams():
    team_a = StudyFactory(slug="team-a", title="Team A's study", spec_sha256="a" * 64)
    team_b = StudyFactory(slug="team-b", title="Team B's study")
    return {
        "a": team_a,
        "b": team_b,
        "researcher_a": panel_user(username="alice", study=team_a),
        "researcher_b": panel_user(username="bob", study=team_b),
    }


@pytest.mark.parametrize("has_data", [False, True], ids=["empty", "with-stimuli"])
def test_upload_with_another_teams_slug_changes_nothing_and_says_the_same(client, two_teams, has_data) -> None:
    study_a = two_teams["a"]
    if has_data:
        StimulusFactory(job__deployment__study=study_a)
    client.force_login(two_teams["researcher_b"])
    page = _upload(client, _spec_for("team-a"))
    assert page.status_code == 200
    text = page.content.decode()
    assert SLUG_UNAVAILABLE.format(slug="team-a") in html.unescape(text)
    # Nothing about A leaks: not its title, not whether it has data.
    problems = html.unescape(text.split("errorlist")[1].split("</ul>")[0])
    assert "Team A" not in problems and "stimuli" not in problems and "participants" not in problems
    assert "Team A" not in text
    study_a.refresh_from_db()
    assert study_a.title == "Team A's study" and study_a.spec_sha256 == "a" * 64
    assert list(study_a.researchers.values_list("username", flat=True)) == ["alice"]


def test_refusal_for_an_existing_slug_reads_like_a_reserved_one(client, two_teams) -> None:
    """The same words for 'another team has it' and any other slug the uploader may not use."""
    client.force_login(two_teams["researcher_b"])
    taken = _upload(client, _spec_for("team-a")).content.decode()
    reserved = _upload(client, _spec_for("admin")).content.decode()
    assert SLUG_UNAVAILABLE.format(slug="team-a") in html.unescape(taken)
    assert SLUG_UNAVAILABLE.format(slug="admin") in html.unescape(reserved)
    assert not Study.objects.filter(slug="admin").exists()


def test_same_spec_again_by_an_outsider_does_not_make_them_a_researcher(two_teams) -> None:
    study, _ = study_load(content=_spec_for("shared"), acting_user=two_teams["researcher_a"])
    with pytest.raises(StudyLoadError) as refused:
        study_load(content=_spec_for("shared"), acting_user=two_teams["researcher_b"])
    assert str(refused.value).endswith(SLUG_UNAVAILABLE.format(slug="shared"))
    assert list(study.researchers.values_list("username", flat=True)) == ["alice"]


def test_own_study_reloads_and_a_new_slug_loads(client, two_teams) -> None:
    client.force_login(two_teams["researcher_b"])
    response = _upload(client, _spec_for("brand-new"))
    assert response.status_code == 302
    assert list(Study.objects.get(slug="brand-new").researchers.values_list("username", flat=True)) == ["bob"]
    response = _upload(client, _spec_for("brand-new", title="Renamed"))
    assert response.status_code == 302
    assert Study.objects.get(slug="brand-new").title == "Renamed"


def test_superuser_may_load_over_any_study(client, two_teams) -> None:
    client.force_login(panel_user(username="root", superuser=True))
    assert _upload(client, _spec_for("team-a", title="Replaced")).status_code == 302
    assert Study.objects.get(slug="team-a").title == "Replaced"
