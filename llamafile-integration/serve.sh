#!/usr/bin/env bash
# Serve a *smart* and a *fast* llamafile (downloaded once by setup-llamafile.sh's code).
#
#   ./llamafile-integration/serve.sh           # smart on 8080, fast on 8081; Ctrl-C stops both
#   ./llamafile-integration/serve.sh start     # the same, in the background (returns once both answer)
#   ./llamafile-integration/serve.sh status    # what this script started, and whether it answers
#   ./llamafile-integration/serve.sh stop      # stop what this script started (nothing else)
#
# Settings: the environment, then .env (read as data, never run), then defaults; see
# .env.llamafile.example. Besides the download settings of setup-llamafile.sh:
#   LLAMAFILE_HOST (127.0.0.1)     where to listen; any other address needs LLAMAFILE_API_KEY, or
#                                  LLAMAFILE_ALLOW_NO_KEY=1 to serve it open on purpose
#   LLAMAFILE_SMART_PORT (8080) / LLAMAFILE_FAST_PORT (8081)
#   LLAMAFILE_FAST_MODEL_URL=same  serve one model for both, on the smart port
#   LLAMAFILE_API_KEY              required by the servers; passed in a 0600 file (--api-key-file),
#                                  so neither `ps` nor the servers' environment shows it
#   LLAMAFILE_SERVER_ARGS          extra server arguments for both ("-c 8192 -ngl 999"; quotes work)
#   LLAMAFILE_SMART_SERVER_ARGS / LLAMAFILE_FAST_SERVER_ARGS   extra arguments for one of them
#   LLAMAFILE_STARTUP_TIMEOUT (600) seconds to wait for a model to load
#   LLAMAFILE_RUN_DIR              pid files and logs (~/.cache/llamafile-provider/run)
#
# A busy port is refused (never port+1), a server that dies while loading is reported with the
# tail of its log, and stop/status act only on processes whose pid files this script wrote.
set -euo pipefail
LF_NAME=serve.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

start_time() {  # start_time PID -> the process's start time (with the pid, its identity)
    LC_ALL=C ps -p "$1" -o lstart= 2>/dev/null | sed 's/^ *//; s/ *$//'
}

connect_host() {  # the address to reach HOST from here
    case $HOST in
        0.0.0.0|'') echo 127.0.0.1 ;;
        ::) echo '[::1]' ;;
        *:*) echo "[$HOST]" ;;
        *) echo "$HOST" ;;
    esac
}

http_code() {  # http_code PORT PATH -> status code, 000 when nothing answers
    curl -s -o /dev/null --max-time 3 -w '%{http_code}' "http://$(connect_host):$1$2" 2>/dev/null || true
}

port_in_use() {  # true when anything accepts connections on PORT (curl exit 7: refused)
    local rc=0
    curl -s -o /dev/null --max-time 3 "http://$(connect_host):$1/" 2>/dev/null || rc=$?
    [ "$rc" != 7 ]
}

# owned ROLE: true when ROLE's pid file names a live process this script started; sets PID, PORT.
owned() {
    local file=$LF_RUN_DIR/$1.pid recorded
    [ -f "$file" ] || return 1
    { read -r PID; read -r recorded; read -r PORT; } <"$file" || return 1
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null && [ "$(start_time "$PID")" = "$recorded" ]; then
        return 0
    fi
    rm -f "$file"  # stale: that process is gone (or the pid now belongs to someone else)
    return 1
}

log_tail() { tail -n "${2:-20}" "$LF_RUN_DIR/$1.log" 2>/dev/null | sed 's/^/    /' >&2 || true; }

launch() {  # launch ROLE PORT: start ROLE's server in the background and record it
    local role=$1 port=$2 up flags=() extra=()
    up=$(lf_role_upper "$role")
    lf_prepare "$role"
    case $LF_DIALECT in
        classic) flags=(--server --nobrowser) ;;
        v10) flags=(--server) ;;  # llamafile 0.10 refuses --nobrowser
        llama-server) flags=() ;;
    esac
    flags+=(--host "$HOST" --port "$port")
    [ -n "${LLAMAFILE_API_KEY:-}" ] && flags+=(--api-key-file "$KEY_FILE")
    lf_split_args "${LLAMAFILE_SERVER_ARGS:-}"
    extra=(${LF_ARGS[@]+"${LF_ARGS[@]}"})
    lf_split_args "$(lf_get "LLAMAFILE_${up}_SERVER_ARGS" "")"
    extra+=(${LF_ARGS[@]+"${LF_ARGS[@]}"})
    # The key stays out of the server's environment too (`ps e` shows environments).
    env -u LLAMAFILE_API_KEY nohup "${LF_LAUNCH[@]}" "${flags[@]}" ${extra[@]+"${extra[@]}"} \
        </dev/null >"$LF_RUN_DIR/$role.log" 2>&1 &
    local pid=$!
    printf '%s\n%s\n%s\n' "$pid" "$(start_time "$pid")" "$port" >"$LF_RUN_DIR/$role.pid"
    echo "$role: starting $(basename "$LF_MODEL") ($LF_VERSION) on http://$(connect_host):$port" \
        "(log: $LF_RUN_DIR/$role.log)"
}

moved_port() {  # moved_port ROLE: the port ROLE's log says it listens on, when not the one asked for
    local found port_re='listening (at|on) https?://[^ ]*:([0-9]+)'
    found=$(grep -Eo "$port_re" "$LF_RUN_DIR/$1.log" 2>/dev/null | tail -n 1 || true)
    if [[ $found =~ $port_re ]] && [ "${BASH_REMATCH[2]}" != "$PORT" ]; then
        printf '%s\n' "${BASH_REMATCH[2]}"
    fi
}

