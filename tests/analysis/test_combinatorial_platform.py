"""The cc_walk task family in the platform: shipped items, per-stimulus metrics, the report section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.combinatorial import CC_METRIC_COLUMNS, parse_cc_item
from analysis.metrics import stimulus_metrics
from analysis.report import write_report
from analysis.simulate import simulate_export
from generation.combinatorial.graphs import graph_from_triples
from generation.combinatorial.prompts import shortest_satisfying_length
from generation.task_families import get_task_family


def test_every_shipped_cc_walk_item_is_a_satisfiable_prompt():
    family = get_task_family("cc_walk")
    assert family.parser == "cc_walk" and len(family.items) >= 3
    for item in family.items:
        triples, prompt = parse_cc_item(item.text, prompt_id=item.key)
        graph = graph_from_triples(triples)
        assert shortest_satisfying_length(graph, prompt) > 0, item.key
        assert "{item}" not in family.render(item.text)
    assert family.parse("coffee > made_from > bean") == ["coffee", "made_from", "bean"]


def _cc_stimuli() -> pd.DataFrame:
    item = get_task_family("cc_walk").item("kitchen").text
    answers = [
        "coffee > made_from > bean > grows_on > plant > needs > water > contains > river > found_in > clay",
        "coffee > poured_into > cup > made_of > clay",  # uses an excluded relation
        "I would drink the coffee.",
        "coffee > made_from > clay",  # no such link
    ]
    return pd.DataFrame(
        {
            "text": [*answers, "a brick as a doorstop"],
            "task": ["cc_walk"] * 4 + ["task_task"],
            "item": ["kitchen"] * 4 + ["story"],
            "item_text": [item] * 4 + ["Write a story"],
            "condition": ["base", "base", "weight", "weight", "base"],
        }
    )


def test_stimulus_metrics_score_cc_walk_answers_from_their_item_text():
    metrics = stimulus_metrics(_cc_stimuli())
    assert metrics["cc_valid"].tolist()[:4] == [1.0, 1.0, 0.0, 0.0]
    # 5 steps; utility (1 + |I|)(1 + |X|) = 4 for the first answer only
    assert metrics["cc_utility"].tolist()[:4] == [4.0, 0.0, 0.0, 0.0]
    assert metrics["cc_novelty"].iloc[0] > 5 and metrics["cc_creativity"].iloc[0] == 4 * metrics["cc_novelty"].iloc[0]
    assert metrics.loc[4, CC_METRIC_COLUMNS].isna().all()  # not a cc_walk stimulus


def test_report_has_the_cc_walk_novelty_utility_section(tmp_path, hashing_embedder):
    ratings, stimuli = simulate_export(seed=2)
    cc = _cc_stimuli().iloc[:4].assign(stimulus=[f"cc{i}" for i in range(4)], deployment="cc")
    cc = pd.concat([cc, stimulus_metrics(cc)], axis=1)
    both = pd.concat([stimuli.assign(item_text=stimuli["item"]), cc], ignore_index=True)
    path = write_report(ratings, both, tmp_path / "r", embedder=hashing_embedder, n_boot=0)
    html = path.read_text()
    assert "Combinatorial creativity (cc_walk)" in html
    table = pd.read_csv(tmp_path / "r" / "cc_novelty_utility.csv")
    assert table.set_index("condition").loc["base", "cc_utility"] == pytest.approx(2.0)
    assert table.set_index("condition").loc["weight", "cc_utility"] == 0.0
    assert (tmp_path / "r" / "cc_novelty_utility.png").stat().st_size > 1000


def test_report_without_cc_walk_stimuli_has_no_such_section(tmp_path, hashing_embedder):
    ratings, stimuli = simulate_export(seed=2)
    html = write_report(ratings, stimuli, tmp_path / "r", embedder=hashing_embedder, n_boot=0).read_text()
    assert "cc_walk" not in html


@pytest.mark.slow
def test_cc_walk_runs_on_the_embedded_model_and_is_scored():
    from generation.pipeline import generate_samples
    from generation.types import ConditionSpec, DecodingSettings, SampleRequest

    family = get_task_family("cc_walk")
    requests = [SampleRequest(item.key, item.text, i, 11) for item in family.items for i in range(1)]
    samples = generate_samples(
        ConditionSpec(method="base", model="embedded"),
        family,
        requests,
        DecodingSettings(max_new_tokens=32, temperature=0.7),
        batch_size=3,
    )
    frame = pd.DataFrame(
        {
            "text": [s.text for s in samples],
            "task": "cc_walk",
            "item": [s.item_key for s in samples],
            "item_text": [family.item(s.item_key).text for s in samples],
        }
    )
    metrics = stimulus_metrics(frame)
    print(frame.assign(**metrics[CC_METRIC_COLUMNS]).to_string())
    assert len(metrics) == 3 and metrics[CC_METRIC_COLUMNS].notna().all().all()
    assert set(np.unique(metrics["cc_valid"])) <= {0.0, 1.0}
    assert (metrics["cc_creativity"] == metrics["cc_utility"] * metrics["cc_novelty"]).all()
