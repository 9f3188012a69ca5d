#!/usr/bin/env bash
# Install and start Arize Phoenix (PyPI), a real OTLP trace receiver, bound to 127.0.0.1, for the
# tests of steadfast-otel that export spans and read them back over Phoenix's REST API.
#
#   eval "$(bash .ci/phoenix.sh)"     # sets STEADFAST_OTLP_URL and STEADFAST_OTLP_GRPC
#   bash .ci/phoenix-stop.sh          # stops it
#
# Idempotent: an existing venv and package are reused, and a healthy server that is already
# running is reused too. The only lines on stdout are the `export ...` lines; progress and errors
# go to stderr, the server's own output to $STEADFAST_PHOENIX_VENV/run/server.log.
#
# Environment:
#   STEADFAST_PHOENIX_VENV     venv and state directory         (default /tmp/steadfast-phoenix)
#   STEADFAST_PHOENIX_PORT     HTTP port (UI, REST, OTLP/HTTP)  (default: a free one)
#   STEADFAST_PHOENIX_GRPC     OTLP/gRPC port                   (default: a free one)
#   STEADFAST_PHOENIX_TIMEOUT  seconds to wait for /healthz     (default 300)
#   STEADFAST_PHOENIX_SPEC     pip requirement                  (default arize-phoenix==20.26.1)
#   PYTHON                     interpreter for the venv         (default python3)
set -euo pipefail

VENV="${STEADFAST_PHOENIX_VENV:-/tmp/steadfast-phoenix}"
TIMEOUT="${STEADFAST_PHOENIX_TIMEOUT:-300}"
PYTHON="${PYTHON:-python3}"
# Pinned so that every CI machine runs the same receiver; override to try another.
SPEC="${STEADFAST_PHOENIX_SPEC:-arize-phoenix==20.26.1}"

RUN_DIR="$VENV/run"
PID_FILE="$RUN_DIR/server.pid"
PORTS_FILE="$RUN_DIR/server.ports"
LOG_FILE="$RUN_DIR/server.log"
DATA_DIR="$RUN_DIR/data"
VPY="$VENV/bin/python"

log() { printf 'phoenix: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

T0="$(now)"

# --- 1. venv + arize-phoenix -----------------------------------------------------------------
if [[ ! -x "$VPY" ]]; then
    command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH (set PYTHON)"
    log "creating venv $VENV"
    "$PYTHON" -m venv "$VENV" >&2 || die "cannot create the venv at $VENV (is python3-venv installed?)"
fi
# A stamp file instead of `import phoenix`, which alone takes seconds.
STAMP="$VENV/.steadfast-installed"
if [[ ! -x "$VENV/bin/phoenix" ]] || [[ "$(cat "$STAMP" 2>/dev/null || true)" != "$SPEC" ]]; then
    log "installing $SPEC (several minutes on a fresh machine)"
    "$VPY" -m pip install --quiet --disable-pip-version-check "$SPEC" >&2 \
        || die "pip install $SPEC failed"
    echo "$SPEC" >"$STAMP"
    log "installed in $(elapsed "$T0") s"
else
    log "arize-phoenix already installed"
fi

# --- 2. the server -----------------------------------------------------------------------------
mkdir -p "$RUN_DIR" "$DATA_DIR"

healthy() { # http port -> 0 when /healthz answers 200
    "$VPY" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

port_free() { # port -> 0 when nothing listens on it (the gRPC port binds every interface)
    "$VPY" - "$1" <<'PY' 2>/dev/null
import socket, sys
for host in ("127.0.0.1", "0.0.0.0"):
    s = socket.socket()
    try:
        s.bind((host, int(sys.argv[1])))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
}

free_port() {
    "$VPY" -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1]); s.close()'
}

# The PID in $PID_FILE, if that process is alive and is Phoenix (not a reused PID).
running_pid() {
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "phoenix serve" || return 1
    echo "$pid"
}

