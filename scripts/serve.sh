#!/usr/bin/env bash
# Sets everything up (first run only) and starts the server on the embedded model.
# Extra arguments go to `npc serve` (e.g. --port 9000, --host 0.0.0.0, --llm vllm --vllm-url ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/npc serve "$@"
