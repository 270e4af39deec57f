"""Async Python client for the npc_runtime protocol. Depends only on ``websockets`` and
:mod:`npc_runtime.protocol`.

    async with NpcClient.connect("ws://127.0.0.1:8765") as client:
        ready = await client.start_session("jin", scene=scene, player_name="Kai")
        async for event in client.say("Could you hand me the chopsticks?"):
            print(event.type)          # response.start, response.text.delta…, response.end

Voice in: :meth:`NpcClient.send_audio` sends microphone PCM16 (one binary frame);
:meth:`NpcClient.stream_audio` paces a recording like a microphone would;
:meth:`NpcClient.playback_mark` tells the server how much of a response the player has heard.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

#: The connection errors a caller may want to tell apart (re-exported: only this module touches websockets).
__all__ = ["AudioFrame", "ConnectionClosed", "InvalidStatus", "NpcClient", "ServerError", "WebSocketException"]

from npc_runtime import protocol as p
from npc_runtime.scene import Scene


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """A binary frame: the PCM16 mono samples announced by the ``response.audio`` event before it."""

    pcm: bytes
    type: str = "audio.frame"
    response_id: str | None = None


class ServerError(Exception):
    """An ``error`` event the client did not expect."""

    def __init__(self, event: p.ErrorEvent) -> None:
        super().__init__(f"{event.code}: {event.message}")
        self.event = event
        self.code = event.code


class NpcClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, *, open_timeout: float = 30.0, token: str | None = None) -> AsyncIterator["NpcClient"]:
        """Connect to a server. ``token``: a player token or an API key for a server with auth on (sent as
        ``Authorization: Bearer``); default: the ``NPC_API_KEY`` environment variable, if set (how ``npc bench``,
        ``npc sim`` and ``npc say --server`` reach such a server)."""
        token = token if token is not None else os.environ.get("NPC_API_KEY") or None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with connect(url, open_timeout=open_timeout, max_size=None, additional_headers=headers) as ws:
            yield cls(ws)

    def _next_id(self) -> str:
        return f"c{next(self._ids)}"

    async def send(self, message: Any) -> str | None:
        """Send a protocol message (a model or a raw dict); returns its id."""
        if isinstance(message, dict):
            await self.ws.send(json.dumps(message))
            return message.get("id")
        if message.id is None:  # every client message has an optional id: number ours
            message = message.model_copy(update={"id": self._next_id()})
        await self.ws.send(message.model_dump_json(exclude_none=True))
        return message.id

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def recv(self, timeout: float | None = None) -> Any:
        """The next server event, parsed. Cancel-safe (websockets' ``recv`` is)."""
        frame = await asyncio.wait_for(self.ws.recv(), timeout) if timeout else await self.ws.recv()
        return self._parse(frame)

    async def events(self) -> AsyncIterator[Any]:
        """Server events, parsed; a binary frame comes as :class:`AudioFrame`."""
        async for frame in self.ws:
            yield self._parse(frame)

    @staticmethod
    def _parse(frame: str | bytes) -> Any:
        return AudioFrame(frame) if isinstance(frame, bytes) else p.parse_server_event(frame)

    async def start_session(
        self,
        character: str,
        *,
        scene: Scene | dict[str, Any] | None = None,
        player_id: str | None = "player",
        player_name: str | None = None,
        options: dict[str, Any] | None = None,
        cast: list[str] | None = None,
    ) -> p.SessionReady:
        """Start the session; raises :class:`ServerError` on an ``error`` event."""
        scene_obj = Scene.model_validate(scene) if isinstance(scene, dict) else (scene or Scene())
        await self.send(p.SessionStart(
            character=character, scene=scene_obj, player=p.Player(id=player_id, name=player_name),
            options=p.SessionOptions(**(options or {})), cast=list(cast or []),
        ))
        event = await self.recv()
        if isinstance(event, p.ErrorEvent):
            raise ServerError(event)
        if not isinstance(event, p.SessionReady):
            raise ServerError(p.ErrorEvent(code="unexpected_event", message=f"expected session.ready, got {event.type}"))
        return event

    async def say(self, text: str) -> AsyncIterator[Any]:
        """Send one utterance and yield every event up to and including its ``response.end``."""
        ref = await self.send(p.TextInput(text=text))
        async for event in self._until_end(ref):
            yield event

    async def send_audio(self, pcm: bytes) -> None:
        """Send microphone audio: PCM16 mono little-endian at the rate declared in session.start."""
        await self.ws.send(pcm)

    async def stream_audio(self, pcm: bytes, *, sample_rate: int, frame_ms: int = 20, realtime: bool = True,
                           trailing_silence_ms: int = 0) -> None:
        """Send a recording in ``frame_ms`` frames, paced at real time (like a microphone) unless
        ``realtime`` is false, then ``trailing_silence_ms`` of silence (the end of turn needs it)."""
        step = max(2, sample_rate * frame_ms // 1000 * 2)
        silence = bytes(step)
        frames = [pcm[i:i + step] for i in range(0, len(pcm), step)]
        frames += [silence] * (trailing_silence_ms // frame_ms)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, frame in enumerate(frames):
            if len(frame) % 2:
                frame = frame[:-1]
            if frame:
                await self.ws.send(frame)
            if realtime:
                delay = start + (i + 1) * frame_ms / 1000.0 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)

    async def commit_audio(self) -> str | None:
        """End the player's turn now (push-to-talk released) instead of waiting for the silence."""
        return await self.send(p.AudioCommit())

    async def playback_mark(self, response_id: str, played_ms: float, *, stopped: bool = False) -> None:
        """Report how much of a response's audio the player has heard (send a few times a second while
        playing, and once when playback stops). ``stopped``: the game stopped playing it there on its own."""
        await self.send(p.PlaybackMark(response_id=response_id, played_ms=round(played_ms, 1), stopped=stopped))

    async def game_event(self, description: str, *, react: bool = False) -> str | None:
        return await self.send(p.GameEvent(description=description, react=react))

    async def _until_end(self, ref: str | None = None) -> AsyncIterator[Any]:
        """Events up to the response's end; an error before the response started ends it too when it answers
        ``ref`` (the message that asked for the response) or closes the connection, not when it is about something
        else (a ``memory_unavailable`` for an earlier turn)."""
        response_id: str | None = None
        async for event in self.events():
            yield event
            if isinstance(event, p.ResponseStart) and response_id is None:
                response_id = event.response_id
            if isinstance(event, p.ResponseEnd) and event.response_id == response_id:
                return
            if (isinstance(event, p.ErrorEvent) and event.response_id is None and response_id is None
                    and (ref is None or event.ref == ref or event.fatal)):
                return