emit() { # http grpc
    log "ready after $(elapsed "$T0") s in total: http://127.0.0.1:$1 (OTLP/gRPC :$2, pid $(cat "$PID_FILE"), log $LOG_FILE)"
    echo "export STEADFAST_OTLP_URL=http://127.0.0.1:$1"
    echo "export STEADFAST_OTLP_GRPC=http://127.0.0.1:$2"
}

if pid="$(running_pid)"; then
    read -r old_http old_grpc <"$PORTS_FILE" 2>/dev/null || true
    if [[ -n "${old_http:-}" && -n "${old_grpc:-}" ]] \
        && { [[ -z "${STEADFAST_PHOENIX_PORT:-}" ]] || [[ "$STEADFAST_PHOENIX_PORT" == "$old_http" ]]; } \
        && { [[ -z "${STEADFAST_PHOENIX_GRPC:-}" ]] || [[ "$STEADFAST_PHOENIX_GRPC" == "$old_grpc" ]]; } \
        && healthy "$old_http"; then
        log "server already running (pid $pid, ports $old_http/$old_grpc)"
        emit "$old_http" "$old_grpc"
        exit 0
    fi
    log "stopping the running server (pid $pid): other ports requested or unhealthy"
    bash "$(dirname "${BASH_SOURCE[0]}")/phoenix-stop.sh" >&2
fi

HTTP_PORT="${STEADFAST_PHOENIX_PORT:-$(free_port)}"
GRPC_PORT="${STEADFAST_PHOENIX_GRPC:-$(free_port)}"
[[ "$HTTP_PORT" =~ ^[0-9]+$ && "$GRPC_PORT" =~ ^[0-9]+$ ]] || die "ports must be numbers"
[[ "$HTTP_PORT" != "$GRPC_PORT" ]] || GRPC_PORT="$(free_port)"
port_free "$HTTP_PORT" || die "port $HTTP_PORT is in use (unset STEADFAST_PHOENIX_PORT to pick a free one)"
port_free "$GRPC_PORT" || die "port $GRPC_PORT is in use (unset STEADFAST_PHOENIX_GRPC to pick a free one)"

rm -f "$PID_FILE"
# A fresh database for each server start: nothing from earlier runs.
rm -rf "$DATA_DIR" && mkdir -p "$DATA_DIR"
echo "$HTTP_PORT $GRPC_PORT" >"$PORTS_FILE"
: >"$LOG_FILE"
log "starting Phoenix on 127.0.0.1:$HTTP_PORT (OTLP/gRPC :$GRPC_PORT), log $LOG_FILE"
T1="$(now)"
# Own session (setsid) so the server outlives this script; no inherited stdout, so `$(...)`
# around this script returns as soon as the script ends. A throwaway SQLite database.
PHOENIX_WORKING_DIR="$DATA_DIR" PHOENIX_HOST=127.0.0.1 PHOENIX_PORT="$HTTP_PORT" \
PHOENIX_GRPC_PORT="$GRPC_PORT" PHOENIX_TELEMETRY_ENABLED=false DO_NOT_TRACK=1 \
    setsid "$VENV/bin/phoenix" serve </dev/null >>"$LOG_FILE" 2>&1 &
echo $! >"$PID_FILE"
LAUNCH_PID="$(cat "$PID_FILE")"

fail_start() {
    log "ERROR: $1"
    log "---- last 60 lines of $LOG_FILE ----"
    tail -n 60 "$LOG_FILE" >&2 || true
    log "------------------------------------"
    kill "$LAUNCH_PID" 2>/dev/null || true
    rm -f "$PID_FILE"
    exit 1
}

deadline=$(( $(date +%s) + TIMEOUT ))
until healthy "$HTTP_PORT"; do
    kill -0 "$LAUNCH_PID" 2>/dev/null || fail_start "Phoenix exited before it was ready"
    (( $(date +%s) < deadline )) || fail_start "Phoenix was not ready within ${TIMEOUT} s (GET http://127.0.0.1:$HTTP_PORT/healthz)"
    sleep 0.5
done
log "server healthy after $(elapsed "$T1") s"
emit "$HTTP_PORT" "$GRPC_PORT"
