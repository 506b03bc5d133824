"""Debrief questions and the practice item in the one form the spec loader now writes.

Studies loaded before stored the spec's debrief entries as given: a plain string, or a
mapping spelled with ``text`` or ``question``, ``options`` or ``choices``, ``type`` or
``kind``; and the practice response as ``text`` or ``response``. The rater pages now read
only ``{key, question, type, options, required}`` and ``practice.text``.
"""

from django.db import migrations


def _one_form(index, entry):
    if not isinstance(entry, dict):
        entry = {"question": str(entry)}
    options = [str(option) for option in (entry.get("options") or entry.get("choices") or [])]
    kind = entry.get("type") or entry.get("kind") or ("choice" if options else "text")
    return {
        "key": str(entry.get("key") or f"q{index + 1}"),
        "question": str(entry.get("question") or entry.get("text") or ""),
        "type": kind if kind in {"text", "choice", "number"} else "text",
        "options": options,
        "required": bool(entry.get("required", False)),
    }


def forwards(apps, schema_editor):
    Study = apps.get_model("studies", "Study")
    for study in Study.objects.all():
        study.debrief_questions = [_one_form(i, entry) for i, entry in enumerate(study.debrief_questions or [])]
        practice = study.practice if isinstance(study.practice, dict) else {}
        if "response" in practice:
            practice.setdefault("text", practice.pop("response"))
        study.practice = practice
        study.save(update_fields=["debrief_questions", "practice"])


class Migration(migrations.Migration):
    dependencies = [("studies", "0010_study_rater_quality_endings_pilot")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
