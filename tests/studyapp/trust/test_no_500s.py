"""Bad input that was a 500 (issue 21, item 5): integers beyond their column in a spec, two
simultaneous uploads of one new slug, a NUL in an admin list filter. Each is a listed error or
a 400 now, and nothing is half-stored."""

from __future__ import annotations

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse

from studyapp.studies.models import Deployment, Study
from studyapp.studies.spec import BIGINT_MAX, INTEGER_MAX, MINUTES_MAX
from tests.conftest import REPO_ROOT
from tests.factories import panel_user

DEMO = (REPO_ROOT / "studies" / "demo.yaml").read_text()


def _upload(client: Client, text: str):
    return client.post(
        reverse("admin:studies_study_load_spec"), {"spec": SimpleUploadedFile("spec.yaml", text.encode())}
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("original", "replaced", "problem"),
    [
        ("seed: 20260101", "seed: 99999999999999999999", f"seed: must be at most {BIGINT_MAX:,}"),
        (
            "  per_deployment: 12",
            "  per_deployment: 4294967296",
            f"raters.per_deployment: must be at most {INTEGER_MAX:,}",
        ),
        ("  slot_timeout_minutes: 30", "  slot_timeout_minutes: 2147483647", f"must be at most {MINUTES_MAX:,}"),
        ("  batch_size: ", "  batch_size: 1e400 #", "generation.batch_size: expected a whole number"),
    ],
)
def test_an_integer_beyond_its_column_is_a_listed_spec_error(client, original, replaced, problem) -> None:
    assert original in DEMO
    client.force_login(panel_user(username="researcher"))
    page = _upload(client, DEMO.replace(original, replaced, 1))
    assert page.status_code == 200
    assert problem in page.content.decode().split('class="errorlist"')[1]
    assert not Study.objects.exists()


def _uploads_at_once(clients: list[Client], spec: str) -> list[int]:
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def upload(client: Client) -> None:
        try:
            barrier.wait(timeout=30)
            statuses.append(_upload(client, spec).status_code)
        finally:
            connection.close()  # each thread's own connection

    threads = [threading.Thread(target=upload, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


@pytest.mark.django_db(transaction=True)
def test_simultaneous_uploads_of_one_new_slug_load_it_once() -> None:
    """The red team's IntegrityError came in 4 of 5 tries: five rounds of two uploads at once."""
    user = panel_user(username="researcher")
    clients = []
    for _ in range(2):
        client = Client(raise_request_exception=False)
        client.force_login(user)
        clients.append(client)
    for round_ in range(5):
        statuses = _uploads_at_once(clients, DEMO.replace("slug: demo", f"slug: race-{round_}"))
        assert statuses == [302, 302], statuses  # both to the dashboard: one loaded it, one found it loaded
        study = Study.objects.get(slug=f"race-{round_}")
        assert Deployment.objects.filter(study=study).count() == 3
        assert list(study.researchers.values_list("username", flat=True)) == ["researcher"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/admin/studies/generationjob/?status__exact=%00",
        "/admin/studies/study/?q=%00",
        "/admin/rating/participant/?step__exact=a%00b",
        "/panel/?x%00=1",
        "/r/some-study/?PROLIFIC_PID=%00",
    ],
)
def test_a_nul_in_the_query_is_a_400(url) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(panel_user(username="superuser", superuser=True))
    response = client.get(url)
    assert response.status_code == 400
    assert "Traceback" not in response.content.decode()


@pytest.fixture
def plain_server(transactional_db, tmp_path):
    from tests.conftest import _test_database_url
    from tests.studyapp.trust.servers import clean_env, start_gunicorn

    server = start_gunicorn(clean_env(DATABASE_URL=_test_database_url()), tmp_path / "gunicorn.log", workers=1)
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/r/any-study/-/consent/", "/admin/login/"])
def test_an_anonymous_post_over_the_cap_is_refused_before_its_body_is_read(plain_server, path) -> None:
    """Issue 21, item 9: an 87 MB multipart was spooled to disk before the CSRF check. Only the
    headers are sent here: the answer must come without waiting for the body."""
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(plain_server.url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {87 * 1024 * 1024}\r\nConnection: close\r\n\r\n--x\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 400"), answer[:300]
