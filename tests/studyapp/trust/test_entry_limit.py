"""The entry limit per address (issue 21, item 1): IPv6 counted by /64, and exact under real
concurrency on every cache backend the platform offers (its database table, Redis)."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest
import requests
from django.test import Client

from studyapp.addresses import client_network
from studyapp.rating.models import Participant
from tests.conftest import _test_database_url
from tests.studyapp.rating.helpers import Bot, build_rating_study, text_of
from tests.studyapp.trust.servers import clean_env, start_gunicorn

LIMIT = 20


def test_an_ipv6_address_counts_by_its_64_network() -> None:
    assert client_network("2001:db8:1:2::1") == client_network("2001:db8:1:2:ffff:ffff:ffff:fffe") == "2001:db8:1:2::"
    assert client_network("2001:db8:1:3::1") != client_network("2001:db8:1:2::1")
    assert client_network("::ffff:203.0.113.7") == client_network("203.0.113.7") == "203.0.113.7"
    assert client_network("fe80::1%eth0") == "fe80::"
    assert client_network("not an address") is None


@pytest.mark.django_db
def test_addresses_of_one_ipv6_network_share_one_limit(settings) -> None:
    settings.ENTRY_RATE_LIMIT_PER_HOUR = 2
    built = build_rating_study(raters=8, per_rater=4, n_items=8)
    network = f"2001:db8:{secrets.randbelow(0xFFFF):x}:7"
    hosts = [f"{network}::{n + 1:x}" for n in range(3)]
    bots = [
        Bot(Client(REMOTE_ADDR=host), built.study.slug, f"5f00000000000000000f100{n}") for n, host in enumerate(hosts)
    ]
    assert [bot.step_name(bot.follow(bot.enter())) for bot in bots[:2]] == ["consent", "consent"]
    refused = bots[2].enter()
    assert refused.status_code == 429 and "Too many" in text_of(refused)
    neighbour = Bot(Client(REMOTE_ADDR=f"{network[:-1]}8::1"), built.study.slug, "5f00000000000000000f1009")
    assert neighbour.step_name(neighbour.follow(neighbour.enter())) == "consent"


def _redis_cache_url() -> str:
    from django.conf import settings

    return settings.CELERY_BROKER_URL  # the suite's Redis; entry keys never meet Celery's


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cache", ["database", "redis"])
def test_concurrent_entries_from_one_network_pass_exactly_the_limit(cache: str, tmp_path: Path) -> None:
    """Forty new entries at once, from forty addresses of one /64, through gunicorn: twenty pass."""
    built = build_rating_study(raters=4, per_rater=4)
    env = clean_env(
        DATABASE_URL=_test_database_url(),
        LOG_LEVEL="WARNING",
        ENTRY_RATE_LIMIT_PER_HOUR=str(LIMIT),
        USE_X_FORWARDED_FOR="1",  # lets the test speak from addresses nobody else used this hour
        **({"CACHE_URL": _redis_cache_url()} if cache == "redis" else {}),
    )
    server = start_gunicorn(env, tmp_path / "gunicorn.log", workers=4, threads=4)
    network = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}"
    start = threading.Barrier(2 * LIMIT)
    statuses: list[int] = []

    def enter(n: int) -> None:
        query = {"PROLIFIC_PID": f"concurrent{n:04d}", "STUDY_ID": "s", "SESSION_ID": f"s{n}"}
        headers = {"X-Forwarded-For": f"{network}::{n + 1:x}"}
        start.wait(timeout=30)
        answer = requests.get(
            f"{server.url}/r/{built.study.slug}/", params=query, headers=headers, timeout=60, allow_redirects=False
        )
        statuses.append(answer.status_code)

    try:
        threads = [threading.Thread(target=enter, args=(n,)) for n in range(2 * LIMIT)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
    finally:
        server.stop()
    assert sorted(statuses) == [302] * LIMIT + [429] * LIMIT, server.log()
    assert Participant.objects.count() == LIMIT
