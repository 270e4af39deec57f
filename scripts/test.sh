#!/usr/bin/env bash
# Sets everything up (the runtime's .venv, vLLM's own environment with its converted model, the
# toolchains of the game-engine client tests, and PostgreSQL and HAProxy for the memory and deployment tests)
# and runs the whole test suite. Extra arguments go to pytest (e.g. -k grammar, -m "not vllm").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "${NPC_SKIP_CLIENTS:-0}" != "1" ]; then
  scripts/setup_clients.sh      # mono (Unity client), g++ (Unreal core), chromium (browser demo)
  export NPC_REQUIRE_CLIENTS=1
fi
if [ "${NPC_SKIP_SERVICES:-0}" != "1" ]; then
  scripts/setup_services.sh     # PostgreSQL (shared memory), HAProxy (two servers behind a balancer)
  export NPC_REQUIRE_SERVICES=1
fi
if [ "${NPC_SKIP_VLLM:-0}" != "1" ]; then
  scripts/setup_vllm.sh
  export NPC_REQUIRE_VLLM=1
fi
.venv/bin/lint-imports
.venv/bin/ruff check npc_runtime tests scripts training   # lint ([tool.ruff] in pyproject.toml)
.venv/bin/mypy          # strict types on the core modules ([tool.mypy] in pyproject.toml)
exec .venv/bin/python -m pytest "$@"
