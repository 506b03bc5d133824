"""Subcommands of ``python -m generation``.

Every user error (bad argument, missing model) is one line on stderr and exit status
2; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


class UsageError(Exception):
    """A problem with what the user asked for: printed in one line, exit status 2."""


def _prepare_embedded(args: argparse.Namespace) -> int:
    from generation.embedded import EmbeddedModelMissing, ensure_embedded_model

    try:
        path = ensure_embedded_model(args.cache_dir)
    except EmbeddedModelMissing as error:
        raise UsageError(str(error)) from error
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m generation", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = commands.add_parser(
        "prepare-embedded", help="cache the embedded SmolLM2-135M-Instruct as safetensors (once)"
    )
    prepare.add_argument("--cache-dir", type=Path, default=None, help="default: $MODEL_CACHE_DIR or var/models")
    prepare.set_defaults(handler=_prepare_embedded)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 with a one-line message
    try:
        return int(args.handler(args))
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
