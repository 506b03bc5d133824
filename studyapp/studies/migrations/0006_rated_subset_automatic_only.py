"""Many samples for the metrics, a rated subset for people; deployments without raters."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0005_stimulus_text_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="rated_samples_per_item",
            field=models.PositiveIntegerField(
                blank=True, help_text="Samples per item and condition that raters see; empty: all of them.", null=True
            ),
        ),
        migrations.AddField(
            model_name="deployment",
            name="samples_per_item",
            field=models.PositiveIntegerField(
                blank=True, help_text="Samples per item and condition; empty: the study's.", null=True
            ),
        ),
        migrations.AddField(
            model_name="deployment",
            name="automatic_only",
            field=models.BooleanField(default=False),
        ),
    ]
