#!/usr/bin/env bash
# Stop the local LLM server started by .ci/llm-server.sh (by its PID file). Idempotent.
set -euo pipefail

VENV="${STEADFAST_LLM_VENV:-/tmp/steadfast-llm}"
PID_FILE="$VENV/run/server.pid"

log() { printf 'llm-server-stop: %s\n' "$*" >&2; }

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
if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "llm_server.py"; then
    log "pid $pid is not the LLM server (PID reused); removing the stale PID file"
    rm -f "$PID_FILE"
    exit 0
fi

kill -TERM "$pid"
for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PID_FILE"
log "stopped pid $pid"
