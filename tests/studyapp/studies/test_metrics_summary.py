"""The per-condition summary of automatic metrics (dashboard and `manage.py demo`)."""

import pytest
from django.urls import reverse

from studyapp.studies.metrics import SUMMARY_METRICS, automatic_metrics_by_condition
from studyapp.studies.models import DiversityMetric
from tests.factories import ConditionFactory, GenerationJobFactory, ItemFactory, ResearcherFactory, StimulusFactory


@pytest.mark.django_db
def test_means_per_condition_average_group_metrics_over_items(client) -> None:
    base_job = GenerationJobFactory(condition__method="base", condition__key="base")
    deployment = base_job.deployment
    steered = ConditionFactory(study=deployment.study, model=deployment.model, key="weight", method="weight")
    steered_job = GenerationJobFactory(deployment=deployment, condition=steered)
    items = [ItemFactory(task=deployment.task) for _ in range(2)]
    for job, fluencies in ((base_job, [2, 4, 6, 8]), (steered_job, [5, 5, 7, 7])):
        for index, fluency in enumerate(fluencies):
            StimulusFactory(job=job, item=items[index % 2], metrics={"aut_fluency": fluency, "dat_score": None})
    # Item 0 has two samples per condition, item 1 two: a group metric per (condition, item).
    for item, similarity in zip(items, (0.9, 0.5), strict=True):
        DiversityMetric.objects.create(
            deployment=deployment,
            condition=base_job.condition,
            item=item,
            metrics={"mean_pairwise_similarity": similarity},
        )

    rows = {row["condition"]: row for row in automatic_metrics_by_condition(study=deployment.study)}
    assert rows["base"]["n_stimuli"] == 4
    assert rows["base"]["metrics"]["aut_fluency"] == pytest.approx(5.0)
    assert rows["weight"]["metrics"]["aut_fluency"] == pytest.approx(6.0)
    assert rows["base"]["metrics"]["group_mean_pairwise_similarity"] == pytest.approx(0.7)
    # Not computed for the steered condition, not applicable to the AUT: absent, not zero.
    assert "group_mean_pairwise_similarity" not in rows["weight"]["metrics"]
    assert "dat_score" not in rows["base"]["metrics"]
    assert len(rows["base"]["values"]) == len(SUMMARY_METRICS)

    researcher = ResearcherFactory()
    deployment.study.researchers.add(researcher)
    client.force_login(researcher)
    page = client.get(reverse("studies:dashboard", args=[deployment.study.slug])).content.decode()
    assert "Automatic metrics per condition" in page and "0.700" in page
