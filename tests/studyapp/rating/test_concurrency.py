"""Slot claims under real concurrency on PostgreSQL: no slot given twice, none lost."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from studyapp.rating.models import Participant, Slot
from studyapp.rating.services import participant_consent, slot_claim
from tests.factories import ParticipantFactory
from tests.studyapp.rating.helpers import build_rating_study

N_SLOTS = 20
N_THREADS = 32


def _run_at_once(target, args_list):
    barrier = threading.Barrier(len(args_list))
    errors: list[BaseException] = []

    def run(args):
        try:
            barrier.wait(timeout=30)
            target(*args)
        except BaseException as error:  # reported by the assertion below, never swallowed
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(args,)) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_many_raters_claiming_at_once_get_distinct_slots_lowest_first():
    built = build_rating_study(n_items=10, raters=N_SLOTS, per_rater=4)
    participants = [ParticipantFactory(study=built.study) for _ in range(N_THREADS)]
    results: dict[int, int | None] = {}
    lock = threading.Lock()

    def claim(participant):
        slot = slot_claim(participant=participant)
        with lock:
            results[participant.pk] = slot.index if slot else None

    _run_at_once(claim, [(p,) for p in participants])

    claimed = [index for index in results.values() if index is not None]
    assert len(results) == N_THREADS
    assert sorted(claimed) == list(range(N_SLOTS))  # none twice, none lost
    assert list(results.values()).count(None) == N_THREADS - N_SLOTS
    slots = Slot.objects.filter(deployment=built.deployments[0])
    assert all(slot.status == Slot.Status.ACTIVE for slot in slots)
    assert len({slot.participant_id for slot in slots}) == N_SLOTS


@pytest.mark.django_db(transaction=True)
def test_concurrent_consents_fill_two_deployments_evenly_and_a_double_click_claims_once():
    built = build_rating_study(n_deployments=2, n_items=4, raters=8, per_rater=4)
    participants = [ParticipantFactory(study=built.study) for _ in range(12)]
    # Each participant clicks "I agree" twice, from two threads.
    _run_at_once(lambda p: participant_consent(participant=p, agree=True), [(p,) for p in participants] * 2)

    per_participant = Counter(Slot.objects.exclude(participant=None).values_list("participant_id", flat=True))
    assert set(per_participant.values()) == {1}
    assert len(per_participant) == 12
    per_deployment = Counter(Slot.objects.exclude(participant=None).values_list("deployment__slug", flat=True))
    assert sorted(per_deployment.values()) == [6, 6]
    indexes = sorted(Slot.objects.exclude(participant=None).values_list("index", flat=True))
    assert indexes == sorted([i for i in range(6)] * 2)
    assert Participant.objects.filter(step=Participant.Step.INSTRUCTIONS).count() == 12


@pytest.mark.django_db
def test_the_claim_locks_with_skip_locked_lowest_index_first():
    from django.test.utils import CaptureQueriesContext

    built = build_rating_study()
    with CaptureQueriesContext(connection) as queries:
        slot = slot_claim(participant=ParticipantFactory(study=built.study))
    assert slot.index == 0
    claim_sql = next(q["sql"] for q in queries.captured_queries if "SKIP LOCKED" in q["sql"])
    assert 'FOR UPDATE OF "rating_slot" SKIP LOCKED' in claim_sql
    assert 'ORDER BY "rating_slot"."index" ASC' in claim_sql
