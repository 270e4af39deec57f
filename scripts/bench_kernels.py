#!/usr/bin/env python
"""llama.cpp's native kernels (extra buffer types: AMX, repacked weights) against the safe ones, on this CPU and
the installed build (docs/hardware.md).

    .venv/bin/python scripts/bench_kernels.py [--rounds 3] [--kernels native safe]

Each configuration runs in its own process (a crash costs that one row), rounds interleaved: a 522-token persona
prompt evaluated cold, then 64 tokens generated greedily, one thread each (the server's setting), and the passage
score the engine probe uses. Prints the median of each figure per configuration. Not a test: the machine is shared
and noisy; compare the ratios from one run. PYTHONPATH may point at a copy of the llama_cpp package with another
libggml-cpu.so to compare builds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_run(kernels: str) -> dict[str, float]:
    import llama_cpp

    from npc_runtime.llm import llama_probe
    from npc_runtime.llm.llama_cpp import default_model_path

    persona = (ROOT / "characters/jin.yaml").read_text()[:1800]
    prompt = f"<|im_start|>system\n{persona}<|im_end|>\n<|im_start|>user\nCould you hand me the chopsticks?<|im_end|>\n<|im_start|>assistant\n"
    config = dict(model_path=str(default_model_path()), n_ctx=2048, n_threads=1, n_threads_batch=1, logits_all=True)
    llm = llama_probe.load_llama(llama_cpp, config, kernels=kernels)  # type: ignore[arg-type]
    passage = llm.tokenize(llama_probe.PASSAGE.encode(), add_bos=False)
    llm.eval(passage)
    nll = llama_probe._log_softmax_nll(llm.scores, passage)
    llm.reset()
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    t0 = time.perf_counter()
    llm.eval(tokens)
    prompt_s = time.perf_counter() - t0
    n, first = 0, 0.0
    for i, _ in enumerate(llm.generate(tokens, top_k=1, temp=0.0, reset=False)):
        if i == 0:
            first = time.perf_counter()
        n += 1
        if n >= 65:
            break
    return {"prompt_tokens": len(tokens), "prompt_tps": len(tokens) / prompt_s, "gen_tps": (n - 1) / (time.perf_counter() - first), "nll": nll}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kernels", nargs="+", default=["native", "safe"], choices=["native", "safe"])
    ap.add_argument("--child", choices=["native", "safe"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_run(args.child)))
        return 0
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in args.kernels}
    failures: dict[str, str] = {}
    for _ in range(args.rounds):
        for kernels in args.kernels:
            proc = subprocess.run([sys.executable, __file__, "--child", kernels], capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                failures[kernels] = f"exit {proc.returncode}" + (" (crashed)" if proc.returncode < 0 else "")
                continue
            runs[kernels].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{'kernels':8} {'runs':>4} {'prompt tok/s':>13} {'gen tok/s':>10} {'nats/token':>11}")
    for kernels, rows in runs.items():
        if not rows:
            print(f"{kernels:8} {0:>4} failed: {failures.get(kernels, '?')}")
            continue
        med = {key: statistics.median(r[key] for r in rows) for key in ("prompt_tps", "gen_tps", "nll")}
        print(f"{kernels:8} {len(rows):>4} {med['prompt_tps']:>13.1f} {med['gen_tps']:>10.1f} {med['nll']:>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
