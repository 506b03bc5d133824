"""Participant.simulated: participations driven by manage.py simulate_raters."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rating", "0002_deployment_link"),
    ]

    operations = [
        migrations.AddField(
            model_name="participant",
            name="simulated",
            field=models.BooleanField(default=False),
        ),
    ]
