"""``scene.converse``: the characters of a scene talk in turn, each line going to the next speaker as what it
hears and to the others as something said in their presence."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from npc_runtime import protocol as p
from npc_runtime.session.character import Character
from npc_runtime.session.response import Response, Status

#: Start a character's response (the connection's bookkeeping included).
Respond = Callable[..., Response]


async def converse(msg: p.Converse, order: Sequence[str], members: dict[str, Character], respond: Respond,
                   emit: Callable[[p.ConverseEnd], Awaitable[None]]) -> None:
    """Run the conversation; ``scene.converse.end`` says how many lines were spoken and how it ended (cancelling
    this interrupts the speaker)."""
    names = {cid: m.persona.name for cid, m in members.items()}
    spoken, status, line, previous = 0, "completed", "", ""
    current: Character | None = None
    try:
        for i in range(msg.turns):
            speaker = order[i % len(order)]
            current = members[speaker]
            if i == 0:
                others = ", ".join(names[c] for c in dict.fromkeys(order) if c != speaker)
                current.hears("event", f"You start talking with {others} about: {msg.topic}")
                response = respond(current, player_text=None, trigger="converse", ref=msg.id, query=msg.topic)
            else:
                heard = f"{names[previous]}: {line}"
                current.hears("player", heard)
                response = respond(current, player_text=heard, trigger="converse", ref=msg.id, query=line)
            await response.finished()
            if response.status is not Status.COMPLETED:
                status = response.status.wire
                break
            spoken += 1
            line, previous = response.text.strip() or "...", speaker
            for cid, member in members.items():
                if cid != speaker and cid != order[(i + 1) % len(order)]:
                    member.hears("event", f"{names[speaker]} said: {line}")
    except asyncio.CancelledError:
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        status = "interrupted"
        if current is not None:
            await current.interrupt()
    await emit(p.ConverseEnd(ref=msg.id, turns=spoken, status=status))  # type: ignore[arg-type]
