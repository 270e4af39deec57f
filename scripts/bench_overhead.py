"""The server's own overhead per turn and per event, measured with engines whose time is known.

    .venv/bin/python scripts/bench_overhead.py --clients 1 4 16 --turns 5

A scripted LLM (FakeLLM: a 16-word reply, one word every ``--token-ms``) and a scripted voice (FakeTTS: silence,
instant) behind the real server, real client, real protocol, real session logic (grammar building, tag parsing,
clause splitting, viseme mapping, history, metrics). Whatever the client measures beyond the engines' own time
is the runtime's share: first text − one token delay, end − 16 token delays. The engines are not serialized
(each session has its "own" engine), so the figures are about the event loop and the protocol, not a model queue.
Not a test; medians of one run on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from npc_runtime.bench.driver import LoadPlan  # noqa: E402
from npc_runtime.bench.lines import TEXT_LINES, WARMUP_LINE, default_scene  # noqa: E402
from npc_runtime.bench.runner import run_load  # noqa: E402
from npc_runtime.dialogue.turn import Dialogue  # noqa: E402
from npc_runtime.llm.fake import FakeLLM  # noqa: E402
from npc_runtime.metrics import Metrics  # noqa: E402
from npc_runtime.persona.registry import PersonaRegistry  # noqa: E402
from npc_runtime.server import NpcServer  # noqa: E402
from npc_runtime.session import Services  # noqa: E402
from npc_runtime.tts.fake import FakeTTS  # noqa: E402

REPLY = "Sure thing, friend. The broth is rich tonight and the noodles are fresh, so sit down and eat well."
WORDS = len(REPLY.split())


async def run(clients: int, turns: int, token_ms: float) -> dict[str, float]:
    personas = PersonaRegistry(ROOT / "characters", poll_interval=60.0)
    await personas.start()
    services = Services(personas=personas, dialogue=Dialogue(llm=FakeLLM([REPLY], token_delay=token_ms / 1000.0)),
                        tts=FakeTTS(sample_rate=22050, ms_per_char=60.0), metrics=Metrics())
    services.ready.set()
    server = NpcServer(services, host="127.0.0.1", port=0)
    await server.start()
    try:
        plan = LoadPlan(url=server.url, mode="text", clients=clients, turns=turns, warmup=1, character="jin",
                        scene=default_scene(), seed=1, lines=TEXT_LINES, warmup_line=WARMUP_LINE)
        rows, _ = await run_load(plan, progress=False)
    finally:
        await server.aclose()
        await personas.aclose()
    ok = [r for r in rows if r.status == "completed"]
    first_text = statistics.median(r.first_text_ms for r in ok if r.first_text_ms is not None)
    end = statistics.median(r.end_ms for r in ok if r.end_ms is not None)
    return {"clients": clients, "turns": len(ok), "first_text_ms": first_text, "end_ms": end,
            "overhead_first_text_ms": first_text - token_ms, "overhead_end_ms": end - WORDS * token_ms}


async def main_async(args: argparse.Namespace) -> None:
    print(f"{'clients':>7} {'turns':>5} {'first text':>11} {'  overhead':>10} {'end':>9} {'  overhead':>10} {'per token':>10}")
    for clients in args.clients:
        r = await run(clients, args.turns, args.token_ms)
        print(f"{r['clients']:7d} {r['turns']:5d} {r['first_text_ms']:9.1f}ms {r['overhead_first_text_ms']:8.1f}ms "
              f"{r['end_ms']:7.1f}ms {r['overhead_end_ms']:8.1f}ms {r['overhead_end_ms'] / WORDS:8.2f}ms")
    print(f"(engine time: first token {args.token_ms} ms, {WORDS} tokens = {WORDS * args.token_ms:.0f} ms per reply)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--token-ms", type=float, default=20.0)
    asyncio.run(main_async(ap.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
