"""``python -m generation``: subcommands work end to end; every user error is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from generation.cli import main
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


def test_sweep_reports_every_setting(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep.csv"
    argv = ["sweep", "--model", str(tiny_model_dir), "--quiet", "--rho", "0.1", "--alpha", "0.5,1",
            "--n", "2", "--max-new-tokens", "8", "--out", str(out)]  # fmt: skip
    code, printed, _ = _run(argv, capsys)
    assert code == 0 and "perplexity" in printed
    lines = out.read_text().splitlines()
    assert lines[0].startswith("setting,rho,alpha,share_edited")
    assert [line.split(",")[0] for line in lines[1:]] == ["base", "rho=0.1 alpha=0.5", "rho=0.1 alpha=1"]
