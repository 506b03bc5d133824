import pytest

from tests.factories import DeploymentFactory, StimulusFactory


@pytest.mark.django_db
def test_a_stimulus_belongs_to_one_consistent_study() -> None:
    stimulus = StimulusFactory()
    study = stimulus.deployment.study
    assert stimulus.condition.study == study
    assert stimulus.item.task.study == study
    assert stimulus.job.deployment == stimulus.deployment
    deployment = DeploymentFactory()
    assert deployment.model.study == deployment.task.study == deployment.study
