#!/usr/bin/env bash
# The toolchains that the game-engine client tests need (issue 8), from Debian's packages:
#   mono-mcs + mono-devel  — compile and run the Unity client's engine-independent assemblies (C#)
#   g++                    — compile and test the Unreal plugin's plain C++17 core
#   chromium               — the browser demo's test (headless, with a fake microphone)
#   nodejs + npm           — the npm openai package's realtime client against /v1/realtime (issue 17), installed
#                            from tests/node_realtime/package-lock.json into ~/.cache/npc_runtime/node_realtime
# Installs only what is missing; needs root (or sudo) for apt-get. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

want=()
command -v mcs >/dev/null 2>&1 || want+=(mono-mcs)
[ -e /usr/lib/mono/4.5/System.Net.Http.dll ] || want+=(mono-devel)
command -v mono >/dev/null 2>&1 || want+=(mono-runtime)
command -v g++ >/dev/null 2>&1 || want+=(g++)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
command -v node >/dev/null 2>&1 || want+=(nodejs)
command -v npm >/dev/null 2>&1 || want+=(npm)

if [ "${#want[@]}" -gt 0 ]; then
  echo "setup_clients: installing ${want[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends "${want[@]}" >/tmp/npc-setup-clients.log 2>&1; then
    $SUDO apt-get update >>/tmp/npc-setup-clients.log 2>&1
    $SUDO apt-get install -y --no-install-recommends "${want[@]}" >>/tmp/npc-setup-clients.log 2>&1 \
      || { tail -20 /tmp/npc-setup-clients.log >&2; exit 1; }
  fi
fi
echo "setup_clients: mcs $(mcs --version 2>/dev/null | awk '{print $NF}'), g++ $(g++ -dumpversion), $(chromium --version 2>/dev/null)" >&2
# The npm openai package (its realtime WebSocket client) for tests/test_realtime.py, pinned by the lock file.
NODE_RT="${NPC_NODE_REALTIME:-${XDG_CACHE_HOME:-$HOME/.cache}/npc_runtime/node_realtime}"
if ! cmp -s tests/node_realtime/package-lock.json "$NODE_RT/package-lock.json" || [ ! -d "$NODE_RT/node_modules/openai" ]; then
  mkdir -p "$NODE_RT"
  cp tests/node_realtime/package.json tests/node_realtime/package-lock.json "$NODE_RT/"
  (cd "$NODE_RT" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
