#!/usr/bin/env bash
# Stop a server started by one of the .ci scripts, by its PID file. Idempotent.
#
#   bash .ci/stop-pidfile.sh NAME PID_FILE CMDLINE_PATTERN [GRACE_SECONDS]
#
# The process is signalled only if its command line contains CMDLINE_PATTERN, so a PID reused by
# another process is never touched. SIGTERM first, SIGKILL after GRACE_SECONDS (default 10).
set -euo pipefail

NAME="$1" PID_FILE="$2" PATTERN="$3" GRACE="${4:-10}"
log() { printf '%s: %s\n' "$NAME" "$*" >&2; }

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
if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$PATTERN"; then
    log "pid $pid is not $NAME (PID reused); removing the stale PID file"
    rm -f "$PID_FILE"
    exit 0
fi

kill -TERM "$pid"
for _ in $(seq $((GRACE * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ignored SIGTERM for $GRACE s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PID_FILE"
log "stopped pid $pid"
