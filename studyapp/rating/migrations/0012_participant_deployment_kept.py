"""Each participant keeps the deployment of the slot they were given.

A slot whose rater timed out, was screened out or withdrawn goes back to the pool with no
participant, so counting raters through slots lost them (the dashboard showed a deployment
with 0 screened out while the study had 1). Participants stored before: the deployment of the
slot they hold, else of the slot their ratings were saved in, else the one they were pinned to.
"""

import django.db.models.deletion
from django.db import migrations, models


def forwards(apps, schema_editor):
    Participant = apps.get_model("rating", "Participant")
    Slot = apps.get_model("rating", "Slot")
    Rating = apps.get_model("rating", "Rating")
    found = dict(Participant.objects.filter(pinned_deployment__isnull=False).values_list("pk", "pinned_deployment_id"))
    found.update(Rating.objects.values_list("participant_id", "slot__deployment_id").distinct())
    found.update(Slot.objects.filter(participant__isnull=False).values_list("participant_id", "deployment_id"))
    by_deployment = {}
    for participant_id, deployment_id in found.items():
        by_deployment.setdefault(deployment_id, []).append(participant_id)
    for deployment_id, participant_ids in by_deployment.items():
        Participant.objects.filter(pk__in=participant_ids).update(deployment_id=deployment_id)


class Migration(migrations.Migration):
    dependencies = [
        ("rating", "0011_bonus_ledger"),
        ("studies", "0013_rater_design_per_deployment"),
    ]

    operations = [
        migrations.AddField(
            model_name="participant",
            name="deployment",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="participants",
                to="studies.deployment",
            ),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
