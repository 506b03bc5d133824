"""Who rates what: participants from Prolific, balanced slots, and their ratings.

Each deployment has a fixed set of :class:`Slot` rows, one per planned rater, each with
its ordered stimuli (:class:`SlotStimulus`), chosen so that every stimulus receives
exactly the target number of ratings once all slots are complete. A participant claims
the lowest free slot atomically; every rating is stored the moment it is submitted.
"""

# Django reads Meta lists once at class creation; they are configuration, not shared state.
# ruff: noqa: RUF012

from __future__ import annotations

from django.conf import settings
from django.db import models

from studyapp.studies.models import Deployment, RatingDimension, Stimulus, Study, new_opaque_token


class Participant(models.Model):
    class Step(models.TextChoices):
        CONSENT = "consent"
        INSTRUCTIONS = "instructions"
        PRACTICE = "practice"
        RATING = "rating"
        DEBRIEF = "debrief"
        COMPLETE = "complete"
        DECLINED = "declined"
        SCREENED_OUT = "screened_out"
        STUDY_FULL = "study_full"
        # Silent past the study's timeout: the slot went to someone else; ratings are kept.
        TIMED_OUT = "timed_out"
        # Withdrawn by the researchers while still rating (rating/withdrawal.py); ratings kept, marked.
        WITHDRAWN = "withdrawn"

    token = models.CharField(max_length=32, unique=True, default=new_opaque_token, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="participants")
    # Set when the participant entered through a deployment's own link.
    pinned_deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, null=True, blank=True, related_name="pinned_participants"
    )
    # The deployment of the slot they were given, set at the claim and kept when the slot goes
    # back to the pool (timed out, screened out, withdrawn): the dashboard counts them there.
    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, null=True, blank=True, related_name="participants"
    )
    prolific_pid = models.CharField(max_length=64)
    prolific_study_id = models.CharField(max_length=64, blank=True)
    prolific_session_id = models.CharField(max_length=64, blank=True)
    step = models.CharField(max_length=16, choices=Step.choices, default=Step.CONSENT)
    attention_failures = models.PositiveIntegerField(default=0)
    pilot = models.BooleanField(default=False, help_text="Entered while the study ran in pilot mode.")
    debrief = models.JSONField(default=dict, blank=True)
    flags = models.JSONField(default=list, blank=True)
    # When each step was reached: {step: ISO time}, written with every change of ``step``
    # (the participants export's ``<step>_at`` columns).
    step_times = models.JSONField(default=dict, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    # Driven by `manage.py simulate_raters`, never a person: exported as `simulated`.
    simulated = models.BooleanField(default=False)
    # Withdrawn (rating/withdrawal.py): the participation and its ratings stay, marked, and the
    # analysis leaves them out; the slot went back to the pool or is counted short.
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawal_reason = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # A Prolific session is one attempt: another SESSION_ID for the same PID is a new,
            # flagged participation, never a way into someone else's (see docs/trust.md).
            models.UniqueConstraint(
                fields=["study", "prolific_pid", "prolific_session_id"], name="one_participation_per_prolific_session"
            )
        ]

    def __str__(self) -> str:
        return self.token


class Slot(models.Model):
    class Status(models.TextChoices):
        FREE = "free"
        ACTIVE = "active"
        COMPLETE = "complete"
        # Its rater was withdrawn and the researcher chose not to give it out again: the design
        # is short of this slot's ratings, and the dashboard says so.
        SHORT = "short"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="slots")
    index = models.PositiveIntegerField()
    # A pilot rater's slot: a copy of one design slot's plan, made when the pilot rater consents,
    # outside the balanced design (docs/rating.md, "Rater experience and Prolific operations",
    # pilot mode). Pilot slots have their own indices.
    pilot = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.FREE)
    # RESTRICT: a participant is deleted only by rating.withdrawal.participant_delete, which first
    # gives their slots back, so no slot is ever left active or complete without its rater.
    participant = models.ForeignKey(Participant, on_delete=models.RESTRICT, null=True, blank=True, related_name="slots")
    claimed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    times_released = models.PositiveIntegerField(default=0)
    stimuli = models.ManyToManyField(Stimulus, through="SlotStimulus", related_name="slots")

    class Meta:
        ordering = ["deployment", "index"]
        constraints = [models.UniqueConstraint(fields=["deployment", "pilot", "index"], name="unique_slot_index")]
        indexes = [models.Index(fields=["deployment", "status", "index"])]

    def __str__(self) -> str:
        return f"{self.deployment.slug}#{'pilot-' if self.pilot else ''}{self.index}"


