#!/usr/bin/env bash
# Serve the converted SmolLM2 with vLLM (CPU build) on loopback, in the foreground.
#
#   scripts/vllm_server.sh [PORT] [extra vllm args...]
#
# Needs scripts/setup_vllm.sh first. The process execs into vLLM's API server, so the PID of
# this script is the server's: kill it (or its process group) to stop it. Ready when
# GET /health answers 200 (~25-40 s here). Model name on the API: smollm2-135m-instruct.
#
# Environment (all optional):
#   NPC_VLLM_HOME               where setup_vllm.sh put venv/ and models/ (~/.cache/npc_runtime/vllm)
#   NPC_VLLM_MODEL_DIR          another HF model folder to serve
#   VLLM_CPU_KVCACHE_SPACE      GiB of KV cache (default here 2; vLLM's own default is 4 GiB)
#   NPC_VLLM_DTYPE              bfloat16 | float32 | auto (default auto: bfloat16 when the CPU has
#                               avx512_bf16 or amx_bf16, else float32 — on an AVX2-only CPU oneDNN
#                               cannot build bf16 matmuls, vLLM falls back to plain torch and
#                               prefill gets ~5x slower)
#   NPC_VLLM_SO_BACKEND         structured-output backend (default xgrammar; see docs/vllm.md: with
#                               vLLM's "auto", a grammar xgrammar rejects falls back to llguidance,
#                               and some (e.g. with the "." wildcard) then fail with HTTP 500)
#   VLLM_CPU_OMP_THREADS_BIND   "auto" (vLLM's default: one core kept for the API/scheduler
#                               process, the worker's OpenMP threads pinned to the rest — on a
#                               2-core machine that is 1 thread on the last core), "nobind", or
#                               a core list such as "1" or "0-1"
set -euo pipefail

PORT="${1:-8000}"
shift || true
VLLM_HOME="${NPC_VLLM_HOME:-$HOME/.cache/npc_runtime/vllm}"
VENV="$VLLM_HOME/venv"
MODEL_DIR="${NPC_VLLM_MODEL_DIR:-$VLLM_HOME/models/smollm2-135m-instruct-bf16}"

if [[ ! -x "$VENV/bin/python" || ! -f "$MODEL_DIR/config.json" ]]; then
  echo "vllm_server.sh: no vLLM environment at $VLLM_HOME (run scripts/setup_vllm.sh)" >&2
  exit 3
fi

DTYPE="${NPC_VLLM_DTYPE:-auto}"
if [[ "$DTYPE" == auto ]]; then
  if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then DTYPE=bfloat16; else DTYPE=float32; fi
fi

export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"
export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-auto}"
# Offline: never reach a hub, never send usage statistics.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export PYTHONUNBUFFERED=1

echo "vllm_server.sh: serving $MODEL_DIR on 127.0.0.1:$PORT" \
     "(dtype $DTYPE, KV cache ${VLLM_CPU_KVCACHE_SPACE} GiB, bind=$VLLM_CPU_OMP_THREADS_BIND)" >&2
# --enforce-eager: without it every start spends 60-80 s compiling (torch.compile + graphs).
# Prefix caching is on by default in vLLM V1 (--enable-prefix-caching is implied).
exec "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
  --model "$MODEL_DIR" \
  --served-model-name smollm2-135m-instruct \
  --host 127.0.0.1 --port "$PORT" \
  --dtype "$DTYPE" \
  --max-model-len 2048 \
  --enforce-eager \
  --enable-prefix-caching \
  --structured-outputs-config.backend "${NPC_VLLM_SO_BACKEND:-xgrammar}" \
  "$@"
