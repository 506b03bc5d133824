"""What a study is: its spec, models, conditions, tasks, deployments, jobs and stimuli.

A study is loaded from a versioned YAML spec (``manage.py load_study``). A deployment
is the paper's unit: one model x one task x one steering method, comparing its steered
condition with ``base``. Generation runs one :class:`GenerationJob` per (deployment,
condition); each job writes :class:`Stimulus` rows, unique on (job, item, sample).
"""

# Django reads Meta lists once at class creation; they are configuration, not shared state.
# ruff: noqa: RUF012
from __future__ import annotations

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from generation.task_families import template_problem
from studyapp.studies import paths, vocabulary
from studyapp.studies.provenance import ProvenanceGuarded


def new_opaque_token() -> str:
    """A random token that reveals nothing (no id, no order, no condition).

    It starts with a letter or digit: a token starting ``-`` reads in a spreadsheet as a
    formula, so the CSV export marks it (``'-x``) and a plain ``pandas.read_csv`` of the
    ratings would then not match the same stimulus in the Parquet export.
    """
    while True:
        token = secrets.token_urlsafe(12)
        if token[0].isalnum():
            return token


class Study(ProvenanceGuarded, models.Model):
    # Every stimulus' seed and decoding derive from these (studies/provenance.py).
    provenance_fields = ("seed", "decoding")

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # The spec exactly as loaded, with its hash: every result traces back to it.
    spec = models.JSONField(default=dict)
    spec_version = models.CharField(max_length=32, blank=True)
    spec_sha256 = models.CharField(max_length=64, blank=True)
    researchers = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="studies", blank=True)

    seed = models.BigIntegerField(default=0)
    samples_per_item = models.PositiveIntegerField(default=1)
    # Mode collapse needs many samples per item, people need few: the rater design takes this
    # many of each item's samples (a seeded subset, the same indices for every condition).
    rated_samples_per_item = models.PositiveIntegerField(
        null=True, blank=True, help_text="Samples per item and condition that raters see; empty: all of them."
    )
    decoding = models.JSONField(default=dict, help_text="Decoding settings shared by all conditions.")
    # Changing the decoding before any slot exists starts a new round (generation_jobs.generation_round_start):
    # every text is generated again with it; earlier rounds' stimuli stay, with their own decoding,
    # but only this round's are screened, rated, scored and exported.
    generation_round = models.PositiveIntegerField(default=1)
    # Sequences generated together; progress is saved after each batch, so a smaller batch
    # loses less work when a worker dies and shows progress more often.
    generation_batch_size = models.PositiveIntegerField(default=16)

    raters_per_deployment = models.PositiveIntegerField(default=30)
    stimuli_per_rater = models.PositiveIntegerField(default=10)
    slot_timeout_minutes = models.PositiveIntegerField(default=30)
    # Until their first rating is saved a rater holds a slot only this long while silent:
    # made-up entries that only click "I agree" cannot keep real raters out.
    slot_hold_minutes = models.PositiveIntegerField(default=5)

    consent_text = models.TextField(blank=True)
    instructions_text = models.TextField(blank=True)
    debrief_questions = models.JSONField(default=list, blank=True)
    practice = models.JSONField(default=dict, blank=True, help_text="The practice item shown before rating.")

    attention_checks = models.JSONField(
        default=list, blank=True, help_text="Instructed-response items: position, text, expected response."
    )
    # None: failures are only flagged. K: the rater is screened out after K failures.
    attention_screen_out_after = models.PositiveIntegerField(null=True, blank=True)

    prolific_completion_code = models.CharField(max_length=64, blank=True)
    prolific_screen_out_code = models.CharField(max_length=64, blank=True)
    # The other endings of docs/rating.md: declined consent, and timed out after real work
    # (a partial-completion code: that rater's ratings are kept and flagged).
    prolific_no_consent_code = models.CharField(max_length=64, blank=True)
    prolific_timed_out_code = models.CharField(max_length=64, blank=True)
    # Below this a rating page counts as speeding (flagged, never refused); 0 turns it off.
    min_seconds_per_page = models.PositiveIntegerField(default=5)
    # The consent page's time estimate until the study has measured times of its own.
    expected_seconds_per_page = models.PositiveIntegerField(default=45)
    # New participations while on are pilot data: marked, and left out of the analysis by default.
    pilot_mode = models.BooleanField(default=False)
    # Empty: not checked. Set: an entry link's STUDY_ID must equal it.
    prolific_study_id = models.CharField(max_length=64, blank=True)
    is_open = models.BooleanField(default=False, help_text="Raters may enter only while the study is open.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.title or self.slug

    def fewest_stimuli_per_rater(self, study_default: int | None = None) -> int:
        """The fewest rating pages (stimuli) any rated deployment gives a rater: where a check that
        can screen out must come within the first half. ``study_default``: the study's number as
        edited (the admin's form), else the stored one."""
        default = study_default or self.stimuli_per_rater
        if self.pk is None:
            return default
        own = self.deployments.filter(automatic_only=False).values_list("stimuli_per_rater", flat=True)
        return min((n or default for n in own), default=default)

    def rater_pages_problems(self) -> dict[str, list[str]]:
        """What the spec's rules find wrong with the stored practice, attention checks and debrief."""
        from studyapp.studies.spec import rater_pages_check

        problems, _ = rater_pages_check(
            practice=self.practice,
            attention_checks=self.attention_checks,
            screen_out_after=self.attention_screen_out_after,
            debrief_questions=self.debrief_questions,
            per_rater=self.fewest_stimuli_per_rater(),
        )
        return problems

    def provenance_stimuli(self):
        # Seed and decoding made this round's stimuli; a new round may change them (a new round, new texts).
        return Stimulus.objects.filter(deployment__study=self, generation_round=self.generation_round)


class LanguageModel(ProvenanceGuarded, models.Model):
    provenance_fields = ("source",)

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="language_models")
    key = models.SlugField(max_length=64)
    source = models.CharField(max_length=500, help_text='"embedded", a Hugging Face model folder or a .gguf file.')
    # How the generation worker runs it (spec: models[].backend/device/dtype).
    backend = models.CharField(max_length=8, default="hf", help_text="hf (transformers) or vllm.")
    device = models.CharField(max_length=32, default="auto", help_text="auto, cpu, cuda or cuda:N.")
    dtype = models.CharField(max_length=16, default="auto", help_text="auto, float32, bfloat16 or float16.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="unique_model_key_per_study")]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        """The source is ``embedded`` or a path under MODEL_ROOTS (studies/paths.py), unless it is frozen."""
        if "source" in self.provenance_frozen():
            return
        problem = paths.model_source_problem(self.source)
        if problem:
            raise ValidationError({"source": problem})

    def provenance_stimuli(self):
        return Stimulus.objects.filter(condition__model=self)


class Condition(ProvenanceGuarded, models.Model):
    provenance_fields = ("method", "params", "model", "artifact_path")

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="conditions")
    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="conditions")
    key = models.SlugField(max_length=64)
    method = models.CharField(max_length=16, choices=vocabulary.METHOD_DESCRIPTIONS)
    # What analysis compares across models: "base", "weight", ... The key is unique per study
    # (e.g. "llama31-8b-base"); the label is shared by the same arm of every model's deployments.
    label = models.SlugField(max_length=64, blank=True, help_text="Arm name in the export; defaults to the method.")
    params = models.JSONField(default=dict, blank=True)
    # Given in the spec to reuse an artifact; otherwise filled when a job builds it.
    artifact_path = models.CharField(max_length=500, blank=True)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    artifact_manifest = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="unique_condition_key_per_study")]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        """``params.prompt_file`` under DATA_ROOTS, ``artifact_path`` under ARTIFACT_DIR/<study>
        (studies/paths.py); fields frozen by stimuli are not checked here (``provenance_frozen``)."""
        errors = {}
        frozen = self.provenance_frozen()
        prompt_file = (
            None
            if "params" in frozen
            else paths.prompt_file_problem(self.params.get("prompt_file") if isinstance(self.params, dict) else None)
        )
        if prompt_file:
            errors["params"] = f"prompt_file: {prompt_file}"
        if self.study_id is not None and "artifact_path" not in frozen:
            artifact = paths.artifact_path_problem(self.artifact_path, study_slug=self.study.slug)
            if artifact:
                errors["artifact_path"] = artifact
        if errors:
            raise ValidationError(errors)

    def provenance_stimuli(self):
        return Stimulus.objects.filter(condition=self)


class TaskFamily(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="task_families")
    key = models.SlugField(max_length=64, help_text='"dat", "aut", "task_task" or a researcher\'s own.')
    template = models.TextField(help_text="Prompt template; {item} is replaced by the item text.")
    # None keeps the model's own default system prompt (as generation.task_families does).
    system_prompt = models.TextField(null=True, blank=True)  # noqa: DJ001 (None differs from "")
    parser = models.CharField(max_length=32, blank=True, help_text='Output parser: "dat_words", "aut_uses" or none.')
    description = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "task families"
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="unique_task_key_per_study")]

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        """Only plain ``{item}`` is substituted (``generation.task_families.template_render``)."""
        problem = template_problem(self.template)
        if problem:
            raise ValidationError({"template": problem})


class Item(models.Model):
    task = models.ForeignKey(TaskFamily, on_delete=models.CASCADE, related_name="items")
    key = models.SlugField(max_length=64)
    text = models.TextField()

    class Meta:
        ordering = ["task", "key"]
        constraints = [models.UniqueConstraint(fields=["task", "key"], name="unique_item_key_per_task")]

    def __str__(self) -> str:
        return f"{self.task.key}:{self.key}"


class RatingDimension(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="dimensions")
    key = models.SlugField(max_length=64)
    question = models.CharField(max_length=300)
    scale = models.CharField(
        max_length=16,
        choices={name: scale.label for name, scale in vocabulary.SCALES.items()},
        default=vocabulary.SLIDER,
    )
    low_label = models.CharField(max_length=64, default="Not at all")
    high_label = models.CharField(max_length=64, default="Extremely")
    definition = models.TextField(blank=True, help_text="What the scale means, shown to raters.")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["study", "position"]
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="unique_dimension_key_per_study")]

    def __str__(self) -> str:
        return self.key

    @property
    def scale_range(self) -> tuple[int, int]:
        return vocabulary.SCALE_RANGES[self.scale]


class Deployment(models.Model):
    """One model x task x steering method; raters compare its steered condition with base."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="deployments")
    slug = models.SlugField(max_length=64)
    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="deployments")
    task = models.ForeignKey(TaskFamily, on_delete=models.CASCADE, related_name="deployments")
    conditions = models.ManyToManyField(Condition, related_name="deployments")
    samples_per_item = models.PositiveIntegerField(
        null=True, blank=True, help_text="Samples per item and condition; empty: the study's."
    )
    # The rater design of this deployment (spec: deployments[].raters); empty: the study's.
    raters_per_deployment = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the study's.")
    stimuli_per_rater = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the study's.")
    rated_samples_per_item = models.PositiveIntegerField(
        null=True, blank=True, help_text="Samples per item and condition that raters see; empty: the study's."
    )
    # A design in which every rater sees one item under two conditions is refused unless set.
    allow_paired_items = models.BooleanField(default=False)
    # Generated and scored, never rated: no slots, no entry link (the paper's DAT evaluation).
    automatic_only = models.BooleanField(default=False)
    # A text cut by max_new_tokens in the middle of a word is never rated unless this is set
    # (spec: deployments[].accept_truncation, or the dashboard's screening section).
    accept_truncation = models.BooleanField(default=False)

    class Meta:
        ordering = ["study", "slug"]
        constraints = [models.UniqueConstraint(fields=["study", "slug"], name="unique_deployment_slug_per_study")]

    def __str__(self) -> str:
        return self.slug

    @property
    def generated_samples_per_item(self) -> int:
        return self.samples_per_item or self.study.samples_per_item

    @property
    def raters_planned(self) -> int:
        return self.raters_per_deployment or self.study.raters_per_deployment

    @property
    def per_rater(self) -> int:
        return self.stimuli_per_rater or self.study.stimuli_per_rater

    @property
    def rated_samples(self) -> int | None:
        """Rated samples per item and condition; None: every generated sample."""
        return (
            self.rated_samples_per_item
            if self.rated_samples_per_item is not None
            else self.study.rated_samples_per_item
        )


class GenerationJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="jobs")
    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    tokens_per_second = models.FloatField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    celery_task_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    metrics_computed_at = models.DateTimeField(null=True, blank=True)
    metrics_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["deployment", "condition"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "condition"], name="one_job_per_deployment_condition")
        ]

    # Queued or running: a worker has it or will take it, so it is never queued a second time.
    BUSY = frozenset({Status.QUEUED, Status.RUNNING})

    def __str__(self) -> str:
        return f"{self.deployment.slug}/{self.condition.key}"

    @property
    def retryable(self) -> bool:
        """Offered a "Retry": a failed job (the others run, wait for a worker, or are done)."""
        return self.status == self.Status.FAILED


class StimulusQuerySet(models.QuerySet):
    def current(self) -> StimulusQuerySet:
        """The stimuli of their study's current generation round: what is screened, rated and exported."""
        return self.filter(generation_round=models.F("deployment__study__generation_round"))


class Stimulus(models.Model):
    """One generated response, traceable to the exact weights, seed and decoding settings."""

    token = models.CharField(max_length=32, unique=True, default=new_opaque_token, editable=False)
    # One id per generated text: a base sample copied into a twin deployment keeps it, so the
    # analysis counts the text once and can use it as the stimulus random effect.
    text_id = models.CharField(max_length=32, default=new_opaque_token, editable=False, db_index=True)
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="stimuli")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="stimuli")
    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="stimuli")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="stimuli")
    sample_index = models.PositiveIntegerField()
    prompt = models.TextField()
    text = models.TextField()
    seed = models.BigIntegerField()
    decoding = models.JSONField(default=dict)
    model_source = models.CharField(max_length=500)
    model_sha256 = models.CharField(max_length=64)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    n_new_tokens = models.PositiveIntegerField(default=0)
    # Screening (docs/generation.md, "Screening stimuli"): did the model end the response itself,
    # or did max_new_tokens cut it off (None: stored before this was recorded); its length in words.
    finished = models.BooleanField(null=True, blank=True)
    n_words = models.PositiveIntegerField(null=True, blank=True)
    # Cut by max_new_tokens right after a letter or digit: perhaps in the middle of a word
    # (generation_jobs.ends_mid_word); never rated unless the deployment accepts truncation.
    ends_mid_word = models.BooleanField(default=False)
    # The study's generation round that made it (Study.generation_round).
    generation_round = models.PositiveIntegerField(default=1)
    # A researcher may exclude a stimulus before slots are built; a replacement (new sample
    # index, hence a new seed) can be generated in its place.
    excluded_at = models.DateTimeField(null=True, blank=True)
    exclusion_reason = models.TextField(blank=True)
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replacements")
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = StimulusQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "stimuli"
        constraints = [
            models.UniqueConstraint(
                fields=["job", "generation_round", "item", "sample_index"],
                name="one_stimulus_per_job_round_item_sample",
            )
        ]
        indexes = [models.Index(fields=["deployment", "condition"])]

    def __str__(self) -> str:
        return self.token


class DiversityMetric(models.Model):
    """Diversity of one condition's samples for one item within a deployment (mode collapse)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="diversity")
    condition = models.ForeignKey(Condition, on_delete=models.CASCADE, related_name="diversity")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="diversity")
    n_samples = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "condition", "item"], name="one_diversity_row_per_deployment_condition_item"
            )
        ]

    def __str__(self) -> str:
        return f"{self.deployment_id}/{self.condition_id}/{self.item_id}"


class StudyReport(models.Model):
    """One run of analysis.write_report on the study's export; files live under var/reports/."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        READY = "ready"
        FAILED = "failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="reports")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    out_dir = models.CharField(max_length=500, blank=True)
    html_name = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    n_ratings = models.PositiveIntegerField(default=0)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"{self.study.slug} report {self.pk}"
