#!/usr/bin/env bash
# The load matrix of docs/performance.md against a running server: text and voice turns at 1, 4 and 16
# concurrent sessions, one `npc bench` run each, then a Markdown summary of them all.
#
#   scripts/bench_matrix.sh ws://127.0.0.1:8765 OUT_DIR [text|audio|all]
#
# Writes OUT_DIR/{text,audio}-c{1,4,16}/bench.{json,png} and OUT_DIR/summary.md. Each group takes
# 1-4 minutes on a 2-core CPU. The 1-client text run measures the cold turn too (--warmup 0).
# NPC_BENCH_TURNS_16 (default 2) sets the turns per client at 16 sessions; NPC_BENCH_LABEL names the
# set-up in the summary (e.g. "vLLM 0.33 on H100, Qwen2.5-3B AWQ"). Voice turns start with JFK's recording
# when it is beside the checkout (../shared/data/jfk.flac, as in the report's figures; NPC_BENCH_RECORDING
# names another), else with the shipped sample.
set -euo pipefail
cd "$(dirname "$0")/.."
URL="${1:?usage: scripts/bench_matrix.sh WS_URL OUT_DIR [text|audio|all]}"
OUT="${2:?usage: scripts/bench_matrix.sh WS_URL OUT_DIR [text|audio|all]}"
WHICH="${3:-all}"
NPC="${NPC_BIN:-.venv/bin/npc}"
T16="${NPC_BENCH_TURNS_16:-2}"
REC="${NPC_BENCH_RECORDING:-../shared/data/jfk.flac}"
RECORDING=()
if [[ -f "$REC" ]]; then RECORDING=(--recording "$REC"); fi
mkdir -p "$OUT"

run() {  # mode clients turns warmup
  echo "== $1, $2 client(s) x $3 turns" >&2
  "$NPC" bench --server "$URL" --mode "$1" --clients "$2" --turns "$3" --warmup "$4" --out "$OUT/$1-c$2" \
    ${RECORDING[@]+"${RECORDING[@]}"} | tail -n 3 >&2
}

if [[ "$WHICH" == text || "$WHICH" == all ]]; then
  run text 1 5 0
  run text 4 5 1
  run text 16 "$T16" 1
fi
if [[ "$WHICH" == audio || "$WHICH" == all ]]; then
  run audio 1 5 1
  run audio 4 5 1
  run audio 16 "$T16" 1
fi
.venv/bin/python scripts/bench_summary.py "$OUT" "${NPC_BENCH_LABEL:-$URL}" | tee "$OUT/summary.md"
