"""Every benchmark the README quotes still runs, at a tiny size, and its figures are sane.

A benchmark is run by hand, rarely; without this, one can rot unseen (the rater-page
benchmark once did: the entry rate limit stopped its bots). Sizes here are for running,
not for timing: the README's figures come from the commands it gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _run(script: str, *args: str, out: Path, timeout: float = 300) -> dict:
    command = [sys.executable, f"benchmarks/{script}", *args, "--out", str(out)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return json.loads(out.read_text())


def test_combinatorial_scoring_benchmark(tmp_path: Path) -> None:
    figures = _run("bench_combinatorial.py", "--walks", "20000", "--rounds", "1", "--skip-training",
                   out=tmp_path / "c.json")["scoring"]  # fmt: skip
    assert figures["scores_equal"] is True  # the fast scorer agrees with networkx walk by walk
    assert figures["from_codes_walks_per_s"] > 0


def test_cc_throughput_benchmark(tmp_path: Path) -> None:
    figures = _run("bench_cc_throughput.py", "--sizes", "2e5", "--depths", "2", "--threads", "1", "--steps", "4",
                   "--rounds", "1", "--matmul-repeats", "2", out=tmp_path / "t.json")  # fmt: skip
    rows = {row["variant"]: row for row in figures["rows"]}
    assert set(rows) == {"before", "after"}
    assert all(0 < row["ratio"] < 1.5 for row in rows.values())  # training FLOP rate against the matmul rate
    assert rows["before"]["speedup"] == 1.0 and 0 < rows["after"]["pad_share"] < 1


def test_generation_benchmark(tmp_path: Path) -> None:
    figures = _run("bench_generation.py", "--rounds", "1", "--max-new-tokens", "8", "--single", "2",
                   out=tmp_path / "g.json")  # fmt: skip
    assert figures["tokens_per_s_best"] and all(v > 0 for v in figures["tokens_per_s_best"].values())
    assert 0 < figures["weight_edit"]["share_edited"] < 0.05


def test_sparse_artifact_benchmark(tmp_path: Path) -> None:
    figures = _run("bench_sparse_artifact.py", "--rounds", "1", "--samples", "2", "--max-new-tokens", "8",
                   out=tmp_path / "s.json")  # fmt: skip
    assert figures["texts_identical"] is True  # the artifact steers exactly as the dense edit
    assert figures["size_ratio"] <= figures["targets"]["size_ratio"]


def test_mixed_model_benchmark_agrees_with_lme4(tmp_path: Path) -> None:
    figures = _run("bench_mixed.py", "--deployments", "6", "--repeat", "1", out=tmp_path / "m.json")
    assert {row["dimension"] for row in figures["per_dimension"]} == {"originality", "surprise", "creativity"}
    assert all(row["max_rel_diff_fixed"] < 1e-6 for row in figures["per_dimension"])


def test_large_mixed_model_benchmark_agrees_with_lme4(tmp_path: Path) -> None:
    figures = _run("bench_mixed_large.py", "--deployments", "4", "--raters", "10", "--stimuli", "5",
                   out=tmp_path / "ml.json")  # fmt: skip
    assert figures["effect_rel_diff"] < 1e-6


def test_load_benchmark_walks_raters_through_gunicorn(tmp_path: Path) -> None:
    figures = _run("load_raters.py", "--deployments", "2", "--raters", "5", "--concurrency", "1",
                   "--sequential-raters", "2", out=tmp_path / "load.json")  # fmt: skip
    timed = {row["request"]: row["n"] for row in figures["rows"]}
    assert set(timed) == {"rating page GET", "rating POST", "heartbeat POST", "/healthz GET"}
    assert all(n > 0 for n in timed.values())
    assert figures["checks"]["1"] == {"5xx answers": 0, "bot errors": 0}
    assert figures["queries"]["most"]["rating POST"] <= 8
