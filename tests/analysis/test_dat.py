"""DAT scoring on a hand-made vector file, with hand-computed scores and every validity rule."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.dat import DatScorer, build_dat_norms, clean_word, dat_percentile, load_dat_norms
from analysis.embeddings import WordVectors, load_word_list
from tests.conftest import REPO_ROOT

# 8-dimensional vectors chosen so that cosine distances are easy by hand:
# one-hot vectors are at distance 1 from each other, "dog" points the same way as
# "cat" (distance 0), "kitten" is at 60 degrees from "cat" (distance 0.5).
VECTORS = {
    "cat": [1, 0, 0, 0, 0, 0, 0, 0],
    "dog": [2, 0, 0, 0, 0, 0, 0, 0],
    "kitten": [0.5, math.sqrt(3) / 2, 0, 0, 0, 0, 0, 0],
    "thimble": [0, 1, 0, 0, 0, 0, 0, 0],
    "ocean": [0, 0, 1, 0, 0, 0, 0, 0],
    "justice": [0, 0, 0, 1, 0, 0, 0, 0],
    "spoon": [0, 0, 0, 0, 1, 0, 0, 0],
    "volcano": [0, 0, 0, 0, 0, 1, 0, 0],
    "tree": [0, 0, 0, 0, 0, 0, 1, 0],
    "idea": [0, 0, 0, 0, 0, 0, 0, 1],
    "cul-de-sac": [0, 0, 0, 0, 0, 0, 1, 1],
    "tophat": [0, 0, 0, 0, 0, 1, 1, 0],
    "zebra": [0, 0, 0, 1, 1, 0, 0, 0],  # has a vector but is not in the dictionary below
}
DICTIONARY = [
    *(w for w in VECTORS if w != "zebra"),
    "unicorn",  # in the dictionary, no vector
    "Aaron",  # proper noun: the published pattern drops it
    "cat's",  # possessive: dropped too
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    vec = tmp_path / "vectors.txt"
    lines = ["13 8"]  # a word2vec header: must be skipped
    lines += [w + " " + " ".join(f"{x:.10f}" for x in v) for w, v in VECTORS.items()]
    lines.append("Aaron " + " ".join(["1"] * 8))
    lines.append("tree name@domain.com " + " ".join(["1"] * 8))  # a GloVe 840B token with a space
    vec.write_text("\n".join(lines) + "\n")
    words = tmp_path / "words.txt"
    words.write_text("\n".join(DICTIONARY) + "\n")
    return words, vec


@pytest.fixture
def scorer(files: tuple[Path, Path]) -> DatScorer:
    words, vec = files
    return DatScorer(vec, words)


def test_word_list_uses_the_published_pattern(files):
    words = load_word_list(files[0])
    assert "Aaron" not in words and "cat's" not in words and "cul-de-sac" in words


def test_vectors_are_filtered_to_the_word_list_while_loading(scorer):
    assert isinstance(scorer.embedding, WordVectors)
    assert "zebra" not in scorer.embedding and "Aaron" not in scorer.embedding
    assert len(scorer.embedding) == 12


def test_seven_orthogonal_words_score_100(scorer):
    r = scorer.score(["thimble", "ocean", "justice", "spoon", "volcano", "tree", "idea"])
    assert r.score == pytest.approx(100.0)
    assert r.n_valid == 7


def test_parallel_pair_scores_hand_computed(scorer):
    # cat-dog distance 0; the other 20 pairs distance 1 -> 100 * 20/21
    r = scorer.score(["cat", "dog", "ocean", "justice", "spoon", "volcano", "tree"])
    assert r.score == pytest.approx(100 * 20 / 21)


def test_sixty_degrees_scores_hand_computed(scorer):
    # cat-kitten 0.5, kitten-thimble 1 - cos 30° = 1 - sqrt(3)/2, cat-thimble 1, rest 1.
    words = ["cat", "kitten", "thimble", "ocean", "justice", "spoon", "volcano"]
    expected = 100 * (0.5 + (1 - math.sqrt(3) / 2) + 19) / 21
    assert scorer.score(words).score == pytest.approx(expected)


def test_only_the_first_seven_valid_words_count(scorer):
    base = ["cat", "dog", "ocean", "justice", "spoon", "volcano", "tree"]
    assert scorer.score([*base, "idea", "thimble"]).score == pytest.approx(100 * 20 / 21)
    assert scorer.score([*base, "idea"]).n_valid == 8


def test_validity_rules(scorer):
    assert clean_word("  CAT!! ") == "cat"
    assert clean_word("a") is None and clean_word("I.") is None
    assert scorer.validate("Cat") == "cat"
    assert scorer.validate("c4t") is None  # "ct": not a word
    assert scorer.validate("cul de sac") == "cul-de-sac"  # hyphenated form first
    assert scorer.validate("top hat") == "tophat"  # then the joined form
    assert scorer.validate("top-hat") == "tophat"
    assert scorer.validate("zebra") is None  # vector but not in the dictionary
    assert scorer.validate("unicorn") is None  # dictionary but no vector
    assert scorer.validate("Aaron") is None


def test_duplicates_and_invalid_words_leave_too_few(scorer):
    r = scorer.score(["cat", "Cat", "CAT!", "dog", "zebra", "unicorn", "x", "ocean", "spoon", "justice"])
    assert r.score is None
    assert r.valid_words == ["cat", "dog", "ocean", "spoon", "justice"]
    assert r.n_valid == 5
    assert r.invalid_words == ["zebra", "unicorn", "x"]


def test_score_texts_counts_invalid_answers(scorer):
    table = scorer.score_texts(
        ["1. thimble\n2. ocean\n3. justice\n4. spoon\n5. volcano\n6. tree\n7. idea", "cat, cat, cat", ""]
    )
    assert table["dat_valid"].tolist() == [True, False, False]
    assert table["dat_n_valid"].tolist() == [7, 1, 0]
    assert table["dat_score"].iloc[0] == pytest.approx(100.0)
    assert np.isnan(table["dat_score"].iloc[1])
    assert table.attrs["embedding"] == "word-vectors:vectors.txt"


def test_a_file_named_like_glove_is_not_the_reference(tmp_path, files):
    words, vec = files
    glove = tmp_path / "glove.840B.300d.txt"
    glove.write_text(vec.read_text())
    seven = ["thimble", "ocean", "justice", "spoon", "volcano", "tree", "idea"]
    assert DatScorer(vec, words).score(seven).percentile is None
    named = DatScorer(glove, words)
    assert not named.is_reference and "300" in named.embedding.reference_check
    assert named.score(seven).percentile is None
    assert "dat_percentile" not in DatScorer(vec, words).score_texts(["cat"]).columns


def test_norms_shipped_and_built(tmp_path):
    norms = load_dat_norms()
    assert "Olson" in norms.attrs["source"]
    assert dat_percentile(78.0, norms) == pytest.approx(50.0, abs=0.5)
    built = build_dat_norms(np.random.default_rng(0).normal(70, 5, 500), out=tmp_path / "n.csv")
    assert dat_percentile(70.0, load_dat_norms(tmp_path / "n.csv")) == pytest.approx(50, abs=5)
    assert built["score"].is_monotonic_increasing
    with pytest.raises(ValueError, match="at least 20"):
        build_dat_norms([70.0])


def _cli(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, "-m", "analysis", *args], cwd=cwd, capture_output=True, text=True)


def test_cli_dat_json_and_batch(files, tmp_path):
    words, vec = files
    r = _cli(
        "dat",
        "--words-file",
        str(words),
        "--vectors",
        str(vec),
        "--json",
        "cat",
        "dog",
        "ocean",
        "justice",
        "spoon",
        "volcano",
        "tree",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["score"] == pytest.approx(100 * 20 / 21)
    assert out["n_valid"] == 7 and out["embedding"] == "word-vectors:vectors.txt"
    assert set(out) == {"score", "valid_words", "n_valid", "embedding"}

    batch = tmp_path / "answers.jsonl"
    batch.write_text(
        '{"id": 1, "text": "cat\\ndog"}\n'
        '{"id": 2, "words": ["thimble","ocean","justice","spoon","volcano","tree","idea"]}\n'
    )
    r = _cli("dat", "--words-file", str(words), "--vectors", str(vec), "--batch", str(batch))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert rows[0]["id"] == 1 and rows[0]["score"] is None and rows[0]["n_valid"] == 2
    assert rows[1]["score"] == pytest.approx(100.0)
    batch.write_text('{"response": "thimble, ocean, justice, spoon, volcano, tree, idea"}\n')
    r = _cli("dat", "--words-file", str(words), "--vectors", str(vec), "--batch", str(batch), "--text-key", "response")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["score"] == pytest.approx(100.0)


def test_cli_dat_errors_are_one_line(files):
    words, _ = files
    r = _cli("dat", "--words-file", str(words), "--vectors", "/nonexistent.txt", "cat")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "vector file not found" in r.stderr
    r = _cli("dat", "--vectors", "x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
