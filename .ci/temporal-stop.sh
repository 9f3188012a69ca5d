#!/usr/bin/env bash
# Stop the Temporal dev server started by .ci/temporal.sh. Idempotent.
set -euo pipefail
VENV="${STEADFAST_TEMPORAL_VENV:-/tmp/steadfast-temporal}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/stop-pidfile.sh" temporal "$VENV/run/server.pid" "start-dev" 10
