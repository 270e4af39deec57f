#!/usr/bin/env python
"""Benchmark (not a test): each speech engine's time to first chunk and real-time factor
(compute time / audio time) on this machine, medians over --runs.

    .venv/bin/python scripts/bench_tts.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from npc_runtime.tts.espeak import EspeakTTS  # noqa: E402
from npc_runtime.tts.piper import PiperTTS  # noqa: E402

TEXTS = {
    "clause": "Coming right up, friend.",
    "paragraph": ("The broth simmers for eighteen hours. I add the pork bones at midnight, skim it at dawn, "
                  "and taste it before the first customer walks in. Nova says it tastes like home. I think she's right."),
}


async def measure(engine, text: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    first, samples = None, 0
    async for chunk in engine.synthesize(text):
        first = first or time.perf_counter() - t0
        samples += chunk.samples
    return (first or 0) * 1000, (time.perf_counter() - t0) / (samples / engine.sample_rate)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    results = {}
    for engine in (PiperTTS(), EspeakTTS()):
        t0 = time.perf_counter()
        await engine.warm()
        load = time.perf_counter() - t0
        for name, text in TEXTS.items():
            rows = [await measure(engine, text) for _ in range(args.runs)]
            results[f"{engine.name}/{name}"] = {
                "first_chunk_ms": round(statistics.median(r[0] for r in rows), 1),
                "rtf": round(statistics.median(r[1] for r in rows), 3),
            }
        results[f"{engine.name}/load_and_warm_s"] = round(load, 2)
        await engine.aclose()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
