"""``python -m generation``: subcommands work end to end; every user error is one line and exit 2."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from generation.cli import main
from generation.types import DecodingSettings
from tests.conftest import REPO_ROOT


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse errors and --help
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_the_subcommands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "generation", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    for command in ("prepare-embedded", "steer-weights", "steer-activations", "sample", "sweep"):
        assert command in result.stdout


def test_missing_model_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "generation", "sample", "--model", str(tmp_path / "nope"), "--task", "aut",
         "--out", str(tmp_path / "out.jsonl")],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert str(tmp_path / "nope") in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["fly"], "invalid choice"),
        (["sample", "--task", "aut", "--n", "0", "--out", "x.jsonl"], "--n"),
        (["sample", "--task", "aut"], "--out"),
        (["steer-weights", "--rho", "2", "--out", "x"], "--rho"),
        (["sweep", "--alpha", "a,b"], "--alpha"),
        (["steer-weights", "--ranking", "column", "--out", "x"], "--ranking"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], message: str, capsys) -> None:
    code, _out, err = _run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err


def test_bad_values_found_later_are_one_line_too(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    model = ["--model", str(tiny_model_dir), "--quiet"]
    cases = [
        (["sample", *model, "--task", "limericks", "--out", str(tmp_path / "o.jsonl")], "unknown task family"),
        (["sample", *model, "--task", "aut", "--items", "anvil", "--out", str(tmp_path / "o.jsonl")], "no item"),
        (["steer-activations", *model, "--prompt-set", "poetry", "--out", str(tmp_path / "v.safetensors")], "poetry"),
        (["steer-activations", *model, "--layers", "99", "--out", str(tmp_path / "v.safetensors")], "outside"),
        (["steer-activations", *model, "--out", str(tmp_path / "v.bin")], ".safetensors"),
        (["sample", *model, "--task", "aut", "--coeff", "2", "--out", str(tmp_path / "o.jsonl")], "--coeff"),
    ]
    for argv, message in cases:
        code, _out, err = _run(argv, capsys)
        assert (code, err.count("\n")) == (2, 1), (argv, err)
        assert message in err, err


def test_steer_then_sample_end_to_end(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    model = ["--model", str(tiny_model_dir), "--quiet"]
    vector = tmp_path / "dat.safetensors"
    code, out, _ = _run(["steer-activations", *model, "--layers", "2", "--out", str(vector)], capsys)
    assert code == 0 and "layer 2" in out and vector.with_suffix(".json").is_file()

    checkpoint = tmp_path / "steered"
    code, out, _ = _run(["steer-weights", *model, "--rho", "0.2", "--alpha", "1", "--out", str(checkpoint)], capsys)
    assert code == 0 and "edited" in out and (checkpoint / "manifest.json").is_file()

    samples = tmp_path / "samples.jsonl"
    argv = ["sample", *model, "--task", "aut", "--items", "brick,fork", "--n", "2", "--seed", "3",
            "--max-new-tokens", "6", "--out", str(samples)]  # fmt: skip
    assert _run([*argv, "--condition-artifact", str(vector), "--coeff", "2"], capsys)[0] == 0
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert [(r["item_key"], r["sample_index"]) for r in records] == [
        ("brick", 0),
        ("brick", 1),
        ("fork", 0),
        ("fork", 1),
    ]
    assert records[0]["condition"]["method"] == "activation" and records[0]["condition"]["params"]["coeff"] == 2.0
    assert "parsed" in records[0] and records[0]["decoding"]["max_new_tokens"] == 6

    assert _run([*argv, "--condition-artifact", str(checkpoint)], capsys)[0] == 0
    weight_records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert weight_records[0]["condition"]["method"] == "weight"
    assert weight_records[0]["model_sha256"] != records[0]["model_sha256"]


def _word_scorer(words):
    # Cheap and deterministic: valid words are the alphabetic ones; "score" is their count.
    valid = [w.lower() for w in words if w.isalpha()]
    return (float(len(valid)) if len(valid) >= 2 else None), valid


def _use_scorer(texts, objects):
    return [float(len(set(text.split()))) for text in texts]


def test_sweep_covers_both_methods_resumes_and_names_a_setting(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    from generation.sweep import SweepGrid, choose_settings, read_rows, run_sweep, with_gains

    out = tmp_path / "sweep.jsonl"
    grid = SweepGrid(
        rhos=[0.2], alphas=[0.5, 1.0], prompt_sets=["dat", "ideation"], layer_ranges=["all", "2-3"],
        coeffs=[2.0], activation_layers=[1, 2],
    )  # fmt: skip
    options = dict(
        out=out, n_dat=3, n_aut=3, n_boot=50, decoding=DecodingSettings(max_new_tokens=6),
        scorer=_word_scorer, use_scorer=_use_scorer, device="cpu", dtype="float32",
    )  # fmt: skip
    seen: list[str] = []
    rows = run_sweep(tiny_model_dir, grid, on_row=lambda row: seen.append(row["setting"]), **options)
    assert [row["method"] for row in rows] == ["base"] + ["weight"] * 8 + ["activation"] * 2
    assert seen == [row["setting"] for row in rows] == [row["setting"] for row in read_rows(out)]
    assert len(set(seen)) == 11
    for row in rows:
        assert math.isfinite(row["perplexity"]) and math.isfinite(row["aut_originality"])
        for metric in ("dat_valid_share", "distinct_word_share", "aut_originality", "perplexity"):
            if math.isnan(row[metric]):  # a random tiny model may write no word at all
                continue
            assert row[f"{metric}_low"] <= row[metric] <= row[f"{metric}_high"], (row["setting"], metric)
    weight = [row for row in rows if row["method"] == "weight"]
    assert all(0 < row["share_edited"] < 0.2 for row in weight)
    considered = {row["layers"]: row["n_weights_considered"] for row in weight}
    assert considered["2-3"] * 2 == considered["all"]  # the layer range is honoured: 2 of 4 blocks
    assert rows[-1]["perplexity"] != rows[0]["perplexity"]  # activation steering is on while perplexity is read

    # A killed sweep: keep the first 4 rows; the rerun computes only the rest.
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:4]) + "\n")
    resumed: list[str] = []
    again = run_sweep(tiny_model_dir, grid, on_row=lambda row: resumed.append(row["setting"]), **options)
    assert [row["setting"] for row in again] == seen
    assert [row["seconds"] for row in again[:4]] == [row["seconds"] for row in rows[:4]]  # reused, not rerun
    assert [row["perplexity"] for row in again] == pytest.approx([row["perplexity"] for row in rows])
    assert len(out.read_text().splitlines()) == 11
    # Another sweep's file is refused rather than mixed.
    with pytest.raises(ValueError, match="different sweep"):
        run_sweep(tiny_model_dir, grid, **{**options, "n_dat": 2})

    gains = with_gains(again, "aut_originality", n_boot=50)
    assert gains[0]["gain"] == 0 and gains[0]["fluency_cost"] == 0
    nothing = choose_settings(gains, fluency_budget=-1.0)
    assert [choice.row for choice in nothing] == [None, None] and "perplexity" in nothing[0].reason
    generous = choose_settings(gains, fluency_budget=1e9)
    for choice in generous:
        affordable = [r for r in gains if r["method"] == choice.method and r["gain"] > 0]
        if affordable:
            assert choice.row is not None and choice.row["gain"] == max(r["gain"] for r in affordable)
        else:
            assert choice.row is None and "gains" in choice.reason


def test_sweep_command_writes_table_plot_and_spec_snippet(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    import yaml

    out = tmp_path / "sweep.csv"
    argv = ["sweep", "--model", str(tiny_model_dir), "--quiet", "--rho", "0.2", "--alpha", "1", "--coeff", "2",
            "--activation-layers", "1", "--n-dat", "2", "--n-aut", "2", "--max-new-tokens", "6", "--n-boot", "20",
            "--dtype", "bfloat16", "--device", "cpu", "--fluency-budget", "100", "--model-key", "tiny",
            "--out", str(out)]  # fmt: skip
    code, printed, err = _run(argv, capsys)
    assert code == 0, err
    assert "best weight" in printed and "best activation" in printed
    header = out.read_text().splitlines()[0].split(",")
    assert header[:4] == ["setting", "method", "rho", "alpha"] and "perplexity_low" in header
    assert out.with_suffix(".png").stat().st_size > 1000
    assert out.with_suffix(".table.md").read_text().startswith("| setting |")
    snippet = yaml.safe_load(out.with_suffix(".spec.yaml").read_text()) or []
    assert {c["method"] for c in snippet} <= {"weight", "activation"}
    for condition in snippet:
        assert condition["model"] == "tiny" and condition["key"] == f"tiny-{condition['method']}"
    # --dtype is honoured: a bfloat16 sweep is a different sweep from a float32 one on the same file.
    code, _printed, err = _run([a if a != "bfloat16" else "float32" for a in argv], capsys)
    assert code == 2 and "different sweep" in err and err.count("\n") == 1
    code, _printed, err = _run([*argv[:-1], str(tmp_path / "sweep.txt")], capsys)
    assert code == 2 and ".jsonl or .csv" in err
