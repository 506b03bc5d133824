"""Automatic metrics: the stimulus_metrics / diversity_by_group interface, AUT, mode-collapse measures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis.aut import score_aut
from analysis.diversity import bootstrap_by, distinct_n, near_duplicate_clusters, vendi_score
from analysis.metrics import METRIC_COLUMNS, diversity_by_group, diversity_summary, stimulus_metrics
from analysis.parsers import parse_aut_uses
from tests.conftest import REPO_ROOT

SEVEN = "1. thimble\n2. ocean\n3. justice\n4. spoon\n5. volcano\n6. tree\n7. idea"


@pytest.fixture
def stimuli() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stimulus": ["s1", "s2", "s3", "s4", "s5"],
            "condition": ["base", "weight", "base", "weight", "base"],
            "task": ["dat", "dat", "aut", "aut", "task_task"],
            "item": ["dat", "dat", "item03", "item03", "story"],
            "item_text": ["", "", "brick", "brick", "a story"],
            "text": [SEVEN, "cat\ncat\ncat", "- build a wall\n- Build a wall.\n- paperweight", "", "Once upon a time"],
        },
        index=[10, 11, 12, 13, 14],
    )


def test_stimulus_metrics_interface(stimuli, hashing_embedder):
    words = {"thimble", "ocean", "justice", "spoon", "volcano", "tree", "idea", "cat"}
    m = stimulus_metrics(stimuli, embedder=hashing_embedder, word_list=words)
    assert list(m.columns) == METRIC_COLUMNS
    assert m.index.equals(stimuli.index)
    assert m.attrs["embedding"] == "hashing-test"
    # DAT rows: one valid answer (7 distinct one-word texts hash to near-orthogonal vectors), one invalid.
    assert m.loc[10, "dat_valid"] and m.loc[10, "dat_n_valid"] == 7 and m.loc[10, "dat_score"] > 80
    assert not m.loc[11, "dat_valid"] and m.loc[11, "dat_n_valid"] == 1 and np.isnan(m.loc[11, "dat_score"])
    # Not-applicable metrics are NaN / NA.
    assert m.loc[12:14, ["dat_score", "dat_n_valid"]].isna().all().all() and m.loc[12:14, "dat_valid"].isna().all()
    assert m.loc[[10, 11, 14], ["aut_fluency", "aut_originality", "aut_elaboration"]].isna().all().all()
    # AUT: "build a wall" twice is one use after near-duplicate merging.
    assert m.loc[12, "aut_fluency"] == 2 and m.loc[12, "aut_elaboration"] == pytest.approx(2.0)
    assert m.loc[13, "aut_fluency"] == 0
    # Originality is the distance from the item TEXT ("brick"), not from its key ("item03").
    assert m.loc[12, "aut_originality"] == pytest.approx(
        score_aut([stimuli.loc[12, "text"]], item_texts=["brick"], embedder=hashing_embedder).loc[0, "aut_originality"]
    )
    assert m["n_words"].tolist() == [7, 3, 7, 0, 4]


def test_stimulus_metrics_needs_its_columns(stimuli, hashing_embedder):
    with pytest.raises(ValueError, match="'text'"):
        stimulus_metrics(stimuli.drop(columns="text"), embedder=hashing_embedder)


def test_aut_originality_is_distance_from_the_object(hashing_embedder):
    out = score_aut(
        ["- brick wall\n- brick", "- a tiny moon telescope"], item_texts=["brick", "brick"], embedder=hashing_embedder
    )
    assert out.loc[1, "aut_originality"] > out.loc[0, "aut_originality"]
    assert parse_aut_uses("Use it as a doorstop. Grind it into pigment; build a wall") == [
        "Use it as a doorstop",
        "Grind it into pigment",
        "build a wall",
    ]


def test_vendi_and_clusters_on_known_matrices():
    assert vendi_score(np.ones((4, 4))) == pytest.approx(1.0)
    assert vendi_score(np.eye(4)) == pytest.approx(4.0)
    block = np.kron(np.eye(2), np.ones((2, 2)))  # two pairs of identical items
    assert vendi_score(block) == pytest.approx(2.0)
    assert near_duplicate_clusters(block) == 2
    assert distinct_n(["a b a b"], 1) == pytest.approx(0.5)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)


def test_diversity_by_group(hashing_embedder):
    stimuli = pd.DataFrame(
        {
            "condition": ["base"] * 3 + ["weight"] * 3,
            "item": ["dat"] * 6,
            "task": ["dat"] * 6,
            "text": ["cat, dog"] * 3 + ["cat, dog", "ocean, spoon", "tree, idea"],
        }
    )
    div = diversity_by_group(
        stimuli, embedder=hashing_embedder, word_list={"cat", "dog", "ocean", "spoon", "tree", "idea"}
    )
    base, weight = div.iloc[0], div.iloc[1]
    assert base["mean_pairwise_similarity"] == pytest.approx(1.0) and base["share_pairs_similar"] == 1.0
    assert base["vendi_score"] == pytest.approx(1.0) and base["n_clusters"] == 1
    assert base["dat_distinct_word_share"] == pytest.approx(2 / 6)
    assert weight["vendi_score"] > 2.5 and weight["n_clusters"] == 3
    assert weight["dat_distinct_word_share"] == pytest.approx(1.0)


def test_bootstrap_ci_by_item():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"condition": ["a"] * 30 + ["b"] * 30, "item": list(range(30)) * 2})
    table["m"] = np.r_[rng.normal(0, 1, 30), rng.normal(3, 1, 30)]
    out = bootstrap_by(table, metrics=["m"], n_boot=500)
    a, b = out.iloc[0], out.iloc[1]
    assert a["ci_low"] < a["estimate"] < a["ci_high"] and a["ci_high"] < b["ci_low"]
    assert a["n_units"] == 30
    assert set(diversity_summary(table.assign(vendi_score=table["m"]))["metric"]) == {"vendi_score"}


def test_importing_analysis_does_not_load_torch():
    probe = (
        "import sys, analysis, analysis.metrics, analysis.mixed, analysis.report\n"
        "print('torch' in sys.modules or 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_embedded_minilm_end_to_end(stimuli):
    """The default embedder: the packaged MiniLM, loaded offline, once."""
    from analysis.embeddings import default_embedder

    m = stimulus_metrics(stimuli)
    assert m.attrs["embedding"] == "all-MiniLM-L6-v2"
    assert m.loc[10, "dat_valid"] and 50 < m.loc[10, "dat_score"] < 110
    assert m.loc[12, "aut_fluency"] == 2
    vec = default_embedder().encode(["a brick", "a brick"])
    assert vec.shape == (2, 384) and np.allclose(vec[0], vec[1])
    assert default_embedder() is default_embedder()


def test_default_embedder_follows_embedding_model_path(monkeypatch, tmp_path) -> None:
    from analysis.embeddings import default_embedder

    default_embedder.cache_clear()
    monkeypatch.setenv("EMBEDDING_MODEL_PATH", str(tmp_path / "my-model"))
    try:
        assert default_embedder().name == "sentence-transformers:my-model"
        default_embedder.cache_clear()
        monkeypatch.delenv("EMBEDDING_MODEL_PATH")
        assert default_embedder().name == "all-MiniLM-L6-v2"
    finally:
        default_embedder.cache_clear()


def test_aut_originality_without_the_item_text_is_nan_with_a_warning_naming_the_column(hashing_embedder) -> None:
    from analysis.notices import ItemTextWarning

    aut = pd.DataFrame(
        {"text": ["1. doorstop\n2. paperweight", "1. hammer"], "task": ["aut", "aut"], "item": ["i0", "i0"]}
    )
    with pytest.warns(ItemTextWarning, match="'item_text'") as caught:
        out = stimulus_metrics(aut, embedder=hashing_embedder)
    # The warning points at the caller of stimulus_metrics, not at the library's inside.
    assert caught[0].filename == __file__
    assert out["aut_originality"].isna().all() and out["aut_fluency"].tolist() == [2.0, 1.0]
