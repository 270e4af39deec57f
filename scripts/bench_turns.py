#!/usr/bin/env python
"""Benchmark (not a test): time to first text delta cold and warm, tokens/s, and the event
loop's lag during generation — through the real server and client on loopback, in one process.

    .venv/bin/python scripts/bench_turns.py [--turns 8] [--llm embedded|vllm --vllm-url URL]

Cold at once: the first line sent the moment a session starts (a new character and scene: the
prompt prefix is evaluated first). Cold after prefill: the first line sent after the session-start
prefill finished. Warm: later turns of the same session. Switch: turns alternating between two
sessions (the embedded engine restores the other's saved prefix state, then re-reads its history). Prints medians; the machine is
shared and noisy, so compare figures from one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_runtime.client import NpcClient  # noqa: E402
from npc_runtime.scene_files import load_scene  # noqa: E402
from npc_runtime.server import NpcServer  # noqa: E402
from npc_runtime.settings import Settings  # noqa: E402
from npc_runtime.wiring import build_runtime  # noqa: E402

LINES = [
    "Could you hand me the chopsticks?", "How long have you been open?", "Grab the menu for me.",
    "Is it still raining out there?", "Please give the sake to Nova.", "What's good tonight?",
    "Can you go over to the door?", "Tell me about your broth.",
]


class LagMeter:
    """Samples how late a 10 ms sleep wakes up: the event loop's lag."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.active = False

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            if self.active:
                self.samples.append((time.perf_counter() - t0 - 0.01) * 1000)


async def one_turn(client: NpcClient, text: str, lag: LagMeter) -> dict[str, float]:
    t0 = time.perf_counter()
    first = None
    lag.active = True
    async for event in client.say(text):
        if event.type == "response.text.delta" and first is None:
            first = (time.perf_counter() - t0) * 1000
        if event.type == "response.end":
            end = event
    lag.active = False
    total = (time.perf_counter() - t0) * 1000
    t = end.timings
    gen_s = max((t["end"] - t.get("first_token", t["end"])) / 1000, 1e-6)
    row = {"first_delta_ms": first or total, "total_ms": total, "chunks": t.get("chunks", 0), "tok_s": (t.get("chunks", 1) - 1) / gen_s}
    if "first_audio" in t and "first_token" in t:
        row["token_to_audio_ms"] = t["first_audio"] - t["first_token"]
        row["first_audio_ms"] = t["first_audio"]
    if end.audio_ms:
        row["audio_rtf"] = (t["end"] - t.get("first_token", 0)) / end.audio_ms
    return row


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--llm", choices=["embedded", "vllm"], default="embedded")
    ap.add_argument("--vllm-url")
    ap.add_argument("--vllm-model")
    ap.add_argument("--tts", choices=["auto", "piper", "espeak", "none"], default="auto")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--prefill-wait", type=float, default=10.0, help="seconds between session start and the first line (default 10)")
    args = ap.parse_args()
    settings = Settings(llm=args.llm, tts=args.tts, characters_dir=ROOT / "characters", log_level="warning",
                        **{k: v for k, v in (("vllm_url", args.vllm_url), ("vllm_model", args.vllm_model)) if v})
    from npc_runtime import log
    log.configure(level="warning")
    t_load = time.perf_counter()
    runtime = await build_runtime(settings)
    await runtime.warm()
    load_s = time.perf_counter() - t_load
    server = NpcServer(runtime.services, port=0)
    await server.start()
    lag = LagMeter()
    ticker = asyncio.create_task(lag.run(), name="lag-meter")
    ramen, lab = load_scene("ramen_shop"), load_scene("lab")
    cold, prefilled, warm, switch = [], [], [], []
    try:
        async with NpcClient.connect(server.url) as jin, NpcClient.connect(server.url) as nova:
            # Cold, at once: the player speaks the moment the session starts (its prefill is in flight).
            await jin.start_session("jin", scene=ramen, player_name="Kai", options={"seed": 1})
            cold.append(await one_turn(jin, LINES[0], lag))
            # Cold, after the session-start prefill had time to finish (a player rarely speaks at once).
            await nova.start_session("nova", scene=lab, player_name="Kai", options={"seed": 1})
            await asyncio.sleep(args.prefill_wait)
            prefilled.append(await one_turn(nova, "What are you working on?", lag))
            for i in range(args.turns):
                warm.append(await one_turn(jin, LINES[(i + 1) % len(LINES)], lag))
            for i in range(args.turns):
                switch.append(await one_turn(jin if i % 2 == 0 else nova, LINES[i % len(LINES)], lag))
    finally:
        ticker.cancel()
        await server.aclose()
        await runtime.aclose()

    def med(rows: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 1)

    lags = sorted(lag.samples)
    figures = {
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={__import__('os').cpu_count()} python={platform.python_version()}",
        "llm": args.llm, "model_load_and_warm_s": round(load_s, 2),
        "cold_first_delta_ms_at_once": round(cold[0]["first_delta_ms"], 1),
        "cold_first_delta_ms_after_prefill": round(prefilled[0]["first_delta_ms"], 1),
        "warm_first_delta_ms_median": med(warm, "first_delta_ms"),
        "switch_first_delta_ms_median": med(switch, "first_delta_ms"),
        "turn_total_ms_median": med(warm, "total_ms"),
        "tokens_per_s_median": med(warm + switch, "tok_s"),
        "first_token_to_first_audio_ms_median": med(warm, "token_to_audio_ms") if warm and "token_to_audio_ms" in warm[0] else None,
        "first_audio_ms_warm_median": med(warm, "first_audio_ms") if warm and "first_audio_ms" in warm[0] else None,
        "loop_lag_ms_median": round(statistics.median(lags), 2) if lags else None,
        "loop_lag_ms_p99": round(lags[int(len(lags) * 0.99) - 1], 2) if lags else None,
        "loop_lag_ms_max": round(lags[-1], 2) if lags else None,
        "turns": {"warm": len(warm), "switch": len(switch)},
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
