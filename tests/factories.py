"""factory_boy factories for the platform's models, and the personas tests speak of.

Personas (healthchecks style), each a function named after who it is:
:func:`researcher_of` (staff, member of the study), :func:`other_team_researcher` (staff,
member of no study given), :func:`non_staff_user` (logged in, not staff: a rater's kind of
account), :func:`superuser`; :func:`personas` gives the admin-scoping set at once.
Builders: :func:`study_with_ratings` (a rated design with raters, ratings and checks).
"""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from studyapp.rating import models as rating
from studyapp.rating.models import AttentionCheckResponse
from studyapp.studies import models as studies
from studyapp.studies.models import GenerationJob, Study


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")
    password = factory.django.Password("correct horse battery staple")


class ResearcherFactory(UserFactory):
    is_staff = True


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = studies.Study

    slug = factory.Sequence(lambda n: f"study-{n}")
    title = factory.Sequence(lambda n: f"Study {n}")
    consent_text = "You are invited to rate short texts. Participation is voluntary."
    instructions_text = "Read each response and rate it on every scale."
    prolific_completion_code = "C0MPL3TE"
    prolific_screen_out_code = "SCR33N"
    raters_per_deployment = 4
    stimuli_per_rater = 4
    is_open = True


class LanguageModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = studies.LanguageModel

    study = factory.SubFactory(StudyFactory)
    key = factory.Sequence(lambda n: f"model-{n}")
    source = "embedded"


class ConditionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = studies.Condition

    study = factory.SelfAttribute("model.study")
    model = factory.SubFactory(LanguageModelFactory)
    key = factory.Sequence(lambda n: f"condition-{n}")
    method = "base"


class TaskFamilyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = studies.TaskFamily

    study = factory.SubFactory(StudyFactory)
    key = "aut"
    template = "List creative uses for a {item}."


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = studies.Item

    task = factory.SubFactory(TaskFamilyFactory)
    key = factory.Sequence(lambda n: f"item-{n}")
    text = factory.Sequence(lambda n: f"object {n}")


class RatingDimensionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = studies.RatingDimension

    study = factory.SubFactory(StudyFactory)
    key = factory.Iterator(["originality", "surprise", "creativity"])
    question = factory.LazyAttribute(lambda d: f"How {d.key} is this response?")
    position = factory.Sequence(int)


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = studies.Deployment

    study = factory.SubFactory(StudyFactory)
    slug = factory.Sequence(lambda n: f"deployment-{n}")
    model = factory.SubFactory(LanguageModelFactory, study=factory.SelfAttribute("..study"))
    task = factory.SubFactory(TaskFamilyFactory, study=factory.SelfAttribute("..study"))


class GenerationJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = studies.GenerationJob

    deployment = factory.SubFactory(DeploymentFactory)
    condition = factory.SubFactory(
        ConditionFactory,
        study=factory.SelfAttribute("..deployment.study"),
        model=factory.SelfAttribute("..deployment.model"),
    )


class StimulusFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = studies.Stimulus

    job = factory.SubFactory(GenerationJobFactory)
    deployment = factory.SelfAttribute("job.deployment")
    condition = factory.SelfAttribute("job.condition")
    item = factory.SubFactory(ItemFactory, task=factory.SelfAttribute("..job.deployment.task"))
    sample_index = factory.Sequence(int)
    prompt = factory.LazyAttribute(lambda s: s.item.task.template.format(item=s.item.text))
    text = factory.Sequence(lambda n: f"Use it as a doorstop, variant {n}.")
    seed = 0
    decoding = factory.LazyFunction(lambda: {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 128})
    model_source = "embedded"
    model_sha256 = "0" * 64


class ParticipantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = rating.Participant

    study = factory.SubFactory(StudyFactory)
    prolific_pid = factory.Sequence(lambda n: f"5f{n:022d}")
    prolific_study_id = "study-on-prolific"
    prolific_session_id = factory.Sequence(lambda n: f"session-{n}")


# --- Appended by the studies (researcher side) tests ----------------------------------------


class SlotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = rating.Slot

    deployment = factory.SubFactory(DeploymentFactory)
    index = factory.Sequence(int)


class RatingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = rating.Rating

    participant = factory.SubFactory(ParticipantFactory)
    slot = factory.SubFactory(SlotFactory)
    stimulus = factory.SubFactory(StimulusFactory)
    dimension = factory.SubFactory(RatingDimensionFactory)
    score = 50.0
    page_index = 0
    seconds_on_page = 12.5


# --- Personas of the trust tests (issue 11) ----------------------------------------------


def panel_user(*, username: str, study=None, staff: bool = True, superuser: bool = False):
    """A user with every admin permission of the studies and rating apps (as a researchers' group
    would give), researcher of ``study`` when one is given: what a persona may do is then
    decided by the study scoping alone, not by missing model permissions."""
    from django.contrib.auth.models import Permission

    user = UserFactory(username=username, is_staff=staff, is_superuser=superuser)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["studies", "rating"]))
    if study is not None:
        study.researchers.add(user)
    return user


def personas(*, study, other_study) -> dict:
    """``researcher`` of ``study``; ``other_researcher`` of ``other_study`` only; ``non_staff``
    (a logged-in user who is not staff, with the same permissions); ``superuser``."""
    return {
        "researcher": panel_user(username="researcher", study=study),
        "other_researcher": panel_user(username="other-researcher", study=other_study),
        "non_staff": panel_user(username="non-staff", study=study, staff=False),
        "superuser": panel_user(username="superuser", superuser=True),
    }


def researcher_of(study, *, username: str = "researcher"):
    """A staff user who is a researcher of ``study`` (no admin model permissions)."""
    user = ResearcherFactory(username=username)
    study.researchers.add(user)
    return user


def other_team_researcher(*, username: str = "other_researcher"):
    """A staff user of another team: a researcher of none of the studies a test built."""
    return ResearcherFactory(username=username)


def non_staff_user(*, username: str = "rater-ish"):
    """Logged in, but not staff: the researcher panel answers 403."""
    return UserFactory(username=username)


def superuser(*, username: str = "boss"):
    return UserFactory(username=username, is_staff=True, is_superuser=True)


# --- Builders ------------------------------------------------------------------------------


def study_with_ratings(*, n_deployments: int, raters_per_deployment: int, items: int = 2, samples: int = 2) -> Study:
    """A study with rated stimuli: deployments x (base, steered) x items x samples, every rater rating everything."""
    study = StudyFactory()
    dimensions = [RatingDimensionFactory(study=study, key=key) for key in ("originality", "surprise")]
    task = TaskFamilyFactory(study=study)
    task_items = [ItemFactory(task=task) for _ in range(items)]
    for d in range(n_deployments):
        model = LanguageModelFactory(study=study)
        base = ConditionFactory(study=study, model=model, method="base")
        steered = ConditionFactory(study=study, model=model, method="weight", params={"rho": 0.1})
        deployment = DeploymentFactory(study=study, model=model, task=task, slug=f"dep-{d}")
        deployment.conditions.set([base, steered])
        stimuli = []
        for condition in (base, steered):
            job = GenerationJob.objects.create(
                deployment=deployment, condition=condition, status="succeeded", total=items * samples
            )
            for item in task_items:
                for index in range(samples):
                    stimuli.append(
                        StimulusFactory(
                            job=job, item=item, sample_index=index, metrics={"n_words": 5.0, "aut_fluency": 2.0}
                        )
                    )
        for r in range(raters_per_deployment):
            participant = ParticipantFactory(
                study=study, deployment=deployment, step="complete" if r % 2 == 0 else "rating"
            )
            slot = SlotFactory(deployment=deployment, index=r, participant=participant, status="active")
            for page, stimulus in enumerate(stimuli[::2][:3]):  # both conditions
                for position, dimension in enumerate(dimensions):
                    RatingFactory(
                        participant=participant,
                        slot=slot,
                        stimulus=stimulus,
                        dimension=dimension,
                        # Varied but deterministic, so a mixed model has variance to estimate.
                        score=float((37 * r + 53 * page + 29 * position + 11 * d + 17 * len(stimulus.token)) % 101),
                        page_index=page,
                        dimension_position=position,
                        seconds_on_page=5.0 + page,
                    )
            AttentionCheckResponse.objects.create(
                participant=participant, check_index=0, page_index=2, response="100", passed=r % 3 != 0
            )
    return study
