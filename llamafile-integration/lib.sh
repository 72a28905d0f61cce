# shellcheck shell=bash disable=SC2034  # the LF_* globals are read by the scripts that source this
# Shared by setup-llamafile.sh and serve.sh (sourced, never run). Bash 3.2 compatible: no
# associative arrays, no mapfile, no ${x,,}; every array expansion is guarded for `set -u`.
#
# Settings come from the environment, then from .env (read as DATA, never sourced), then from the
# defaults below: the same precedence as the Python settings (llamafile_provider/settings.py).

LF_NAME=${LF_NAME:-llamafile}
LF_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/llamafile-provider

# Mozilla's llamafiles on Hugging Face, pinned to a revision so that their sha256 (the Git LFS oid
# on that commit's page) stays valid: Mistral-7B-Instruct v0.2 Q4_K_M built with llamafile 0.8.4
# (4,397,807,793 bytes) and TinyLlama-1.1B-Chat v1.0 Q5_K_M built with llamafile 0.8.2 (811,415,729).
LF_HF=https://huggingface.co/Mozilla
LF_DEFAULT_SMART_URL=$LF_HF/Mistral-7B-Instruct-v0.2-llamafile/resolve/6ea5cfd146ebd9c913d2c7c2a3c17369fcfc3671/mistral-7b-instruct-v0.2.Q4_K_M.llamafile
LF_DEFAULT_SMART_SHA256=11b2a96bf3058c3117e88911bb97b0d25ee36f7d97c3bbcc1a6cb5cfa1e78f83
LF_DEFAULT_FAST_URL=$LF_HF/TinyLlama-1.1B-Chat-v1.0-llamafile/resolve/67ce9dd37d4377e05e91ec0bef53ac3bb643d1e5/TinyLlama-1.1B-Chat-v1.0.Q5_K_M.llamafile
LF_DEFAULT_FAST_SHA256=4b30de3872f4b94d5fd480e3196026bb91c42e5462899ab8c3720ec3a145896a
# The bare llamafile runtime, for models given as .gguf weights (Windows cannot run a >4 GB .exe).
# Its sha256 could not be checked from where this was written: pin LLAMAFILE_BINARY_SHA256 yourself
# (without it the download is verified by nothing, and a warning prints its digest).
LF_DEFAULT_BINARY_URL=https://github.com/Mozilla-Ocho/llamafile/releases/download/0.9.3/llamafile-0.9.3

lf_die() { printf '%s: %s\n' "$LF_NAME" "$*" >&2; exit 1; }
lf_say() { printf '%s: %s\n' "$LF_NAME" "$*" >&2; }

# --- .env as data --------------------------------------------------------------------------------

