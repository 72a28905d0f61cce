"""Which model ids AutoGPT's ``.env`` gives to llamafile, and the startup check on them.

AutoGPT's own startup path cannot be trusted with local models: its model check swallows every
provider error and falls back to ``gpt-3.5-turbo``, which then dies on missing OpenAI
credentials with a traceback. So the check that AutoGPT runs (``get_available_models``) ends
the program here instead, with ONE message that says what is served where and what to change.
It raises ``LlamafileStartupError`` — a ``SystemExit``, because AutoGPT catches every
``Exception`` (``ValueError`` included) on that path and carries on; Python prints the message
alone, without a traceback, and exits with status 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from llamafile_provider.routing import ModelInfo
from llamafile_provider.settings import LlamafileSettings

MODEL_VARIABLES = (("SMART_LLM", "smart"), ("FAST_LLM", "fast"))


class LlamafileStartupError(SystemExit):
    """AutoGPT cannot start on the configured llamafile models; the message says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(f"llamafile-provider: {message}")
        self.message = message


def configured_models(other_models: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """model id -> "smart" / "fast" for ``SMART_LLM`` / ``FAST_LLM``, except other providers' names.

    The ids are kept exactly as written (``mistral-7b-instruct-v0.2`` is not shortened). When both
    variables name the same id, it is the smart model (its requests go to the smart URL).
    """
    environ = os.environ if environ is None else environ
    others = set(other_models)
    chosen: dict[str, str] = {}
    for variable, alias in MODEL_VARIABLES:
        name = (environ.get(variable) or "").strip()
        if name and name not in others:
            chosen.setdefault(name, alias)
    return chosen


def serves(info: ModelInfo, name: str) -> bool:
    """True when the server's reported model id is ``name`` (or its file name, without ``.gguf``)."""
    reported = info.name.lower()
    stem = reported.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".gguf")
    return name.lower() in (reported, stem)


def check_served(wanted: Mapping[str, str], available: Sequence[ModelInfo], settings: LlamafileSettings) -> None:
    """Raise ``LlamafileStartupError`` unless each wanted model is served by its group's servers."""
    urls = {"smart": settings.smart_llm_url or [], "fast": settings.fast_llm_url or []}
    problems = []
    for name, alias in wanted.items():
        variable = "SMART_LLM" if alias == "smart" else "FAST_LLM"
        group = [m for m in available if m.alias == alias]
        if not group:
            problems.append(f"{variable}={name}: no {alias} server answers at {', '.join(urls[alias])}. "
                            f"Start it (./llamafile-integration/serve.sh) or fix LLAMAFILE_{alias.upper()}_LLM_URL")
        elif not any(serves(m, name) for m in group):
            problems.append(f"{variable}={name}: the {alias} server serves "
                            + ", ".join(f"{m.name!r} at {m.url}" for m in group)
                            + f"; set {variable} to that id, or point LLAMAFILE_{alias.upper()}_LLM_URL at a "
                            f"server of {name!r}")
    if problems:
        served = "; ".join(f"{m.alias} {m.url} serves {m.name!r}" for m in available) or "no server answers"
        raise LlamafileStartupError("AutoGPT cannot use its llamafile models. " + " | ".join(problems)
                                    + f". (Now: {served}.)")