class SlotStimulus(models.Model):
    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="planned")
    stimulus = models.ForeignKey(Stimulus, on_delete=models.CASCADE, related_name="planned_in")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["slot", "position"]
        constraints = [
            models.UniqueConstraint(fields=["slot", "position"], name="unique_slot_position"),
            models.UniqueConstraint(fields=["slot", "stimulus"], name="stimulus_once_per_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.slot_id}@{self.position}"


class Rating(models.Model):
    # RESTRICT: ratings never vanish with a participant by accident (rating.withdrawal.participant_delete).
    participant = models.ForeignKey(Participant, on_delete=models.RESTRICT, related_name="ratings")
    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="ratings")
    stimulus = models.ForeignKey(Stimulus, on_delete=models.CASCADE, related_name="ratings")
    dimension = models.ForeignKey(RatingDimension, on_delete=models.CASCADE, related_name="ratings")
    score = models.FloatField()
    page_index = models.PositiveIntegerField(help_text="Position of the page in this rater's sequence.")
    dimension_position = models.PositiveIntegerField(default=0, help_text="Position of the dimension on the page.")
    seconds_on_page = models.FloatField(null=True, blank=True)
    # Clicks on "Save and continue" that the page held back for being faster than the study's
    # minimum time per page (counted by the page's script, sent with the answer): speeding.
    held_back = models.PositiveSmallIntegerField(default=0)
    pilot = models.BooleanField(default=False, help_text="Given by a pilot participant.")
    withdrawn = models.BooleanField(default=False, help_text="Its rater was withdrawn: kept, left out of the analysis.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "stimulus", "dimension"], name="one_rating_per_participant_stimulus_dimension"
            )
        ]

    def __str__(self) -> str:
        return f"{self.participant_id}:{self.stimulus_id}:{self.dimension_id}"


class AttentionCheckResponse(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="attention_checks")
    check_index = models.PositiveIntegerField()
    page_index = models.PositiveIntegerField()
    response = models.CharField(max_length=200)
    passed = models.BooleanField()
    held_back = models.PositiveSmallIntegerField(default=0)  # as Rating.held_back
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["participant", "check_index"], name="one_response_per_attention_check")
        ]

    def __str__(self) -> str:
        return f"{self.participant_id}:check{self.check_index}"


class DeploymentLink(models.Model):
    """The opaque entry link of one deployment.

    A deployment's slug is written by researchers and often names the model and the method
    ("llama-aut-activation"); a rater sees the link they open, so the pinned Prolific link
    carries this random token instead.
    """

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="rater_link")
    token = models.CharField(max_length=32, unique=True, default=new_opaque_token, editable=False)

    def __str__(self) -> str:
        return self.token


class ParticipantDeletion(models.Model):
    """The log of deleted participations (a data-protection request): who, when, why, what went.

    Only the opaque token is kept, never the Prolific ids: the record says that a deletion
    happened without keeping what was deleted.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="participant_deletions")
    participant_token = models.CharField(max_length=32)
    deleted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    deleted_at = models.DateTimeField(auto_now_add=True)
    reason = models.TextField()
    ratings_deleted = models.PositiveIntegerField(default=0)
    slots_returned = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-deleted_at"]

    def __str__(self) -> str:
        return f"{self.participant_token} deleted {self.deleted_at:%Y-%m-%d}"


class BonusPayment(models.Model):
    """The ledger of bonuses paid through Prolific: one row per participant per bulk payment.

    Prolific's pay call is not idempotent, so a bonus is written here (``paid_at`` empty) before
    it is paid and marked paid after: a participant listed here is not paid again unless the
    researcher says so (``manage.py prolific bonuses --again``).
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="bonus_payments")
    # Kept when the participation is deleted (a data-protection request): the ledger keeps the money.
    participant = models.ForeignKey(
        Participant, on_delete=models.SET_NULL, null=True, blank=True, related_name="bonus_payments"
    )
    amount = models.DecimalField(max_digits=8, decimal_places=2)
    bulk_payment_id = models.CharField(max_length=64)
    set_up_at = models.DateTimeField(auto_now_add=True)
    # Empty: set up on Prolific, but the pay call did not confirm (check on Prolific before paying again).
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["set_up_at", "pk"]

    def __str__(self) -> str:
        return f"{self.participant_id}: {self.amount} ({self.bulk_payment_id})"