lf_trim() {  # lf_trim TEXT -> TEXT without leading/trailing blanks (in LF_TRIMMED)
    LF_TRIMMED=$1
    LF_TRIMMED=${LF_TRIMMED#"${LF_TRIMMED%%[![:space:]]*}"}
    LF_TRIMMED=${LF_TRIMMED%"${LF_TRIMMED##*[![:space:]]}"}
}

lf_dotenv_value() {  # lf_dotenv_value RAW -> the value python-dotenv would read (in LF_VALUE)
    local raw=$1 out='' c i=1 len
    case $raw in
        \'*)
            raw=${raw#\'}
            LF_VALUE=${raw%%\'*}
            ;;
        \"*)
            len=${#raw}
            while [ "$i" -lt "$len" ]; do
                c=${raw:$i:1}
                if [ "$c" = "\\" ] && [ $((i + 1)) -lt "$len" ]; then
                    i=$((i + 1)); c=${raw:$i:1}
                    case $c in n) c=$'\n' ;; t) c=$'\t' ;; esac
                elif [ "$c" = '"' ]; then
                    break
                fi
                out=$out$c
                i=$((i + 1))
            done
            LF_VALUE=$out
            ;;
        *)
            raw=${raw%%[[:space:]]#*}  # an inline comment starts at a blank followed by '#'
            lf_trim "$raw"
            LF_VALUE=$LF_TRIMMED
            ;;
    esac
}

lf_load_env() {  # lf_load_env FILE: set LLAMAFILE_* variables from FILE unless the environment has them
    local file=$1 line key name_re='^LLAMAFILE_[A-Za-z0-9_]*$'
    [ -f "$file" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        lf_trim "$line"; line=$LF_TRIMMED
        case $line in ''|'#'*) continue ;; esac
        line=${line#export }
        case $line in *=*) ;; *) continue ;; esac
        lf_trim "${line%%=*}"; key=$LF_TRIMMED
        [[ $key =~ $name_re ]] || continue
        if [ -n "${!key+set}" ]; then continue; fi  # the environment wins, as in the Python settings
        lf_trim "${line#*=}"
        lf_dotenv_value "$LF_TRIMMED"
        printf -v "$key" '%s' "$LF_VALUE"
        export "${key?}"
    done <"$file"
}

lf_env_file() {  # the .env the Python settings read (the current directory), else the repo's
    if [ -n "${LLAMAFILE_ENV_FILE:-}" ]; then printf '%s\n' "$LLAMAFILE_ENV_FILE"
    elif [ -f ./.env ]; then printf '%s\n' "./.env"
    else printf '%s\n' "$LF_ROOT/.env"
    fi
}

lf_split_args() {  # lf_split_args TEXT -> LF_ARGS: shell-like words, quotes honoured, nothing run
    LF_ARGS=()
    local word
    [ -n "${1//[[:space:]]/}" ] || return 0
    while IFS= read -r word; do LF_ARGS+=("$word"); done < <(printf '%s' "$1" | xargs -n 1 printf '%s\n') \
        || lf_die "cannot parse server arguments: $1"
}

# --- checksums and downloads ---------------------------------------------------------------------

lf_sha256() {  # lf_sha256 FILE -> hex digest
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d ' ' -f 1
    else lf_die "neither sha256sum nor shasum is installed; cannot verify downloads"
    fi
}

lf_lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

lf_verify() {  # lf_verify FILE EXPECTED LABEL: dies on a mismatch; remembers a verified file
    local file=$1 expected actual
    expected=$(lf_lower "$2")
    if [ -z "$expected" ]; then
        if [ "${LLAMAFILE_REQUIRE_SHA256:-}" = 1 ]; then
            lf_die "$3: no sha256 is pinned and LLAMAFILE_REQUIRE_SHA256=1; set its _SHA256 variable"
        fi
        [ -f "$file.sha256" ] && return 0
        actual=$(lf_sha256 "$file")
        lf_say "WARNING: $3 is NOT verified (no sha256 pinned). Its sha256 is $actual;" \
            "pin it with the matching _SHA256 variable to have it checked."
        printf '%s\n' "$actual" >"$file.sha256"
        return 0
    fi
    if [ -f "$file.sha256" ] && [ "$(cat "$file.sha256")" = "$expected" ]; then return 0; fi
    actual=$(lf_sha256 "$file")
    if [ "$actual" != "$expected" ]; then
        return 1
    fi
    printf '%s\n' "$actual" >"$file.sha256"
}

lf_download() {  # lf_download URL FILE SHA256 LABEL: resumable, verified, never leaves a bad file
    local url=$1 file=$2 sha=$3 label=$4 rc=0
    if [ -s "$file" ]; then
        lf_verify "$file" "$sha" "$label" && return 0
        lf_die "$label: $file does not match sha256 $sha; delete it to download again"
    fi
    if [ -z "$sha" ] && [ "${LLAMAFILE_REQUIRE_SHA256:-}" = 1 ]; then
        lf_die "$label: no sha256 is pinned and LLAMAFILE_REQUIRE_SHA256=1; set its _SHA256 variable"
    fi
    command -v curl >/dev/null 2>&1 || lf_die "curl is needed to download $url"
    mkdir -p "$(dirname "$file")"
    if [ -s "$file.part" ]; then lf_say "resuming $label from $url"; else lf_say "downloading $label from $url"; fi
    curl -fL --retry 3 --progress-bar -C - -o "$file.part" "$url" || rc=$?
    if [ "$rc" = 33 ]; then  # the server cannot resume: start over
        lf_say "the server does not support resuming; downloading $label again from the start"
        rm -f "$file.part"; rc=0
        curl -fL --retry 3 --progress-bar -o "$file.part" "$url" || rc=$?
    fi
    [ "$rc" = 0 ] || lf_die "download of $label failed (curl exit $rc): $url; run again to resume"
    if ! lf_verify "$file.part" "$sha" "$label"; then
        rm -f "$file.part" "$file.part.sha256"
        lf_die "$label: checksum mismatch for $url (expected sha256 $sha); the download was deleted." \
            "Check the URL and its _SHA256 value."
    fi
    mv "$file.part" "$file"
    [ -f "$file.part.sha256" ] && mv "$file.part.sha256" "$file.sha256"
    return 0
}

# --- running llamafiles ----------------------------------------------------------------------------

# lf_probe FILE: how to run FILE (LF_LAUNCH: the file itself, or `sh FILE`) and its dialect
# (LF_DIALECT: classic = llamafile 0.8-0.9, v10 = llamafile 0.10+, llama-server = upstream).
lf_probe() {
    local file=$1 out rc=0 classic_re='llamafile v0\.[0-9]\.' new_re='llamafile v(0\.[1-9][0-9]+|[1-9][0-9]*)\.'
    local server_re='^version: [0-9]+'
    chmod +x "$file" 2>/dev/null || true
    LF_LAUNCH=("$file")
    out=$("$file" --version 2>&1) || rc=$?
    if [ "$rc" != 0 ]; then
        if out=$(sh "$file" --version 2>&1); then
            lf_say "running $file directly failed (exit $rc), but \`sh $file\` works: using sh." \
                "On Linux this is the binfmt_misc/APE problem (WINE or another handler claims the file)."
            lf_say "To run llamafiles directly, register the APE loader: see" \
                "https://github.com/Mozilla-Ocho/llamafile#gotchas-and-troubleshooting"
            LF_LAUNCH=(sh "$file")
        else
            lf_die "$file does not run (exit $rc): $(printf '%s' "$out" | tail -n 3)"
        fi
    fi
    LF_VERSION=$(printf '%s\n' "$out" | head -n 1)
    case ${LLAMAFILE_DIALECT:-} in
        classic|v10|llama-server) LF_DIALECT=$LLAMAFILE_DIALECT; return 0 ;;
        '') ;;
        *) lf_die "LLAMAFILE_DIALECT=$LLAMAFILE_DIALECT: use classic (llamafile 0.8-0.9), v10 or llama-server" ;;
    esac
    if [[ $out =~ $classic_re ]]; then LF_DIALECT=classic
    elif [[ $out =~ $new_re ]]; then LF_DIALECT=v10
    elif [[ $out =~ $server_re ]]; then LF_DIALECT=llama-server
    else lf_die "$file --version printed '$LF_VERSION': not a llamafile or llama-server this script knows;" \
        "if it is one, set LLAMAFILE_DIALECT to classic (0.8-0.9 flags), v10 (0.10+) or llama-server"
    fi
}

