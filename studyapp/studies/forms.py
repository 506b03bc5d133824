"""Forms of the researcher panel."""

from __future__ import annotations

from django import forms

from generation.safe_yaml import MAX_BYTES as SPEC_MAX_BYTES


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