wait_ready() {  # wait_ready ROLE: until its server answers /health, or it dies, or time runs out
    local role=$1 deadline code moved
    deadline=$(($(date +%s) + ${LLAMAFILE_STARTUP_TIMEOUT:-600}))
    owned "$role" || { echo "$role: its server exited at once; its log ends with:" >&2; log_tail "$role"; return 1; }
    while :; do
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "$role: the server exited while starting; its log ends with:" >&2
            log_tail "$role"
            return 1
        fi
        # Classic llamafile moves to port+1 when its port is taken: what answers on PORT is not ours.
        moved=$(moved_port "$role")
        if [ -n "$moved" ]; then
            echo "$role: the server went to port $moved, not $PORT (another program took $PORT); stopping it" >&2
            return 1
        fi
        code=$(http_code "$PORT" /health)
        if [ "$code" = 200 ] && kill -0 "$PID" 2>/dev/null && [ -z "$(moved_port "$role")" ]; then break; fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "$role: not ready after ${LLAMAFILE_STARTUP_TIMEOUT:-600}s (last /health: $code); log:" >&2
            log_tail "$role"
            return 1
        fi
        sleep 1
    done
    echo "$role ready: http://$(connect_host):$PORT"
}

stop_role() {  # stop_role ROLE: TERM, then KILL after 15 s; only a process we started
    local role=$1 i
    owned "$role" || return 0
    kill "$PID" 2>/dev/null || true
    for i in $(seq 1 30); do
        kill -0 "$PID" 2>/dev/null || break
        [ "$i" = 30 ] && kill -9 "$PID" 2>/dev/null
        sleep 0.5
    done
    rm -f "$LF_RUN_DIR/$role.pid"
    echo "$role: stopped (pid $PID)"
}

stop_all() {
    stop_role smart
    stop_role fast
    rm -f "$KEY_FILE"
}

status() {  # exit 0: what this script started runs and answers; 1: some of it does not; 3: nothing runs
    local role code state running=0 unready=0
    for role in smart fast; do
        if owned "$role"; then
            running=$((running + 1))
            code=$(http_code "$PORT" /health)
            case $code in 200) state=ready ;; 503) state=loading ;; *) state="not answering (HTTP $code)" ;; esac
            [ "$code" = 200 ] || unready=$((unready + 1))
            echo "$role: running, pid $PID, http://$(connect_host):$PORT, $state"
        else
            echo "$role: not running"
        fi
    done
    [ "$running" -gt 0 ] || return 3
    [ "$unready" = 0 ]
}

start() {  # start MODE (run|start)
    local mode=$1 role port roles=(smart fast)
    for role in smart fast; do
        owned "$role" && lf_die "$role is already running (pid $PID, port $PORT); run '$0 stop' first"
    done
    if [ "${LLAMAFILE_FAST_MODEL_URL:-}" = same ]; then roles=(smart); fi
    case $HOST in
        127.*|localhost|::1) ;;
        *)
            if [ -z "${LLAMAFILE_API_KEY:-}" ] && [ "${LLAMAFILE_ALLOW_NO_KEY:-}" != 1 ]; then
                lf_die "refusing to listen on $HOST without an API key: set LLAMAFILE_API_KEY," \
                    "or LLAMAFILE_ALLOW_NO_KEY=1 to serve an open server on purpose"
            fi
            ;;
    esac
    [ "$SMART_PORT" != "$FAST_PORT" ] || [ "${#roles[@]}" = 1 ] \
        || lf_die "LLAMAFILE_SMART_PORT and LLAMAFILE_FAST_PORT are both $SMART_PORT; give them different ports"
    for role in "${roles[@]}"; do
        if [ "$role" = smart ]; then port=$SMART_PORT; else port=$FAST_PORT; fi
        if port_in_use "$port"; then
            lf_die "port $port ($role) is already in use by another program; stop it, or set" \
                "LLAMAFILE_$(lf_role_upper "$role")_PORT to a free port"
        fi
    done
    mkdir -p "$LF_MODELS_DIR" "$LF_RUN_DIR"
    if [ -n "${LLAMAFILE_API_KEY:-}" ]; then
        (umask 077 && printf '%s\n' "$LLAMAFILE_API_KEY" >"$KEY_FILE")
    fi
    trap 'stop_all; exit 130' INT
    trap 'stop_all; exit 143' TERM
    trap 'stop_all' EXIT  # until the servers are up (start) or for good (run)
    for role in "${roles[@]}"; do
        if [ "$role" = smart ]; then launch smart "$SMART_PORT"; else launch fast "$FAST_PORT"; fi
    done
    for role in "${roles[@]}"; do
        wait_ready "$role" || exit 1
    done
    if [ "${#roles[@]}" = 1 ]; then
        echo "One model serves both: set LLAMAFILE_API_BASE=http://$(connect_host):$SMART_PORT/v1 for the provider."
    fi
    if [ "$mode" = start ]; then
        trap - EXIT INT TERM
        echo "Servers are up. '$0 status' shows them, '$0 stop' stops them."
        return 0
    fi
    echo "Servers are up. Point AutoGPT at them with .env (see .env.llamafile.example). Ctrl-C stops them."
    while owned smart || owned fast; do sleep 1; done
    echo "the servers have exited" >&2
    exit 1
}

lf_init
HOST=${LLAMAFILE_HOST:-127.0.0.1}
SMART_PORT=${LLAMAFILE_SMART_PORT:-8080}
FAST_PORT=${LLAMAFILE_FAST_PORT:-8081}
KEY_FILE=$LF_RUN_DIR/api-key

case ${1:-run} in
    run|start) start "${1:-run}" ;;
    stop) stop_all ;;
    status) status ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
