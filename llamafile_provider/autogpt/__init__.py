"""AutoGPT classic integration: forge-compatible provider, activation hook, startup checks.

Only AutoGPT's interpreter imports this sub-package (through ``llamafile_provider_autogpt_hook``,
once forge's provider registry loads); the rest of ``llamafile_provider`` never imports it, so
using the package without AutoGPT never imports forge.
"""
