"""Forms of the researcher panel."""

from __future__ import annotations

from django import forms
from django.forms.fields import InvalidJSONInput

from generation.safe_yaml import MAX_BYTES as SPEC_MAX_BYTES
from studyapp.studies.spec import unstorable_values


class SpecUploadForm(forms.Form):
    spec = forms.FileField(help_text="A study spec (YAML), e.g. studies/demo.yaml.")

    def clean_spec(self):
        upload = self.cleaned_data["spec"]
        if upload.size > SPEC_MAX_BYTES:
            raise forms.ValidationError(
                f"A spec is a short text file; this one is larger than {SPEC_MAX_BYTES // 1000} kB."
            )
        return upload


class StimulusExcludeForm(forms.Form):
    stimulus = forms.CharField(max_length=32, help_text="The stimulus token (the export's `stimulus` column).")
    reason = forms.CharField(max_length=500, help_text="Why it is excluded; recorded with it and exported.")


class StorableJSONField(forms.JSONField):
    """The admin's JSON fields: only what PostgreSQL's jsonb stores. JSON text may hold a NUL
    (``"\\u0000"``) or ``NaN``, which Python reads and jsonb refuses: a 500 on save before."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except (ValueError, RecursionError):
            # Not JSONDecodeError, so Django's field lets them through: a number of more than
            # 4,300 digits (Python's limit) or nesting deeper than the parser's recursion.
            raise forms.ValidationError(
                self.error_messages["invalid"], code="invalid", params={"value": value}
            ) from None

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except (ValueError, RecursionError):  # shown again as typed, like any other invalid JSON
            return InvalidJSONInput(data)

    def validate(self, value) -> None:
        super().validate(value)
        problems = [f"{path or 'the value'}: {problem}" for path, problem in unstorable_values(value, "")]
        if problems:
            raise forms.ValidationError("; ".join(problems))
