"""01 — one text turn against a running server, printing every event as a JSON line.

    scripts/serve.sh &                       # or: .venv/bin/npc serve
    .venv/bin/python examples/01_one_turn.py [ws://127.0.0.1:8765]
"""

import asyncio
import json
import sys
from pathlib import Path

from npc_runtime.client import AudioFrame, NpcClient

SCENE = json.loads((Path(__file__).resolve().parents[1] / "scenes" / "ramen_shop.json").read_text())


def show(event: object) -> str:
    """A server event as JSON; an audio frame (binary) as its size."""
    if isinstance(event, AudioFrame):
        return f"(binary frame: {len(event.pcm)} bytes of PCM16 mono)"
    return event.model_dump_json()  # type: ignore[attr-defined]


async def main(url: str) -> None:
    async with NpcClient.connect(url) as client:
        ready = await client.start_session("jin", scene=SCENE, player_name="Kai", options={"seed": 7})
        print("<", show(ready))
        async for event in client.say("Could you hand me the chopsticks?"):
            print("<", show(event))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765"))
