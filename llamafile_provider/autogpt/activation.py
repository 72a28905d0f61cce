"""Registers llamafile-provider in forge's provider registry, right after it loads.

Called by ``llamafile_provider_autogpt_hook`` when ``forge.llm.providers.multi`` has executed,
which is before ``autogpt.app.config`` builds ``AppConfig`` (its ``smart_llm`` / ``fast_llm``
fields capture the model-name enums' members when the class is built) and after AutoGPT loaded
its ``.env``. It changes forge objects in place, never by editing AutoGPT's files:

- ``LlamafileModelName`` gains a member for each id in ``SMART_LLM`` / ``FAST_LLM`` that is not
  another provider's model, so AutoGPT's config accepts any id the servers report, unchanged;
- their ``ChatModelInfo`` goes into ``LLAMAFILE_CHAT_MODELS`` and into ``multi.CHAT_MODELS``
  (the one dict object the rest of AutoGPT imported; mutated, never rebound);
- ``multi.LlamafileProvider`` (read by ``MultiProvider._get_provider_class`` on every call) is
  rebound to ``AutoGPTLlamafileProvider``;
- ``OPENAI_FUNCTIONS`` defaults to ``True`` when a llamafile model is configured, so AutoGPT
  hands its commands over as functions and the reply can be constrained to them (set
  ``OPENAI_FUNCTIONS=False`` to keep AutoGPT's text-only format, then command names are free).
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

from llamafile_provider.autogpt.enums import add_member
from llamafile_provider.autogpt.startup import configured_models

logger = logging.getLogger(__name__)


def activate(multi: ModuleType) -> list[str]:
    """Patch the loaded ``forge.llm.providers.multi``; returns the llamafile model ids added."""
    from forge.llm.providers.llamafile import llamafile as forge_llamafile

    from llamafile_provider.autogpt.provider import AutoGPTLlamafileProvider, model_info

    model_enum = forge_llamafile.LlamafileModelName
    others = [str(getattr(name, "value", name)) for name, info in multi.CHAT_MODELS.items()
              if info.provider_name != "llamafile"]
    added = []
    for name in configured_models(others):
        member = add_member(model_enum, name)
        # Replaced also for forge's own mistral entry: ours reports function calling (see model_info).
        forge_llamafile.LLAMAFILE_CHAT_MODELS[member] = model_info(member)
        multi.CHAT_MODELS[member] = forge_llamafile.LLAMAFILE_CHAT_MODELS[member]
        added.append(name)
    multi.LlamafileProvider = AutoGPTLlamafileProvider
    if added:
        os.environ.setdefault("OPENAI_FUNCTIONS", "True")
    logger.debug("llamafile-provider active in AutoGPT for %s", ", ".join(added) or "no configured model")
    return added
