#!/usr/bin/env python
"""Benchmark (not a test): does a long conversation stay fast? One player, one character, 32+ text turns through
the real server and client on loopback (in one process) with the real embedded model; prints, per turn, the
server's time to the first LLM token (``response.end`` timings) and what the engine read (its own figures: how the
context was found, prompt tokens, tokens evaluated), then the median of turns 2-9 against turns 25-32.

    .venv/bin/python scripts/bench_long_conversation.py [--turns 32] [--rag] [--memory] [--json out.json]

Speech synthesis is off (the figure is the model's first token) and so are retrieval and memory unless asked for
(retrieved passages sit after the history and cost the same on every turn; see docs/performance.md). The machine is
shared and noisy: compare figures from one run, and medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_runtime.client import NpcClient  # noqa: E402
from npc_runtime.scene_files import load_scene  # noqa: E402
from npc_runtime.server import NpcServer  # noqa: E402
from npc_runtime.settings import Settings  # noqa: E402
from npc_runtime.wiring import build_runtime  # noqa: E402

#: A player who stays a while: requests, questions, and things about themselves (facts the history keeps).
LINES = [
    "Hi Jin, it's been a long day.", "Could you hand me the chopsticks?", "I'm a nurse at the hospital down the street.",
    "What's good tonight?", "Grab the menu for me.", "Is it still raining out there?", "I'm allergic to eggs, by the way.",
    "Tell me about your broth.", "Please give the sake to Nova.", "How long have you been open?",
    "Can you go over to the door?", "My sister is visiting next week.", "Do you make the noodles yourself?",
    "Could I get some more tea?", "What time do you close?", "I love the smell in here.", "Hand me a napkin, please.",
    "Have you always lived in this city?", "I'm thinking of learning to cook.", "What's your secret ingredient?",
    "Can you pass the soy sauce?", "Do you have any dessert?", "My name is Kai, remember?", "Is Nova a regular here?",
    "Give me the ramen bowl, please.", "How busy was it today?", "I'm going to bring my friends next time.",
    "What's the weather going to be tomorrow?", "Could you grab the chopsticks again?", "Thanks for the meal.",
    "Do you ever take a day off?", "Tell me a story about the shop.", "I should head home soon.", "Goodnight, Jin.",
]


async def one_turn(client: NpcClient, text: str) -> dict[str, float]:
    t0 = time.perf_counter()
    end = None
    async for event in client.say(text):
        if event.type == "response.end":
            end = event
    assert end is not None
    t = end.timings
    return {"first_token_ms": float(t.get("first_token", t["end"])), "total_ms": (time.perf_counter() - t0) * 1000}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=32)
    ap.add_argument("--character", default="jin")
    ap.add_argument("--scene", default="ramen_shop")
    ap.add_argument("--rag", action="store_true", help="retrieve knowledge passages each turn (off by default)")
    ap.add_argument("--memory", action="store_true", help="per-player memory on (off by default)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    from npc_runtime import log

    log.configure(level="warning")
    settings = Settings(tts="none", asr="none", rag=args.rag, memory=args.memory, characters_dir=ROOT / "characters",
                        log_level="warning")
    runtime = await build_runtime(settings)
    await runtime.warm()
    engine = runtime.llm
    server = NpcServer(runtime.services, port=0)
    await server.start()
    rows: list[dict[str, object]] = []
    try:
        async with NpcClient.connect(server.url) as client:
            await client.start_session(args.character, scene=load_scene(args.scene), player_name="Kai",
                                       player_id=f"bench_{uuid.uuid4().hex[:8]}", options={"seed": args.seed})
            await asyncio.sleep(8.0)  # the session-start prefill: the first turn is not the subject here
            for i in range(args.turns):
                row: dict[str, object] = {"turn": i + 1, **await one_turn(client, LINES[i % len(LINES)])}
                stats = getattr(engine, "stats", None)
                if stats is not None:
                    row.update(context=stats.prefix, prompt_tokens=stats.prompt_tokens, evaluated=stats.evaluated_tokens)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        await server.aclose()
        await runtime.aclose()

    def med(lo: int, hi: int) -> float | None:
        values = [float(r["first_token_ms"]) for r in rows if lo <= int(r["turn"]) <= hi]  # type: ignore[call-overload]
        return round(statistics.median(values), 1) if values else None

    early, late = med(2, 9), med(25, 32)
    figures = {
        "rag": args.rag, "memory": args.memory, "llm_batch": settings.llm_batch,
        "machine": f"{platform.machine()} cores={__import__('os').cpu_count()} python={platform.python_version()}",
        "turns": len(rows), "first_token_ms_median_turns_2_9": early, "first_token_ms_median_turns_25_32": late,
        "ratio_late_over_early": round(late / early, 2) if early and late else None,
        "first_token_ms_turn_3": rows[2]["first_token_ms"] if len(rows) > 2 else None,
        "first_token_ms_turn_30": rows[29]["first_token_ms"] if len(rows) > 29 else None,
        "evaluated_tokens_median_turns_25_32": statistics.median(int(r.get("evaluated", 0)) for r in rows[24:32]) if len(rows) > 24 else None,  # type: ignore[call-overload]
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "turns": rows}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