lf_role_upper() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]'; }

lf_get() {  # lf_get NAME DEFAULT -> value of variable NAME, or DEFAULT when unset/empty
    local name=$1
    if [ -n "${!name:-}" ]; then printf '%s\n' "${!name}"; else printf '%s\n' "$2"; fi
}

# lf_prepare ROLE (smart|fast): download and check the role's model. Sets LF_LAUNCH (the command
# that runs it, weights included), LF_DIALECT, LF_VERSION and LF_MODEL (the model file).
lf_prepare() {
    local role=$1 up url file sha default_url default_sha='' bin_url bin_file bin_sha
    up=$(lf_role_upper "$role")
    if [ "$role" = smart ]; then default_url=$LF_DEFAULT_SMART_URL; else default_url=$LF_DEFAULT_FAST_URL; fi
    url=$(lf_get "LLAMAFILE_${up}_MODEL_URL" "$default_url")
    if [ "$url" = "$default_url" ]; then  # a pinned digest belongs to its URL only
        if [ "$role" = smart ]; then default_sha=$LF_DEFAULT_SMART_SHA256; else default_sha=$LF_DEFAULT_FAST_SHA256; fi
    fi
    file=$(lf_get "LLAMAFILE_${up}_MODEL_FILE" "$(basename "${url%%\?*}")")
    sha=$(lf_get "LLAMAFILE_${up}_MODEL_SHA256" "$default_sha")
    case $file in /*) ;; *) file=$LF_MODELS_DIR/$file ;; esac
    lf_download "$url" "$file" "$sha" "$role model"
    LF_MODEL=$file
    case $file in
        *.gguf|*.GGUF)  # bare runtime + external weights
            bin_url=$(lf_get LLAMAFILE_BINARY_URL "$LF_DEFAULT_BINARY_URL")
            bin_file=$(lf_get LLAMAFILE_BINARY_FILE "$(basename "${bin_url%%\?*}")")
            bin_sha=$(lf_get LLAMAFILE_BINARY_SHA256 "")
            case $bin_file in /*) ;; *) bin_file=$LF_MODELS_DIR/$bin_file ;; esac
            lf_download "$bin_url" "$bin_file" "$bin_sha" "llamafile binary"
            lf_probe "$bin_file"
            LF_LAUNCH+=(-m "$file")
            ;;
        *)
            lf_probe "$file"
            ;;
    esac
}

lf_init() {  # common start: where things are, settings from .env
    LF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    lf_load_env "$(lf_env_file)"
    LF_MODELS_DIR=${LLAMAFILE_MODELS_DIR:-$LF_CACHE/llamafiles}
    LF_RUN_DIR=${LLAMAFILE_RUN_DIR:-$LF_CACHE/run}
}
