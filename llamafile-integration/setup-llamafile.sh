#!/usr/bin/env bash
# Download the *smart* and the *fast* llamafile once, verify them, and check that they run.
#
#   ./llamafile-integration/setup-llamafile.sh           # both models
#   ./llamafile-integration/setup-llamafile.sh smart     # only one
#
# Per model (ROLE = SMART or FAST), from the environment, then .env (read as data), then defaults:
#   LLAMAFILE_<ROLE>_MODEL_URL     what to download (default: Mozilla's Mistral-7B-Instruct v0.2 Q4_K_M /
#                                  TinyLlama 1.1B Chat Q5_K_M llamafiles at a pinned revision, with their
#                                  sha256); a URL ending in .gguf means "external weights"
#   LLAMAFILE_<ROLE>_MODEL_FILE    file name (or absolute path) to keep it under
#   LLAMAFILE_<ROLE>_MODEL_SHA256  its sha256; for another URL without one the download is NOT verified
#                                  (a warning prints the digest to pin); LLAMAFILE_REQUIRE_SHA256=1 refuses
#   LLAMAFILE_FAST_MODEL_URL=same  one model serves both (nothing more is downloaded for fast)
#   LLAMAFILE_BINARY_URL / _FILE / _SHA256   the bare llamafile runtime used with .gguf weights
#                                  (default: llamafile 0.9.3 from GitHub; Windows' 4 GB .exe limit)
#   LLAMAFILE_MODELS_DIR           where files are kept (~/.cache/llamafile-provider/llamafiles)
#   LLAMAFILE_DIALECT              skip the --version detection: classic (llamafile 0.8-0.9: --server
#                                  --nobrowser), v10 (0.10+: --server) or llama-server (no extra flag)
#
# Downloads resume where they stopped, show progress, and a file whose sha256 does not match is
# deleted. Each model is then run with --version, which also tells its server dialect; when the
# kernel cannot run it directly (binfmt_misc/APE on Linux) `sh FILE` is used and a message says why.
set -euo pipefail
LF_NAME=setup-llamafile.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

lf_init
roles=("$@")
[ "${#roles[@]}" -gt 0 ] || roles=(smart fast)
for role in "${roles[@]}"; do
    case $role in smart|fast) ;; *) lf_die "unknown model '$role': use smart and/or fast" ;; esac
    if [ "$role" = fast ] && [ "${LLAMAFILE_FAST_MODEL_URL:-}" = same ]; then
        echo "fast: same model as smart"
        continue
    fi
    lf_prepare "$role"
    echo "$role: $LF_MODEL ($LF_VERSION, $LF_DIALECT dialect; run as: ${LF_LAUNCH[*]})"
done
