"""Activates llamafile-provider inside AutoGPT classic, without editing AutoGPT.

The wheel ships ``llamafile_provider_autogpt.pth``, which imports this module at interpreter
start. It only puts a finder on ``sys.meta_path`` that waits for forge's
``forge.llm.providers.multi`` (AutoGPT's provider registry); when that module has finished
loading, ``llamafile_provider.autogpt.activation.activate`` registers the configured model ids
and the provider class. Programs that never import forge pay for one small class definition
(well under 1 ms) and nothing else: this module imports nothing beyond ``os`` and ``sys`` (its
type hints are strings for the same reason: no ``typing`` import).

``LLAMAFILE_AUTOGPT=off`` (in the environment, or in AutoGPT's ``.env``, which AutoGPT loads
before it imports forge) switches it off.
"""

import os
import sys

TARGET = "forge.llm.providers.multi"


def _enabled() -> bool:
    return os.environ.get("LLAMAFILE_AUTOGPT", "").strip().lower() not in ("off", "0", "false", "no")


class LlamafileAutoGPTFinder:
    """A meta-path finder that never finds anything itself: it wraps forge's registry loader."""

    @classmethod
    def find_spec(cls, fullname: str, path: "object" = None, target: "object" = None) -> "object":
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader:
    """Runs forge's own loader, then activates the llamafile provider on the loaded module."""

    def __init__(self, loader: "object") -> None:
        self.loader = loader

    def create_module(self, spec: "object") -> "object":
        return self.loader.create_module(spec)

    def exec_module(self, module: "object") -> None:
        self.loader.exec_module(module)
        if _enabled():
            from llamafile_provider.autogpt.activation import activate

            activate(module)

    def __getattr__(self, name: str) -> "object":  # get_source, get_code, is_package... as the real loader has them
        return getattr(self.loader, name)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if _enabled() and LlamafileAutoGPTFinder not in sys.meta_path:
        sys.meta_path.insert(0, LlamafileAutoGPTFinder)


install()
