#!/usr/bin/env bash
# Download a *smart* and a *fast* llamafile (once) and serve them on two ports.
#
#   ./llamafile-integration/serve.sh            # smart on 8080, fast on 8081, Ctrl-C stops both
#
# Settings (environment or the repo's .env; see .env.llamafile.example):
#   LLAMAFILE_SMART_MODEL_URL / LLAMAFILE_FAST_MODEL_URL   where to download each llamafile
#   LLAMAFILE_SMART_PORT (8080) / LLAMAFILE_FAST_PORT (8081)
#   LLAMAFILE_MODELS_DIR   where llamafiles are kept (~/.cache/llamafile-provider/llamafiles)
#   LLAMAFILE_API_KEY      passed to the servers as --api-key when set
#   LLAMAFILE_SERVER_ARGS  extra arguments for both servers (e.g. "-c 8192 -ngl 999")
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f .env ]; then
    set -a; . ./.env; set +a
fi

SMART_URL=${LLAMAFILE_SMART_MODEL_URL:-https://huggingface.co/Mozilla/Mistral-7B-Instruct-v0.2-llamafile/resolve/main/mistral-7b-instruct-v0.2.Q4_K_M.llamafile}
FAST_URL=${LLAMAFILE_FAST_MODEL_URL:-https://huggingface.co/Mozilla/TinyLlama-1.1B-Chat-v1.0-llamafile/resolve/main/TinyLlama-1.1B-Chat-v1.0.Q5_K_M.llamafile}
SMART_PORT=${LLAMAFILE_SMART_PORT:-8080}
FAST_PORT=${LLAMAFILE_FAST_PORT:-8081}
MODELS_DIR=${LLAMAFILE_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llamafile-provider/llamafiles}
mkdir -p "$MODELS_DIR"

die() { echo "serve.sh: $*" >&2; exit 1; }

fetch() {  # fetch URL -> prints the local path; resumes partial downloads, never leaves a half file
    local url=$1 file
    file="$MODELS_DIR/$(basename "${url%%\?*}")"
    if [ ! -s "$file" ]; then
        command -v curl >/dev/null || die "curl is needed to download $url"
        echo "downloading $url" >&2
        curl -fL --retry 3 -C - -o "$file.part" "$url" || die "download failed: $url"
        mv "$file.part" "$file"
    fi
    chmod +x "$file"
    echo "$file"
}

PIDS=()
stop_all() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

serve() {  # serve FILE PORT NAME
    local file=$1 port=$2 name=$3
    local log="$MODELS_DIR/$name-$port.log"
    local args=(--server --nobrowser --host 127.0.0.1 --port "$port")
    [ -n "${LLAMAFILE_API_KEY:-}" ] && args+=(--api-key "$LLAMAFILE_API_KEY")
    # shellcheck disable=SC2206  # word splitting of extra args is intended
    [ -n "${LLAMAFILE_SERVER_ARGS:-}" ] && args+=($LLAMAFILE_SERVER_ARGS)
    # `sh` runs the llamafile on every shell (zsh, fish) and on systems with binfmt quirks.
    sh "$file" "${args[@]}" >"$log" 2>&1 &
    PIDS+=($!)
    echo "$name: http://127.0.0.1:$port (log: $log)"
}

wait_ready() {  # wait_ready PORT NAME
    local port=$1 name=$2 i
    for i in $(seq 1 600); do
        if curl -fs "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1 \
            || curl -fs -H "Authorization: Bearer ${LLAMAFILE_API_KEY:-}" "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; then
            echo "$name ready on port $port"; return 0
        fi
        sleep 1
    done
    die "$name did not become ready on port $port; see its log in $MODELS_DIR"
}

smart=$(fetch "$SMART_URL")
fast=$(fetch "$FAST_URL")
serve "$smart" "$SMART_PORT" smart
serve "$fast" "$FAST_PORT" fast
wait_ready "$SMART_PORT" smart
wait_ready "$FAST_PORT" fast
echo "Both models are up. Point AutoGPT at them with .env (see .env.llamafile.example). Ctrl-C stops them."
wait
