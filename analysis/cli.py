"""Command line: ``python -m analysis {mixed,dat,report} ...``.

Every user error (a missing file or column, a bad option, data the model cannot fit)
is printed as one line ``error: ...`` on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd


class UsageError(Exception):
    """A problem with the user's input, reported in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, Parquet or JSONL export."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if suffix in {".jsonl", ".ndjson"}:
            return pd.read_json(path, lines=True)
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise UsageError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def _clean_json(obj: Any) -> Any:
    # JSON has no NaN: non-finite numbers become null.
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_json(v) for v in obj]
    return obj


def _cmd_mixed(args: argparse.Namespace) -> int:
    from analysis.mixed import fit_mixed, prepare_ratings

    ratings = prepare_ratings(
        read_table(args.ratings),
        exclude_attention_failed=not args.keep_attention_failed,
        exclude_incomplete=args.exclude_incomplete,
        exclude_pilot=not args.keep_pilot,
    )
    fits = fit_mixed(
        ratings,
        reference=args.reference,
        item_effect=args.item_effect,
        deployment_effect=args.deployment_effect,
        engine=args.engine,
    )
    text = json.dumps(_clean_json(fits), indent=2)
    if args.out in (None, "-"):
        print(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


def _cmd_dat(args: argparse.Namespace) -> int:
    from analysis.dat import DatScorer, parse_answer

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
                words = record["words"] if "words" in record else parse_answer(str(record[key]))
                result = scorer.score([str(w) for w in words])
                extra = {k: v for k, v in record.items() if k not in {"words", key}}
                out.write(json.dumps(_clean_json({**extra, **result.as_dict()})) + "\n")
        finally:
            if out is not sys.stdout:
                out.close()
        return 0
    result = scorer.score(args.words)
    if args.json:
        print(json.dumps(_clean_json(result.as_dict())))
    elif result.score is None:
        print(f"no score: {result.n_valid} valid word(s), {scorer.minimum} needed ({result.embedding})")
    else:
        pct = f", human percentile {result.percentile:.0f}" if result.percentile is not None else ""
        print(f"{result.score:.2f} ({result.embedding}{pct})")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    ratings = read_table(args.ratings)
    stimuli = read_table(args.stimuli) if args.stimuli else None
    path = write_report(
        ratings,
        stimuli,
        args.out,
        reference=args.reference,
        exclude_attention_failed=not args.keep_attention_failed,
        exclude_incomplete=args.exclude_incomplete,
        compute_metrics=not args.no_metrics,
        n_boot=args.n_boot,
    )
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m analysis", description="Analysis of creativity studies.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_preprocessing(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reference", default="base", help="reference condition (default: base, when present)")
        p.add_argument("--keep-attention-failed", action="store_true", help="keep raters who failed an attention check")
        p.add_argument("--exclude-incomplete", action="store_true", help="drop raters who did not finish")

    m = sub.add_parser("mixed", help="mixed-model fits per dimension as JSON")
    m.add_argument("--ratings", required=True, help="long ratings export (CSV, Parquet, JSONL)")
    m.add_argument("--out", help="JSON file to write (default: stdout)")
    m.add_argument("--item-effect", action="store_true", help="add (1 | item)")
    m.add_argument("--deployment-effect", action="store_true", help="add (1 | deployment)")
    m.add_argument(
        "--keep-pilot", action="store_true", help="keep pilot raters (the `pilot` column; dropped by default)"
    )
    m.add_argument("--engine", choices=["reml", "statsmodels"], default="reml")
    add_preprocessing(m)
    m.set_defaults(func=_cmd_mixed)

    d = sub.add_parser("dat", help="score Divergent Association Task answers")
    d.add_argument("words", nargs="*", help="the words of one answer")
    d.add_argument("--words-file", help="dictionary, one word per line (default: /usr/share/dict/words)")
    d.add_argument("--vectors", help="GloVe/word2vec text file (default: the embedded MiniLM model)")
    d.add_argument("--json", action="store_true", help="print a JSON object")
    d.add_argument("--batch", help="JSONL of answers: objects with 'words' or 'text'; other keys are copied")
    d.add_argument("--text-key", default="text", help="with --batch: key of the free-text answer (default: text)")
    d.add_argument("--out", help="with --batch: JSONL file to write (default: stdout)")
    d.set_defaults(func=_cmd_dat)

    r = sub.add_parser("report", help="HTML report with tables and plots")
    r.add_argument("--ratings", required=True)
    r.add_argument("--stimuli", help="stimulus table (enables diversity and novelty–utility sections)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--no-metrics", action="store_true", help="use metric columns already in the stimulus table")
    r.add_argument("--n-boot", type=int, default=100, help="rater-bootstrap resamples (0 skips; default 100)")
    add_preprocessing(r)
    r.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print ``error: ...`` in one line and return 2."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except (UsageError, ValueError, FileNotFoundError, KeyError) as exc:
        message = str(exc).replace("\n", " ") or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Exception as exc:  # a CLI user gets one line, never a traceback
        message = str(exc).replace("\n", " ")
        print(f"error: unexpected {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
