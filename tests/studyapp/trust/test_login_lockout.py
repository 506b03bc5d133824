"""Admin login throttling (issue 21, item 7): the red team sent 40 wrong passwords in 17 s and
then the right one logged in. Now a client network is locked out after AXES_FAILURE_LIMIT
failures (django-axes); a superuser sees the lockout in the admin and lifts it."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.factories import panel_user

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/"
PASSWORD = "a-long-researcher-passphrase"


def _login(client: Client, password: str):
    return client.post(LOGIN, {"username": "alice", "password": password, "next": "/admin/"})


@pytest.fixture
def alice():
    user = panel_user(username="alice")
    user.set_password(PASSWORD)
    user.save()
    return user


def test_forty_wrong_passwords_lock_the_network_out_and_the_right_one_is_refused(alice) -> None:
    attacker = Client(REMOTE_ADDR="203.0.113.50")
    statuses = [_login(attacker, f"guess-{n}").status_code for n in range(40)]
    limit = settings.AXES_FAILURE_LIMIT
    assert statuses[: limit - 1] == [200] * (limit - 1)  # the login form again, "please enter the correct…"
    assert set(statuses[limit:]) == {429}
    refused = _login(attacker, PASSWORD)
    assert refused.status_code == 429 and "Too many failed logins" in refused.content.decode()
    assert "_auth_user_id" not in attacker.session
    # Another network (a colleague) is not locked out; an IPv6 neighbour in the same /64 is.
    assert _login(Client(REMOTE_ADDR="198.51.100.7"), PASSWORD).status_code == 302
    ipv6 = [Client(REMOTE_ADDR=f"2001:db8:5:6::{n:x}") for n in range(1, limit + 2)]
    assert [_login(client, "wrong").status_code for client in ipv6][-1] == 429


def test_a_superuser_sees_the_lockout_and_lifts_it(alice) -> None:
    attacker = Client(REMOTE_ADDR="203.0.113.51")
    for n in range(settings.AXES_FAILURE_LIMIT):
        _login(attacker, f"guess-{n}")
    assert _login(attacker, PASSWORD).status_code == 429

    researcher = Client()
    researcher.force_login(panel_user(username="bob"))
    assert researcher.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403
    admin = Client()
    admin.force_login(panel_user(username="root", superuser=True))
    listing = admin.get(reverse("admin:axes_accessattempt_changelist"))
    assert listing.status_code == 200 and "203.0.113.51" in listing.content.decode()
    attempt = AccessAttempt.objects.get(ip_address="203.0.113.51")
    deleted = admin.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})
    assert deleted.status_code == 302
    assert _login(attacker, PASSWORD).status_code == 302  # lifted: the right password logs in
