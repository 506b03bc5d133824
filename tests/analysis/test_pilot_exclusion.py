"""Pilot raters (the export's `pilot` column) are left out of the analysis unless asked for."""

from __future__ import annotations

import json

from analysis.mixed import fit_mixed, prepare_ratings
from tests.analysis.test_mixed import _cli


def test_pilot_raters_are_excluded_by_default_and_counted(small_ratings):
    pilots = {"r00-000", "r01-001", "r02-002"}
    df = small_ratings.assign(pilot=small_ratings["rater"].isin(pilots), attention_failed=False)
    # A pilot rater who also failed a check is counted once, as pilot.
    df.loc[df["rater"] == "r00-000", "attention_failed"] = True
    kept = prepare_ratings(df)
    assert kept.attrs["excluded_raters"] == {"pilot": 3, "attention_failed": 0}
    assert not set(kept["rater"]) & pilots
    assert kept["rater"].nunique() == small_ratings["rater"].nunique() - 3
    assert prepare_ratings(df, exclude_pilot=False)["rater"].nunique() == small_ratings["rater"].nunique() - 1


def test_cli_mixed_drops_pilots_unless_kept(small_ratings, tmp_path):
    df = small_ratings.assign(pilot=small_ratings["rater"].isin({"r00-000", "r01-001"}))
    csv = tmp_path / "ratings.csv"
    df.to_csv(csv, index=False)
    for extra, expected in (([], df[~df["pilot"]]), (["--keep-pilot"], df)):
        out = tmp_path / "fits.json"
        result = _cli("mixed", "--ratings", str(csv), "--out", str(out), *extra)
        assert result.returncode == 0, result.stderr
        fits = json.loads(out.read_text())
        assert fits["creativity"]["n_raters"] == expected["rater"].nunique()
        assert fits == json.loads(json.dumps(fit_mixed(expected.drop(columns="pilot"))))
