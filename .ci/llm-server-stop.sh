#!/usr/bin/env bash
# Stop the local LLM server started by .ci/llm-server.sh. Idempotent.
set -euo pipefail
VENV="${STEADFAST_LLM_VENV:-/tmp/steadfast-llm}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/stop-pidfile.sh" llm-server "$VENV/run/server.pid" "llm_server.py" 10
