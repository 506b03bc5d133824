"""Command line of the generation library: ``python -m generation --help``."""

from generation.cli import main

raise SystemExit(main())
