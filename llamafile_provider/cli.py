"""The ``llamafile-provider`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from llamafile_provider import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamafile-provider",
        description="Local llamafile models as first-class LLMs for AutoGPT-style agents.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    build_parser().parse_args(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
