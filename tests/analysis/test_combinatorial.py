"""Walk scoring of the combinatorial-creativity task, on hand-built graphs worked out by hand."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis.cli import main
from analysis.combinatorial import (
    Prompt,
    WalkScorer,
    Weights,
    mean_ci_over_prompts,
    parse_cc_item,
    parse_walk_text,
    per_prompt,
    render_cc_item,
    score_cc_walk_texts,
)

# A triangle A-B-C with a tail C-D. Labels: x on A-B and A-C, y on B-C, z on C-D.
# Graph label frequencies: w(x) = 2/4, w(y) = 1/4, w(z) = 1/4.
TRIPLES = [("A", "x", "B"), ("B", "y", "C"), ("A", "x", "C"), ("C", "z", "D")]
LN2, LN4 = math.log(2), math.log(4)


def _score(walks, prompts, **kwargs):
    return WalkScorer(TRIPLES, **kwargs).score(walks, prompts)


def test_a_satisfying_walk_scores_utility_times_novelty():
    prompt = Prompt("p", "A", "D", include=("y",))
    row = _score([["A", "x", "B", "y", "C", "z", "D"]], [prompt]).iloc[0]
    # h = 3; S = (-ln 1/2 - ln 1/4 - ln 1/4) / 3 = 5 ln2 / 3; N = h + S.
    novelty = 3 + (LN2 + LN4 + LN4) / 3
    # U = (1 + |I|)(1 + |X|) = 2 * 1.
    assert bool(row.valid) and bool(row.satisfies)
    assert row.length == 3
    assert row.novelty == pytest.approx(novelty)
    assert row.utility == pytest.approx(2.0)
    assert row.creativity == pytest.approx(2.0 * novelty)


def test_constraint_failures_keep_novelty_but_zero_utility():
    prompt = Prompt("p", "A", "D", include=("y",), exclude=("w",))
    walks = [
        ["A", "x", "C", "z", "D"],  # valid, reaches D, but never uses y
        ["A", "x", "B", "y", "C"],  # valid, uses y, ends at C not D
        ["B", "y", "C", "z", "D"],  # valid, starts at B not A
    ]
    scores = _score(walks, [prompt] * 3)
    assert scores["valid"].all()
    assert not scores["satisfies"].any()
    assert scores["utility"].tolist() == [0.0, 0.0, 0.0]
    assert scores["novelty"].tolist() == pytest.approx([2 + (LN2 + LN4) / 2, 2 + (LN2 + LN4) / 2, 2 + (LN4 + LN4) / 2])
    assert scores["creativity"].tolist() == [0.0, 0.0, 0.0]


def test_an_excluded_label_zeroes_utility():
    prompt = Prompt("p", "A", "D", exclude=("y",))
    scores = _score([["A", "x", "B", "y", "C", "z", "D"], ["A", "x", "C", "z", "D"]], [prompt] * 2)
    assert scores["utility"].tolist() == [0.0, 2.0]  # (1 + 0)(1 + |X| = 1)


def test_invalid_walks_have_no_utility_and_no_novelty():
    prompt = Prompt("p", "A", "D")
    walks = [
        ["A", "y", "C", "z", "D"],  # A-C exists but carries x, not y
        ["A", "x", "D"],  # no edge A-D
        ["A", "x", "Q", "z", "D"],  # Q is no concept
        ["A", "q", "B"],  # q is no label
        ["A", "x"],  # ends on a label: not a walk
        [],
        ["A", "x", "A"],  # a loop is not an edge of a simple graph
    ]
    scores = _score(walks, [prompt] * len(walks))
    assert not scores["valid"].any()
    assert (scores["utility"] == 0).all() and (scores["novelty"] == 0).all() and (scores["creativity"] == 0).all()


# Why walks fail: the first that applies of WALK_ERRORS, in its order (by kind, not by
# position in the walk), on TRIPLES. Prompt: A to D, must use y, must not use w.
FAILING_WALKS = [
    ([], "unknown_concept"),  # no concept at all
    (["A", "x"], "unknown_concept"),  # ends on a label: its last concept is missing
    (["A", "x", "Q"], "unknown_concept"),  # Q is no concept
    (["x", "x", "B"], "unknown_concept"),  # a label where a concept belongs
    (["A", "y", "D", "x", "Q"], "unknown_concept"),  # comes first though the first step is no edge
    (["A", "y", "D"], "not_an_edge"),  # no edge A-D
    (["A", "x", "A"], "not_an_edge"),  # a loop is no edge of a simple graph
    (["A", "y", "B", "x", "D"], "not_an_edge"),  # B-D is no edge; comes before A-B's wrong label
    (["A", "y", "B"], "wrong_label"),  # A-B carries x
    (["A", "q", "B"], "wrong_label"),  # q is no label
    (["B", "x", "C"], "wrong_label"),  # B-C carries y
    (["B", "y", "C", "z", "D"], "wrong_start"),  # valid; starts at B
    (["B", "y", "C"], "wrong_start"),  # valid; wrong start and end: the start comes first
    (["A", "x", "B", "y", "C"], "wrong_end"),  # valid, from A, ends at C
    (["A", "x", "C", "z", "D"], "missing_inclusion"),  # never uses y
    (["A", "x", "B", "y", "C", "z", "D"], None),  # meets everything
]


@pytest.mark.parametrize("edge_table", [True, False])
def test_each_failing_walk_is_given_the_first_failure_in_the_stated_order(monkeypatch, edge_table):
    import analysis.combinatorial as combinatorial

    if not edge_table:  # the look-ups of graphs too large for the dense table
        monkeypatch.setattr(combinatorial, "_DENSE_EDGE_TABLE_MAX", 0)
    prompt = Prompt("p", "A", "D", include=("y",), exclude=("w",))
    walks = [walk for walk, _ in FAILING_WALKS]
    scores = _score(walks, [prompt] * len(walks))
    errors = scores["error"].astype(object).where(scores["error"].notna(), None).tolist()
    assert errors == [error for _, error in FAILING_WALKS]
    forbidding_x = Prompt("q", "A", "D", include=("y",), exclude=("x",))
    row = _score([["A", "x", "B", "y", "C", "z", "D"]], [forbidding_x]).iloc[0]
    assert row.error == "used_exclusion" and bool(row.valid)
    assert list(scores["error"].cat.categories) == list(combinatorial.WALK_ERRORS)


def test_edges_are_undirected_and_revisits_allowed():
    prompt = Prompt("p", "D", "B", include=("x",))
    walk = ["D", "z", "C", "x", "A", "x", "C", "y", "B"]  # walks C-A-C: a walk, not a path
    row = _score([walk], [prompt]).iloc[0]
    assert bool(row.satisfies)
    assert row.novelty == pytest.approx(4 + (LN4 + LN2 + LN2 + LN4) / 4)


def test_surprise_comes_from_the_training_counts_with_weights():
    # Training saw x once and y once, z never: w(x) = w(y) = 1/2, z gets 1 / (2 + 1).
    counts = {"x": 1, "y": 1}
    weights = Weights(alpha_h=2.0, alpha_r=0.5, alpha_include=3.0, alpha_exclude=0.25)
    prompt = Prompt("p", "A", "D", include=("y",), exclude=("w",))
    row = _score([["A", "x", "B", "y", "C", "z", "D"]], [prompt], train_label_counts=counts, weights=weights).iloc[0]
    surprise = (LN2 + LN2 + math.log(3)) / 3
    assert row.novelty == pytest.approx(2.0 * 3 + 0.5 * surprise)
    assert row.utility == pytest.approx((1 + 3.0 * 1) * (1 + 0.25 * 1))


def test_a_single_concept_walk_has_length_zero():
    row = _score([["A"]], [Prompt("p", "A", "A")]).iloc[0]
    assert bool(row.valid) and row.length == 0 and row.novelty == 0.0 and row.utility == 1.0


def test_creativity_is_the_mean_of_u_times_n_per_prompt_then_over_prompts():
    p, q = Prompt("p", "A", "D", include=("y",)), Prompt("q", "A", "C")
    walks = [["A", "x", "B", "y", "C", "z", "D"], ["A", "x", "C", "z", "D"], ["A", "x", "C"], ["A", "y", "C"]]
    scores = _score(walks, [p, p, q, q])
    scores.insert(0, "prompt_id", ["p", "p", "q", "q"])
    table = per_prompt(scores).set_index("prompt_id")
    c_p = (2 * (3 + (LN2 + LN4 + LN4) / 3) + 0) / 2
    c_q = ((1 + LN2) + 0) / 2
    assert table.loc["p", "creativity"] == pytest.approx(c_p)
    assert table.loc["q", "creativity"] == pytest.approx(c_q)
    assert table.loc["q", "valid"] == pytest.approx(0.5)
    summary = mean_ci_over_prompts(scores)
    assert summary["creativity"] == pytest.approx((c_p + c_q) / 2)
    assert summary["creativity_ci_low"] < summary["creativity"] < summary["creativity_ci_high"]


# The paper's step condition, v_t in N(v_(t-1), l_t): the concepts joined to v by an edge
# labelled l, written out by hand for TRIPLES (undirected, so both directions).
NEIGHBOURS = {
    ("A", "x"): {"B", "C"},
    ("B", "x"): {"A"},
    ("B", "y"): {"C"},
    ("C", "x"): {"A"},
    ("C", "y"): {"B"},
    ("C", "z"): {"D"},
    ("D", "z"): {"C"},
}


def test_a_step_is_valid_exactly_when_it_lands_in_the_labelled_neighbourhood():
    concepts, labels = "ABCD", "xyz"
    steps = [[v, lab, w] for v in concepts for lab in labels for w in concepts]
    scores = _score(steps, [Prompt("p", "A", "A")] * len(steps))
    expected = [w in NEIGHBOURS.get((v, lab), set()) for v, lab, w in steps]
    assert scores["valid"].tolist() == expected
    assert sum(expected) == 8  # 4 undirected edges, each walkable both ways


def test_a_prompt_cannot_both_require_and_forbid_a_label():
    with pytest.raises(ValueError, match="both included and excluded: x"):
        Prompt("p", "A", "D", include=("x", "y"), exclude=("x",))


def test_creativity_is_the_expectation_of_the_product_not_the_product_of_expectations():
    # One prompt, two walks: a useful short one and a useless long one.
    prompt = Prompt("p", "A", "C", include=("x",))
    walks = [["A", "x", "C"], ["A", "x", "B", "y", "C", "z", "D"]]
    scores = _score(walks, [prompt] * 2)
    n_short, n_long = 1 + LN2, 3 + (LN2 + LN4 + LN4) / 3
    assert scores["utility"].tolist() == [2.0, 0.0]  # the long walk ends at D, not C
    assert scores["novelty"].tolist() == pytest.approx([n_short, n_long])
    table = per_prompt(scores.assign(prompt_id="p")).set_index("prompt_id")
    assert table.loc["p", "creativity"] == pytest.approx(2.0 * n_short / 2)  # E[U N]
    assert table.loc["p", "creativity"] != pytest.approx((2.0 / 2) * (n_short + n_long) / 2)  # not E[U] E[N]


def test_cc_walk_item_round_trip_and_answer_parsing():
    prompt = Prompt("item", "A", "D", include=("y",), exclude=("w",))
    text = render_cc_item(TRIPLES, prompt)
    triples, parsed = parse_cc_item(text)
    assert triples == TRIPLES and parsed == prompt
    assert parse_walk_text("Here is my walk:\nA -> x -> B -> y -> C -> z -> D.") == list("AxByCzD")
    assert parse_walk_text("1. A > x > B") == ["A", "x", "B"]
    assert parse_walk_text("I cannot do that") == []
    scores = score_cc_walk_texts(["A, x, B, y, C, z, D", "no idea"], [text, text])
    assert scores["cc_valid"].tolist() == [True, False]
    # The item's own triples are the "training": graph frequencies as above.
    assert scores["cc_utility"].tolist() == [4.0, 0.0]
    assert scores["cc_novelty"].iloc[0] == pytest.approx(3 + (LN2 + LN4 + LN4) / 3)


# --- the command-line contract -------------------------------------------------------


@pytest.fixture
def cc_files(tmp_path):
    graph = tmp_path / "graph.csv"
    graph.write_text("head,label,tail\n" + "".join(f"{h},{lab},{t}\n" for h, lab, t in TRIPLES))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt_id": "p", "start": "A", "end": "D", "include": ["y"], "exclude": []})
        + "\n"
        + json.dumps({"prompt_id": "q", "start": "A", "end": "C", "include": [], "exclude": ["y"]})
        + "\n"
    )
    walks = tmp_path / "walks.jsonl"
    walks.write_text(
        json.dumps({"prompt_id": "p", "walk": list("AxByCzD"), "model": "m1"})
        + "\n"
        + json.dumps({"prompt_id": "q", "walk": list("AyC")})
        + "\n"
        + json.dumps({"prompt_id": "q", "walk": list("AxC")})
        + "\n"
    )
    return tmp_path, graph, prompts, walks


def test_cc_score_writes_each_walk_with_its_scores_and_prints_a_summary(cc_files, capsys):
    tmp, graph, prompts, walks = cc_files
    out = tmp / "scores.jsonl"
    code = main(
        ["cc-score", "--graph", str(graph), "--prompts", str(prompts), "--walks", str(walks), "--out", str(out)]
    )
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["prompt_id"] for line in lines] == ["p", "q", "q"]
    assert lines[0]["model"] == "m1" and lines[0]["walk"] == list("AxByCzD")
    assert [line["valid"] for line in lines] == [True, False, True]
    assert [line["error"] for line in lines] == [None, "wrong_label", None]  # A-C carries x, not y
    assert lines[0]["creativity"] == pytest.approx(2 * (3 + (LN2 + LN4 + LN4) / 3))
    assert lines[2]["utility"] == 2.0 and lines[2]["novelty"] == pytest.approx(1 + LN2)
    printed = capsys.readouterr().out
    assert "E[U*N]" in printed and "2 prompts" in printed
    assert "wrong_label 33.3%" in printed and "not_an_edge 0.0%" in printed


def test_cc_score_train_walks_change_the_surprise(cc_files):
    tmp, graph, prompts, walks = cc_files
    train = tmp / "train.jsonl"
    train.write_text(json.dumps({"walk": ["A", "x", "B"]}) + "\n" + json.dumps({"walk": ["B", "x", "A"]}) + "\n")
    out = tmp / "scores.jsonl"
    argv = ["cc-score", "--graph", str(graph), "--prompts", str(prompts), "--walks", str(walks)]
    assert main([*argv, "--train", str(train), "--out", str(out)]) == 0
    last = json.loads(out.read_text().splitlines()[2])
    assert last["novelty"] == pytest.approx(1 + 0.0)  # x is all training saw: w(x) = 1


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "walks.jsonl:2: not JSON"),
        (json.dumps({"prompt_id": "zz", "walk": ["A"]}), "walks.jsonl:2: unknown prompt_id 'zz'"),
        (json.dumps({"prompt_id": "p", "walk": "A x B"}), "walks.jsonl:2: 'walk' must be a list"),
        (json.dumps({"prompt_id": "p"}), "walks.jsonl:2: missing 'walk'"),
        (json.dumps(["p", ["A"]]), "walks.jsonl:2: expected a JSON object"),
    ],
)
def test_cc_score_a_malformed_walk_line_is_one_error_naming_the_line(cc_files, capsys, bad_line, message):
    tmp, graph, prompts, walks = cc_files
    first = walks.read_text().splitlines()[0]
    walks.write_text(first + "\n" + bad_line + "\n")
    out = tmp / "scores.jsonl"
    code = main(
        ["cc-score", "--graph", str(graph), "--prompts", str(prompts), "--walks", str(walks), "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_cc_score_bad_prompts_and_graph_files_name_the_line(cc_files, capsys):
    tmp, graph, prompts, walks = cc_files
    prompts.write_text(
        json.dumps({"prompt_id": "p", "start": "A", "end": "D", "include": ["y"], "exclude": ["y"]}) + "\n"
    )
    argv = [
        "cc-score",
        "--graph",
        str(graph),
        "--prompts",
        str(prompts),
        "--walks",
        str(walks),
        "--out",
        str(tmp / "o"),
    ]
    assert main(argv) == 2
    assert "prompts.jsonl:1: labels both included and excluded: y" in capsys.readouterr().err
    graph.write_text("head,label,tail\nA,x\n")
    assert main(argv) == 2
    assert "graph.csv:2: expected head,label,tail" in capsys.readouterr().err
    graph.write_text("from,to\nA,B\n")
    assert main(argv) == 2
    assert "graph.csv:1: header must name the columns head,label,tail" in capsys.readouterr().err


def _walk_is_valid(walk, edge_label, concepts, labels):
    """The definition one walk at a time: odd length, names in place, every step an edge with its label."""
    if len(walk) % 2 == 0 or not all(walk[i] in concepts for i in range(0, len(walk), 2)):
        return False
    steps = range(1, len(walk) - 1, 2)
    return all(walk[t] in labels and edge_label.get(frozenset((walk[t - 1], walk[t + 1]))) == walk[t] for t in steps)


@pytest.mark.parametrize("overlapping_names", [False, True])
def test_the_fast_name_path_the_id_path_and_the_table_free_look_ups_agree(monkeypatch, overlapping_names):
    import random

    import analysis.combinatorial as combinatorial

    rng = random.Random(7)
    concepts = [f"c{i}" for i in range(30)] + (["x"] if overlapping_names else [])
    labels = ["x", "y", "z", "w"]
    pairs = sorted({tuple(sorted(rng.sample(concepts, 2))) for _ in range(70)})
    triples = [(head, rng.choice(labels), tail) for head, tail in pairs]
    edge_label = {frozenset((h, t)): lab for h, lab, t in triples}
    adjacent = {c: [(lab, t if h == c else h) for h, lab, t in triples if c in (h, t)] for c in concepts}
    walks = []
    for _ in range(400):
        walk = [rng.choice([c for c in concepts if adjacent[c]])]
        for _ in range(rng.randrange(0, 6)):
            lab, nxt = rng.choice(adjacent[walk[-1]])
            walk += [lab, nxt]
        damage = rng.randrange(8)
        if damage == 1 and len(walk) > 1:
            walk[1] = rng.choice(labels)  # maybe the wrong label
        elif damage == 2:
            walk[rng.randrange(len(walk))] = "nowhere"  # an unknown name
        elif damage == 3 and len(walk) > 2:
            walk[0], walk[1] = walk[1], walk[0]  # a label where a concept belongs
        elif damage == 4:
            walk = walk[:-1]  # even length, or empty
        walks.append(walk)
    walks += [["x"], ["c1"], []]
    variants = [
        Prompt("p0", "c1", "c2", include=("y",), exclude=("w",)),
        Prompt("p1", "c3", "c4", include=("x", "z"), exclude=()),
        Prompt("p2", "c1", "c5", include=("nolabel",), exclude=("y", "nolabel2")),  # labels the graph lacks
        Prompt("p3", "c2", "c2"),
    ]
    prompts = [variants[rng.randrange(len(variants))] for _ in walks]
    head, label, tail = triples[0]
    walks += [[head, label, tail]] * 2
    prompts += [Prompt("p4", head, tail, include=(label,)), Prompt("p5", head, tail, include=(label, "nolabel"))]

    scorer = WalkScorer(triples)
    assert scorer._names_disjoint is not overlapping_names
    from_names = scorer.score(walks, prompts)
    from_ids = scorer.score_encoded(*scorer.encode(walks), prompts)
    monkeypatch.setattr(combinatorial, "_DENSE_EDGE_TABLE_MAX", 0)
    monkeypatch.setattr(combinatorial, "_LABEL_BITMASK_MAX", 0)  # and I / X by the label table
    sorted_scorer = WalkScorer(triples)
    assert sorted_scorer._edge_table is None and scorer._edge_table is not None
    from_sorted_keys = sorted_scorer.score(walks, prompts)

    pd.testing.assert_frame_equal(from_names, from_ids)
    pd.testing.assert_frame_equal(from_names, from_sorted_keys)
    expected = [_walk_is_valid(w, edge_label, set(concepts), set(labels)) for w in walks]
    assert from_names["valid"].tolist() == expected
    step_errors = from_names["error"].isin(["unknown_concept", "not_an_edge", "wrong_label"])
    assert (step_errors == ~from_names["valid"]).all()  # an invalid walk is explained by its steps
    assert (from_names["error"].isna() == from_names["satisfies"]).all()
    assert 0 < sum(expected) < len(walks)  # both kinds occur
    assert from_names["satisfies"].tolist()[-2:] == [True, False]  # I names a label the graph lacks
