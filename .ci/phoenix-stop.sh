#!/usr/bin/env bash
# Stop the Phoenix server started by .ci/phoenix.sh (by its PID file). Idempotent.
set -euo pipefail

VENV="${STEADFAST_PHOENIX_VENV:-/tmp/steadfast-phoenix}"
PID_FILE="$VENV/run/server.pid"

log() { printf 'phoenix-stop: %s\n' "$*" >&2; }

pid="$(cat "$PID_FILE" 2>/dev/null || true)"
if [[ ! "$pid" =~ ^[0-9]+$ ]]; then
    log "no PID file at $PID_FILE: nothing to stop"
    exit 0
fi
if ! kill -0 "$pid" 2>/dev/null; then
    log "pid $pid is not running; removing the stale PID file"
    rm -f "$PID_FILE"
    exit 0
fi
# Never signal a process that merely reuses the PID.
if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "phoenix serve"; then
    log "pid $pid is not Phoenix (PID reused); removing the stale PID file"
    rm -f "$PID_FILE"
    exit 0
fi

kill -TERM "$pid"
for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ignored SIGTERM for 15 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PID_FILE"
log "stopped pid $pid"
