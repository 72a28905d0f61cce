"""The ``llamafile-provider`` command line: check configuration and servers before an agent runs.

    llamafile-provider config          the active settings, where each came from (key masked)
    llamafile-provider status          what answers at the smart and fast URLs
    llamafile-provider doctor          every check an agent depends on, with the fix for each failure
    llamafile-provider models          the models the configured servers serve
    llamafile-provider tokenize TEXT   the token ids of TEXT, from the server's own tokenizer
    llamafile-provider chat PROMPT     one streamed reply (--model smart|fast|ID)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from llamafile_provider import __version__, doctor
from llamafile_provider.errors import LlamafileError
from llamafile_provider.messages import ChatMessage
from llamafile_provider.routing import alias_of
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
    check = verbs.add_parser("doctor", help="check every configured server end to end; exit 1 on any failure")
    check.add_argument("--json", action="store_true", help="machine-readable report")
    models = verbs.add_parser("models", help="list the models the configured servers serve")
    models.add_argument("--json", action="store_true", help="machine-readable list")
    tokenize = verbs.add_parser("tokenize", help="tokenize TEXT with the server's own tokenizer")
    tokenize.add_argument("text")
    tokenize.add_argument("--model", default="smart", help="smart (default), fast, or a model id")
    tokenize.add_argument("--json", action="store_true", help="machine-readable result")
    chat = verbs.add_parser("chat", help="send PROMPT and stream the reply to the terminal")
    chat.add_argument("prompt")
    chat.add_argument("--model", default="smart", help="smart (default), fast, or a model id")
    chat.add_argument("--system", help="a system message to send first")
    chat.add_argument("--max-tokens", type=int, default=None, help="cap the reply's length")
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


async def run_doctor(as_json: bool) -> int:
    rows = await doctor.diagnose(load_settings())
    print(doctor.report_json(rows) if as_json else doctor.render(rows))
    return 1 if any(row.status is doctor.Status.FAIL for row in rows) else 0


async def show_models(as_json: bool) -> int:
    """Exit 1 when no configured server answers."""
    async with LlamafileProvider() as provider:
        models = await provider.get_available_models()
    if as_json:
        print(json.dumps([model.model_dump() for model in models], indent=2))
    for model in [] if as_json else models:
        print(f"{model.alias:<5}  {model.name}  {model.url}  {model.dialect}  context={model.context_size or '?'}  "
              f"slots={model.slots or '?'}  tools={model.tool_mode}")
    if not models:
        print("llamafile-provider: no configured server answers; `llamafile-provider doctor` says why",
              file=sys.stderr)
    return 0 if models else 1


async def _resolve(provider: LlamafileProvider, model: str) -> str:
    """A model id is known only once the servers were asked what they serve."""
    if alias_of(model) is None:
        await provider.get_available_models()
    return model


async def tokenize(text: str, model: str, as_json: bool) -> int:
    async with LlamafileProvider() as provider:
        model = await _resolve(provider, model)
        tokens = await provider.router.candidates(model)[0].tokenizer.encode(text)
    print(json.dumps({"count": len(tokens), "tokens": tokens}) if as_json else f"{len(tokens)} tokens: {tokens}")
    return 0


async def chat(prompt: str, model: str, system: str | None, max_tokens: int | None) -> int:
    messages = ([ChatMessage.system(system)] if system else []) + [ChatMessage.user(prompt)]
    async with LlamafileProvider() as provider:
        model = await _resolve(provider, model)
        async for piece in provider.stream_chat_completion(messages, model_name=model, max_output_tokens=max_tokens):
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "config":
            return show_config()
        if args.verb == "status":
            return asyncio.run(show_status())
        if args.verb == "doctor":
            return asyncio.run(run_doctor(args.json))
        if args.verb == "models":
            return asyncio.run(show_models(args.json))
        if args.verb == "tokenize":
            return asyncio.run(tokenize(args.text, args.model, args.json))
        if args.verb == "chat":
            return asyncio.run(chat(args.prompt, args.model, args.system, args.max_tokens))
    except LlamafileError as exc:
        print(f"llamafile-provider: {exc}", file=sys.stderr)
        return 2
    build_parser().print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
