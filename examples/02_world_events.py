"""02 — the world talks to the character: a scene update, a game event it only remembers, one
it reacts to at once, a cancel, and what bad input looks like. Prints what is sent (>) and
received (<).

    .venv/bin/python examples/02_world_events.py [ws://127.0.0.1:8765]
"""

import asyncio
import json
import sys
from pathlib import Path

from npc_runtime.client import AudioFrame, NpcClient

SCENE = json.loads((Path(__file__).resolve().parents[1] / "scenes" / "ramen_shop.json").read_text())
#: Closing time: the same shop with a broom out (a scene.update replaces the whole scene).
CLOSING = {**SCENE, "name": "Jin's ramen shop, closing time",
           "objects": [*SCENE["objects"], {"id": "broom", "description": "a worn bamboo broom"}]}


async def send(client: NpcClient, message: dict) -> None:
    print(">", json.dumps(message))
    await client.send(message)


async def until(client: NpcClient, kind: str) -> None:
    while True:
        event = await client.recv(timeout=120)
        print("<", show(event))
        if event.type == kind:
            return


def show(event: object) -> str:
    """A server event as JSON; an audio frame (binary) as its size."""
    if isinstance(event, AudioFrame):
        return f"(binary frame: {len(event.pcm)} bytes of PCM16 mono)"
    return event.model_dump_json()  # type: ignore[attr-defined]


async def main(url: str) -> None:
    async with NpcClient.connect(url) as client:
        await send(client, {"type": "session.start", "id": "m1", "character": "jin", "player": {"id": "player", "name": "Kai"}, "scene": SCENE})
        await until(client, "session.ready")
        await send(client, {"type": "scene.update", "id": "m2", "scene": CLOSING})
        await until(client, "scene.updated")
        await send(client, {"type": "game.event", "id": "m3", "description": "Kai knocked over a stack of bowls.", "react": False})
        await until(client, "game.event.accepted")
        await send(client, {"type": "game.event", "id": "m4", "description": "Smoke pours out of the kitchen.", "react": True})
        await until(client, "response.end")
        await send(client, {"type": "input.text", "id": "m5", "text": "Tell me the whole history of this shop."})
        await until(client, "response.start")
        await send(client, {"type": "response.cancel", "id": "m6"})
        await until(client, "response.end")
        await send(client, {"type": "input.text", "id": "m7", "text": "x" * 3000})
        await until(client, "error")
        await send(client, {"type": "ping", "id": "m8"})
        await until(client, "pong")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765"))
