"""Forms of the researcher panel."""

from __future__ import annotations

from django import forms


class SpecUploadForm(forms.Form):
    spec = forms.FileField(help_text="A study spec (YAML), e.g. studies/demo.yaml.")

    MAX_BYTES = 1_000_000

    def clean_spec(self):
        upload = self.cleaned_data["spec"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError("A spec is a short text file; this one is larger than 1 MB.")
        return upload


class StimulusExcludeForm(forms.Form):
    stimulus = forms.CharField(max_length=32, help_text="The stimulus token (the export's `stimulus` column).")
    reason = forms.CharField(max_length=500, help_text="Why it is excluded; recorded with it and exported.")


class DecodingRoundForm(forms.Form):
    """New decoding settings, applied as a new generation round (``generation_jobs.generation_round_start``)."""

    max_new_tokens = forms.IntegerField(min_value=1, max_value=100_000)
    temperature = forms.FloatField(min_value=0)
    top_p = forms.FloatField(min_value=0.001, max_value=1)
    do_sample = forms.BooleanField(required=False)

    def decoding(self) -> dict:
        return {name: self.cleaned_data[name] for name in ("max_new_tokens", "temperature", "top_p", "do_sample")}
