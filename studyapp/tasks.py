"""Celery tasks: thin shells that load rows by id, call a library function, store.

A task is named after what it runs, with ``_task`` added. Model libraries are imported
inside task bodies, never here: the web process imports this module to queue tasks and
must not load torch.
"""

import socket

from celery import shared_task
from django.db import connection


@shared_task
def worker_environment_task() -> dict[str, str]:
    """Tell which database a worker talks to: the smoke test of a deployment."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {
        "hostname": socket.gethostname(),
        "database_vendor": connection.vendor,
        "database_name": str(connection.settings_dict["NAME"]),
    }
