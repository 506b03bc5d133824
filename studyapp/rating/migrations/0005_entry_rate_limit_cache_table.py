"""Create the database cache table that entry rate limiting uses when no CACHE_URL is set."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # Idempotent: only the tables of database caches that do not exist yet are created.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [
        ("rating", "0004_participant_bound_to_prolific_session"),
    ]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
