"""Stimulus.text_id: one id per generated text, shared by the copies of a base text in twin deployments."""

from django.db import migrations, models

import studyapp.studies.models


def fill_text_ids(apps, schema_editor) -> None:
    # A copy made by _stimuli_copy_from_twins has the same condition, item, sample, seed and
    # text as its original: those rows get one id; every other row its own.
    Stimulus = apps.get_model("studies", "Stimulus")
    ids: dict[tuple, str] = {}
    rows = Stimulus.objects.order_by("pk").only("pk", "condition_id", "item_id", "sample_index", "seed", "text")
    changed = []
    for stimulus in rows.iterator(chunk_size=2000):
        key = (stimulus.condition_id, stimulus.item_id, stimulus.sample_index, stimulus.seed, stimulus.text)
        stimulus.text_id = ids.setdefault(key, studyapp.studies.models.new_opaque_token())
        changed.append(stimulus)
    Stimulus.objects.bulk_update(changed, ["text_id"], batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0004_job_metrics_error"),
    ]

    operations = [
        migrations.AddField(
            model_name="stimulus",
            name="text_id",
            field=models.CharField(default="", editable=False, max_length=32),
            preserve_default=False,
        ),
        migrations.RunPython(fill_text_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="stimulus",
            name="text_id",
            field=models.CharField(
                db_index=True, default=studyapp.studies.models.new_opaque_token, editable=False, max_length=32
            ),
        ),
    ]
