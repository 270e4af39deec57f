#!/usr/bin/env bash
# Sets everything up (the runtime's .venv, and vLLM's own environment with its converted model)
# and runs the whole test suite. Extra arguments go to pytest (e.g. -k grammar, -m "not vllm").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "${NPC_SKIP_VLLM:-0}" != "1" ]; then
  scripts/setup_vllm.sh
  export NPC_REQUIRE_VLLM=1
fi
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
