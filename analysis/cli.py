"""Command line: ``python -m analysis {mixed,plan,dat,dat-table,diversity,report,cc-score,cc-report} ...``.

Every user error (a missing file or column, a bad option, data the model cannot fit)
is printed as one line ``error: ...`` on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from analysis.jsonout import json_safe

if TYPE_CHECKING:
    import pandas as pd


class UsageError(Exception):
    """A problem with what the user asked for: printed in one line, exit status 2.

    The one CLI error type of both libraries: ``python -m generation`` raises it too.
    """


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, Parquet or JSONL export."""
    import pandas as pd  # here, not at the top: `python -m generation` imports this module for UsageError

    path = Path(path)
    if not path.exists():
        raise UsageError(f"file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if suffix in {".jsonl", ".ndjson"}:
            return pd.read_json(path, lines=True)
        from analysis.csv_cells import frame_csv_read

        return frame_csv_read(path)  # the platform's CSV exports, their marked cells read back exactly
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def _cmd_mixed(args: argparse.Namespace) -> int:
    from analysis.mixed import fit_mixed, prepare_ratings

    ratings = prepare_ratings(
        read_table(args.ratings),
        exclude_attention_failed=not args.keep_attention_failed,
        exclude_incomplete=args.exclude_incomplete,
        exclude_pilot=not args.keep_pilot,
    )
    fits = fit_mixed(ratings, reference=args.reference, engine=args.engine, **_model_options(args))
    _write_json(fits, args.out)
    return 0


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model choices shared by ``mixed`` and ``report`` (see :func:`analysis.mixed.fit_mixed`)."""
    return {
        "formula": args.formula,
        "random": args.random,
        "simplify": args.simplify,
        "item_effect": args.item_effect,
        "deployment_effect": args.deployment_effect,
    }


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--formula",
        help="the model in lme4's syntax, e.g. 'score ~ condition + (1 + steered | rater) + (1 | stimulus) "
        "+ (1 + steered | item)' (default: the maximal structure the design supports; docs/analysis.md)",
    )
    p.add_argument(
        "--random",
        choices=["maximal", "intercepts"],
        default="maximal",
        help="without --formula: random slopes where the design has them (default), or intercepts only",
    )
    p.add_argument(
        "--simplify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="simplify a singular fit by the stated rule (default: on without --formula, off with it)",
    )
    p.add_argument(
        "--item-effect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random effects of item (default: with --random maximal, when the ratings have 2+ items)",
    )
    p.add_argument("--deployment-effect", action="store_true", help="add random effects of deployment")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise UsageError(f"expected whole numbers separated by commas, got {text!r}") from exc
    if not values or min(values) < 1:
        raise UsageError(f"expected positive whole numbers separated by commas, got {text!r}")
    return values


def _cmd_plan(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from analysis.mixed import fit_mixed, prepare_ratings
    from analysis.power import Components, components_from_fit, design_advice, plot_design_advice

    if args.n_sim < 1 or args.deployments < 1 or not (0 < args.alpha < 1 and 0 < args.target < 1):
        raise UsageError("--n-sim and --deployments must be >= 1, --alpha and --target between 0 and 1")
    if args.pilot:
        pilot = prepare_ratings(read_table(args.pilot), exclude_pilot=False)
        fits = fit_mixed(pilot, reference=args.reference)
        dimension = args.dimension or sorted(fits)[0]
        if dimension not in fits:
            raise UsageError(f"--dimension {dimension!r} is not in the pilot (dimensions: {', '.join(sorted(fits))})")
        components = components_from_fit(fits[dimension])
        source = f"pilot {args.pilot}, dimension {dimension!r}, model {fits[dimension]['formula']}"
    else:
        given = {k: getattr(args, k) for k in asdict(Components()) if getattr(args, k) is not None}
        components = Components(**given)
        source = "given components"
    table = design_advice(
        components=components, effect_points=args.effect, raters_per_deployment=_int_list(args.raters),
        items=_int_list(args.items), n_deployments=args.deployments, alpha=args.alpha, target=args.target,
        method="simulation" if args.simulate else "analytic", n_sim=args.n_sim, seed=args.seed,
    )  # fmt: skip
    reaching = table[table["reaches_target"]]
    cheapest = reaching.iloc[0].to_dict() if len(reaching) else None
    print(f"components ({source}): " + ", ".join(f"{k} {v:.2f}" for k, v in asdict(components).items()))
    shown = ["raters_per_deployment", "items", "ratings_per_dimension", "power"]
    shown += ["power_ci_low", "power_ci_high"] if args.simulate else ["se", "df"]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if cheapest is None:
        print(f"no design in the grid reaches power {args.target:.0%}: add raters or items")
    else:
        raters, items = int(cheapest["raters_per_deployment"]), int(cheapest["items"])
        print(
            f"fewest ratings reaching {args.target:.0%}: {raters} raters per deployment, {items} items "
            f"({int(cheapest['ratings_per_dimension'])} ratings per dimension)"
        )
    if args.figure:
        plot_design_advice(table, target=args.target).savefig(args.figure, dpi=110, bbox_inches="tight")
    _write_json({"components": asdict(components), "source": source, "grid": table.to_dict("records")}, args.out)
    return 0


def _cmd_dat(args: argparse.Namespace) -> int:
    from analysis.dat import DatScorer
    from analysis.parsers import parse_dat_words

    if not args.words and not args.batch:
        raise UsageError("dat: give words to score or --batch FILE.jsonl")
    words_file = args.words_file
    if words_file is not None and not Path(words_file).exists():
        raise UsageError(f"word list not found: {words_file}")
    if args.vectors is not None and not Path(args.vectors).exists():
        raise UsageError(f"vector file not found: {args.vectors}")
    scorer = DatScorer(args.vectors, words_file)
    if args.batch:
        path = Path(args.batch)
        if not path.exists():
            raise UsageError(f"file not found: {path}")
        out = sys.stdout if args.out in (None, "-") else open(args.out, "w")  # noqa: SIM115
        try:
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc
                if isinstance(record, list):
                    record = {"words": record}
                key = args.text_key
                if not isinstance(record, dict) or not ({"words", key} & record.keys()):
                    raise UsageError(f"{path}:{lineno}: expected an object with 'words' (list) or {key!r} (string)")
                words = record["words"] if "words" in record else parse_dat_words(str(record[key]))
                result = scorer.score([str(w) for w in words])
                extra = {k: v for k, v in record.items() if k not in {"words", key}}
                out.write(json.dumps(json_safe({**extra, **result.as_dict()})) + "\n")
        finally:
            if out is not sys.stdout:
                out.close()
        return 0
    result = scorer.score(args.words)
    if args.json:
        print(json.dumps(json_safe(result.as_dict())))
    elif result.score is None:
        print(f"no score: {result.n_valid} valid word(s), {scorer.minimum} needed ({result.embedding})")
    else:
        pct = f", human percentile {result.percentile:.0f}" if result.percentile is not None else ""
        print(f"{result.score:.2f} ({result.embedding}{pct})")
    return 0


def _write_json(data: Any, out: str | None) -> None:
    text = json.dumps(json_safe(data), indent=2)
    if out in (None, "-"):
        print(text)
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")


def _require_files(*options: tuple[str, str | None]) -> None:
    for option, path in options:
        if path is not None and not Path(path).exists():
            raise UsageError(f"{option}: file not found: {path}")


def _cmd_diversity(args: argparse.Namespace) -> int:
    from analysis.mode_collapse import diversity_differences

    _write_json(diversity_differences(read_table(args.stimuli), n_boot=args.n_boot, seed=args.seed), args.out)
    return 0


def _cmd_dat_table(args: argparse.Namespace) -> int:
    from analysis.dat_results import dat_table

    _require_files(("--vectors", args.vectors), ("--words-file", args.words_file), ("--norms", args.norms))
    table = dat_table(
        read_table(args.stimuli),
        vectors=args.vectors,
        words=args.words_file,
        norms=args.norms,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    _write_json(table, args.out)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    _require_files(
        ("--dat-vectors", args.dat_vectors), ("--dat-words", args.dat_words), ("--dat-norms", args.dat_norms)
    )
    ratings = read_table(args.ratings)
    stimuli = read_table(args.stimuli) if args.stimuli else None
    path = write_report(
        ratings,
        stimuli,
        args.out,
        reference=args.reference,
        exclude_attention_failed=not args.keep_attention_failed,
        exclude_incomplete=args.exclude_incomplete,
        exclude_pilot=not args.keep_pilot,
        compute_metrics=not args.no_metrics,
        study=args.study or Path(args.ratings).name,
        n_boot=args.n_boot,
        model_options=_model_options(args),
        plan=not args.no_plan,
        diversity_boot=args.diversity_boot,
        dat_vectors=args.dat_vectors,
        dat_words=args.dat_words,
        dat_norms=args.dat_norms,
    )
    print(path)
    return 0


def _cmd_cc_score(args: argparse.Namespace) -> int:
    from analysis.combinatorial import (
        WalkScorer,
        Weights,
        mean_ci_over_prompts,
        per_prompt,
        read_prompts,
        read_train_label_counts,
        read_triples,
        read_walks,
    )

    triples = read_triples(args.graph)
    prompts = read_prompts(args.prompts)
    records = read_walks(args.walks, prompts=prompts)
    counts = read_train_label_counts(args.train) if args.train else None
    weights = Weights(args.alpha_h, args.alpha_r, args.alpha_include, args.alpha_exclude)
    scorer = WalkScorer(triples, train_label_counts=counts, weights=weights)
    scores = scorer.score([r["walk"] for r in records], [prompts[r["prompt_id"]] for r in records])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        columns = ("valid", "utility", "novelty", "creativity")
        errors = scores["error"].astype(object).where(scores["error"].notna(), None).tolist()
        for record, values, error in zip(records, scores[list(columns)].to_dict("records"), errors, strict=True):
            scored = {**record, "valid": bool(values["valid"])}
            scored.update({key: float(values[key]) for key in columns[1:]})
            scored["error"] = error
            handle.write(json.dumps(scored, ensure_ascii=False) + "\n")
    scores.insert(0, "prompt_id", [r["prompt_id"] for r in records])
    table = per_prompt(scores)
    print(table.rename(columns={"creativity": "E[U*N]"}).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    overall = mean_ci_over_prompts(scores)
    print(
        f"creativity E[U*N] over {int(overall['n_prompts'])} prompts: {overall['creativity']:.3f} "
        f"(95% CI {overall['creativity_ci_low']:.3f} to {overall['creativity_ci_high']:.3f}); "
        f"{len(scores)} walks, {scores['valid'].mean():.1%} valid -> {out}"
    )
    shares = scores["error"].value_counts(sort=False) / max(len(scores), 1)
    print("walks failing (first failure, in this order): " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    return 0


def _cmd_cc_report(args: argparse.Namespace) -> int:
    from analysis.combinatorial_findings import findings, write_findings

    models = read_table(args.table)
    prompts = read_table(Path(args.table).with_name("prompt_scores.csv"))
    temperature = args.temperature if args.temperature is not None else float(prompts["temperature"].min())
    tables = findings(models, prompts, temperature=temperature, n_boot=args.n_boot, seed=args.seed)
    written = write_findings(tables, args.out, temperature=temperature)
    for row in tables["best_architectures"].to_dict("records"):
        verdict = "clear" if row["clear"] else f"not clear; tied with depth {row['tied_depths']}"
        print(
            f"budget {row['budget']:.2g} FLOPs, {row['target_params'] / 1e6:g}M: best depth {row['depth']} "
            f"(width {row['width']}), creativity {row['creativity']:.2f} [{row['creativity_ci_low']:.2f}, "
            f"{row['creativity_ci_high']:.2f}] at T={temperature:g} over {row['n_seeds']} seeds; "
            f"P(best) {row['p_best']:.2f} ({verdict})"
        )
    print(f"{args.out}: {', '.join(written)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's subcommands and options, one declaration per subcommand."""
    parser = _Parser(prog="python -m analysis", description="Analysis of creativity studies.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add_command in (
        _add_mixed_command, _add_plan_command, _add_dat_command, _add_diversity_command, _add_dat_table_command,
        _add_report_command, _add_cc_score_command, _add_cc_report_command,
    ):  # fmt: skip
        add_command(sub)
    return parser


def _add_preprocessing(p: argparse.ArgumentParser) -> None:
    """The choices of which ratings are analysed, shared by ``mixed`` and ``report``."""
    p.add_argument("--reference", default="base", help="reference condition (default: base, when present)")
    p.add_argument("--keep-attention-failed", action="store_true", help="keep raters who failed an attention check")
    p.add_argument("--exclude-incomplete", action="store_true", help="drop raters who did not finish")
    p.add_argument(
        "--keep-pilot", action="store_true", help="keep pilot raters (the `pilot` column; dropped by default)"
    )


def _add_mixed_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``mixed``: mixed-model fits per dimension."""
    m = sub.add_parser("mixed", help="mixed-model fits per dimension as JSON")
    m.add_argument("--ratings", required=True, help="long ratings export (CSV, Parquet, JSONL)")
    m.add_argument("--out", help="JSON file to write (default: stdout)")
    _add_model_options(m)
    m.add_argument(
        "--engine", choices=["reml", "statsmodels"], default="reml", help="statsmodels: with --random intercepts only"
    )
    _add_preprocessing(m)
    m.set_defaults(func=_cmd_mixed)


def _add_plan_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``plan``: raters and items for a target power."""
    pl = sub.add_parser("plan", help="raters and items for 80%% power, from a pilot's ratings or given components")
    pl.add_argument("--pilot", help="a pilot's ratings export: its variance components (slopes included) are used")
    pl.add_argument("--dimension", help="with --pilot: the dimension to plan for (default: the first)")
    for name, default in (("sd_rater", 8.0), ("sd_stimulus", 6.0), ("sd_residual", 15.0)):
        pl.add_argument(f"--{name.replace('_', '-')}", type=float, help=f"without --pilot (default {default})")
    for name in ("sd_item", "sd_rater_slope", "sd_item_slope"):
        pl.add_argument(f"--{name.replace('_', '-')}", type=float, help="without --pilot (default 0)")
    pl.add_argument("--effect", type=float, required=True, help="the effect to detect, in scale points")
    pl.add_argument("--raters", default="10,20,30,40", help="raters per deployment to try (default 10,20,30,40)")
    pl.add_argument("--items", default="3,5,8", help="items to try (default 3,5,8)")
    pl.add_argument("--deployments", type=int, default=24, help="deployments (default 24)")
    pl.add_argument("--alpha", type=float, default=0.05, help="two-sided level (alpha/3 plans for Holm over 3)")
    pl.add_argument("--target", type=float, default=0.8, help="power to reach (default 0.8)")
    pl.add_argument(
        "--simulate", action="store_true", help="power by simulating and fitting studies (default: analytic, fast)"
    )
    pl.add_argument("--n-sim", type=int, default=100, help="with --simulate: studies per cell (default 100)")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--reference", default="base", help="reference condition of the pilot (default: base)")
    pl.add_argument("--figure", help="PNG of power against raters, one line per number of items")
    pl.add_argument("--out", help="JSON file to write (default: stdout)")
    pl.set_defaults(func=_cmd_plan)


def _add_dat_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``dat``: score Divergent Association Task answers."""
    d = sub.add_parser("dat", help="score Divergent Association Task answers")
    d.add_argument("words", nargs="*", help="the words of one answer")
    d.add_argument("--words-file", help="dictionary, one word per line (default: /usr/share/dict/words)")
    d.add_argument("--vectors", help="GloVe/word2vec text file (default: the embedded MiniLM model)")
    d.add_argument("--json", action="store_true", help="print a JSON object")
    d.add_argument("--batch", help="JSONL of answers: objects with 'words' or 'text'; other keys are copied")
    d.add_argument("--text-key", default="text", help="with --batch: key of the free-text answer (default: text)")
    d.add_argument("--out", help="with --batch: JSONL file to write (default: stdout)")
    d.set_defaults(func=_cmd_dat)


def _add_diversity_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``diversity``: mode collapse, steered minus base."""
    v = sub.add_parser("diversity", help="mode collapse: steered minus base per diversity metric, as JSON")
    v.add_argument("--stimuli", required=True, help="stimuli export (CSV or Parquet)")
    v.add_argument("--out", help="JSON file to write (default: stdout)")
    v.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    v.add_argument("--seed", type=int, default=0)
    v.set_defaults(func=_cmd_diversity)


def _add_dat_table_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``dat-table``: the DAT table per model and condition."""
    t = sub.add_parser("dat-table", help="DAT table per model and condition (valid share, score, percentile gain)")
    t.add_argument("--stimuli", required=True, help="stimuli export (CSV or Parquet)")
    t.add_argument("--vectors", help="word vectors; GloVe 840B 300d gives human percentiles (default: MiniLM)")
    t.add_argument("--words-file", help="dictionary, one word per line (default: /usr/share/dict/words)")
    t.add_argument("--norms", help="human norms CSV (percentile,score); default: the shipped approximation")
    t.add_argument("--out", help="JSON file to write (default: stdout)")
    t.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_cmd_dat_table)


def _add_report_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``report``: the HTML report."""
    r = sub.add_parser("report", help="HTML report with tables and plots")
    r.add_argument("--ratings", required=True)
    r.add_argument("--stimuli", help="stimulus table (enables diversity and novelty–utility sections)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--study", help="the study's name, in the title and the summary (default: the ratings file's name)")
    r.add_argument("--no-metrics", action="store_true", help="use metric columns already in the stimulus table")
    r.add_argument("--n-boot", type=int, default=100, help="rater-bootstrap resamples (0 skips; default 100)")
    _add_model_options(r)
    r.add_argument("--diversity-boot", type=int, default=2000, help="bootstrap resamples of diversity and DAT tables")
    r.add_argument("--no-plan", action="store_true", help="leave out the planning section (raters x items power)")
    r.add_argument("--dat-vectors", help="word vectors for the DAT table (GloVe 840B 300d gives percentiles)")
    r.add_argument("--dat-words", help="DAT dictionary (default: /usr/share/dict/words)")
    r.add_argument("--dat-norms", help="human DAT norms CSV (default: the shipped approximation)")
    _add_preprocessing(r)
    r.set_defaults(func=_cmd_report)


def _add_cc_score_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``cc-score``: score graph walks."""
    cs = sub.add_parser("cc-score", help="validity, utility, novelty, creativity of graph walks (JSONL)")
    cs.add_argument("--graph", required=True, help="CSV with columns head,label,tail")
    cs.add_argument("--prompts", required=True, help="JSONL: prompt_id, start, end, include, exclude")
    cs.add_argument("--walks", required=True, help="JSONL: prompt_id, walk")
    cs.add_argument("--train", help="what the model saw: walk lines (.jsonl) or triples CSV (default: the graph)")
    cs.add_argument("--out", required=True, help="JSONL to write: each walk line plus its scores and error")
    cs.add_argument("--alpha-h", type=float, default=1.0, help="novelty weight of walk length (default 1)")
    cs.add_argument("--alpha-r", type=float, default=1.0, help="novelty weight of label surprise (default 1)")
    cs.add_argument("--alpha-include", type=float, default=1.0, help="utility weight per included label")
    cs.add_argument("--alpha-exclude", type=float, default=1.0, help="utility weight per excluded label")
    cs.set_defaults(func=_cmd_cc_score)


def _add_cc_report_command(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``cc-report``: the findings of a cc-scaling run."""
    cr = sub.add_parser("cc-report", help="the three findings of a cc-scaling run, with CIs over seeds and prompts")
    cr.add_argument("--table", required=True, help="scaling.csv of a cc-scaling run (prompt_scores.csv beside it)")
    cr.add_argument("--out", required=True, help="output folder for the tables (CSV) and figures (PNG)")
    cr.add_argument(
        "--temperature", type=float, help="temperature of the depth figure and the best pick (default: the lowest)"
    )
    cr.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws over seeds and prompts (default 1000)")
    cr.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    cr.set_defaults(func=_cmd_cc_report)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print ``error: ...`` in one line and return 2."""
    try:
        args = build_parser().parse_args(argv)
        for option in ("n_boot", "diversity_boot"):
            if getattr(args, option, 0) < 0:
                raise UsageError(f"--{option.replace('_', '-')} must be >= 0")
        return int(args.func(args))
    except (UsageError, ValueError, FileNotFoundError, KeyError) as exc:
        message = str(exc).replace("\n", " ") or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Exception as exc:  # a CLI user gets one line, never a traceback
        message = str(exc).replace("\n", " ")
        print(f"error: unexpected {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
