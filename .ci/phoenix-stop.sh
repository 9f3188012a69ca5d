#!/usr/bin/env bash
# Stop the Phoenix server started by .ci/phoenix.sh. Idempotent.
set -euo pipefail
VENV="${STEADFAST_PHOENIX_VENV:-/tmp/steadfast-phoenix}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/stop-pidfile.sh" phoenix "$VENV/run/server.pid" "phoenix serve" 15
