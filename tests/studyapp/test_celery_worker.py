"""A task makes the round trip through a real worker process on the real Redis broker."""

import pytest
from django.db import connection

from studyapp.tasks import worker_environment_task


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_task_round_trip_through_a_real_worker(celery_worker_factory) -> None:
    celery_worker_factory(queues="default")
    result = worker_environment_task.delay().get(timeout=60)
    assert result["database_vendor"] == "postgresql"
    # The worker talks to the very database this test uses.
    assert result["database_name"] == connection.settings_dict["NAME"]
