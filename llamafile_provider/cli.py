"""The ``llamafile-provider`` command line: check configuration and servers before an agent runs.

    llamafile-provider config    the active settings, where each came from (key masked)
    llamafile-provider status    what answers at the smart and fast URLs
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from llamafile_provider import __version__
from llamafile_provider.errors import LlamafileError
from llamafile_provider.provider import LlamafileProvider
from llamafile_provider.settings import load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamafile-provider",
        description="Local llamafile models as first-class LLMs for AutoGPT-style agents.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb")
    verbs.add_parser("config", help="show the active settings and where each value came from")
    verbs.add_parser("status", help="probe the smart and fast servers")
    return parser


def show_config() -> int:
    rows = load_settings().describe()
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value or '-':<40}  ({source})")
    return 0


async def show_status() -> int:
    """Exit 0 when every configured server answers, 1 otherwise."""
    async with LlamafileProvider() as provider:
        failures = 0
        for alias, servers in provider.router.groups.items():
            for server in servers:
                try:
                    info = await server.client.info()
                except LlamafileError as exc:
                    failures += 1
                    print(f"{alias:<5}  {server.url}  DOWN: {exc}")
                    continue
                mode = server.tool_mode(info, provider.settings.tool_mode).value
                print(f"{alias:<5}  {server.url}  {info.dialect.value}  model={info.model_id}  "
                      f"context={info.context_size or '?'}  slots={info.slots or '?'}  tools={mode}")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "config":
            return show_config()
        if args.verb == "status":
            return asyncio.run(show_status())
    except LlamafileError as exc:
        print(f"llamafile-provider: {exc}", file=sys.stderr)
        return 2
    build_parser().print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
