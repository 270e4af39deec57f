"""One character in a connection's scene: its persona (hot-reloaded), its view of the scene, its conversation
history, what it remembers of the player, the engine warmed for it, and its running :class:`Response`.

The session's own character and each cast member are a :class:`Character` each; they share the connection's
outbox (every event carries its ``speaker``) and its player.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

import structlog

from npc_runtime import protocol as p
from npc_runtime.dialogue.prompt import HistoryEntry
from npc_runtime.dialogue.turn import TurnInput
from npc_runtime.errors import NpcError, PersonaError
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene
from npc_runtime.session import latency
from npc_runtime.session.remembering import Remembering
from npc_runtime.session.response import Context, Outgoing, Response
from npc_runtime.session.services import Services
from npc_runtime.tts.base import TTS

log = structlog.get_logger(__name__)


class Character:
    """A character the player talks to (or that talks with the others)."""

    def __init__(self, services: Services, persona: Persona, *, player: p.Player, options: p.SessionOptions, scene: Scene,
                 emit: Callable[[Outgoing], Awaitable[None]], clock: Callable[[], float], session_id: str,
                 new_response_id: Callable[[], str], on_end: Callable[[Response], None]) -> None:
        self.services, self.persona, self.player, self.options = services, persona, player, options
        #: The scene as this character sees it (without itself).
        self.scene = scene.without(persona.id)
        voices = services.voices
        #: Its voice (None: none configured); it speaks when ``audio`` (the client did not ask for text only).
        self.tts: TTS | None = voices(persona) if voices is not None else services.tts
        self.audio = self.tts is not None and not options.text_only
        self.history: list[HistoryEntry] = []
        self.memory = Remembering(services, emit, player=player, character_id=persona.id, character_name=persona.name,
                                  session_id=session_id)
        #: The response running now, if any.
        self.response: Response | None = None
        self._ctx = Context(services=services, emit=emit, clock=clock, tts=self.tts if self.audio else None)
        self._session_id, self._new_response_id, self._on_end = session_id, new_response_id, on_end
        self._said: tuple[Response, HistoryEntry] | None = None  # the last reply's history entry, while marks may cut it
        self._prepare_task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.persona.id

    # -- the scene and the engine

    def see(self, scene: Scene) -> None:
        """A new scene (``scene.update``): this character's view of it, and the engine warmed for it."""
        self.scene = scene.without(self.persona.id)
        self.prepare()

    def prepare(self) -> None:
        """Warm the engine for this character and scene in the background (owned task)."""
        if self._prepare_task is not None:
            self._prepare_task.cancel()
        self._prepare_task = asyncio.create_task(self._prepare(self.persona, self.scene), name=f"prepare-{self._session_id}")

    async def _prepare(self, persona: Persona, scene: Scene) -> None:
        try:
            await self.services.dialogue.prepare(persona, scene, player_name=self.player.name)
        except NpcError as exc:
            log.warning("prefill failed", code=exc.code)
        fillers = self.services.fillers
        if fillers is not None and self.tts is not None and self.audio and persona.latency.filler:
            try:
                await fillers.ensure(self.tts, persona.latency.filler)
            except NpcError as exc:
                log.warning("filler synthesis failed", code=exc.code)

    def _current_persona(self) -> Persona:
        """The latest good version of the persona (hot reload); the loaded one if it vanished."""
        try:
            self.persona = self.services.personas.get(self.persona.id)
        except PersonaError:
            log.warning("persona no longer available; keeping the loaded version")
        return self.persona

    # -- the conversation

    def hears(self, kind: Literal["player", "event"], text: str) -> None:
        """Something enters this character's history: the player's line (``player``) or what it perceived (``event``)."""
        self.history.append(HistoryEntry(kind, text))

    def respond(self, *, player_text: str | None, trigger: p.Trigger, ref: str | None, started_at: float | None = None,
                query: str | None = None) -> Response:
        """Start a response (the caller stopped any running one). ``player_text`` is the history's last entry."""
        self.remember()
        persona = self._current_persona()
        prior = self.history[:-1] if player_text is not None else self.history
        turn_input = TurnInput(
            persona=persona, scene=self.scene, history=latency.history_window(prior),
            player_text=player_text, player_name=self.player.name,
            max_tokens=self.options.max_tokens, seed=self.options.seed, memory_summary=self.memory.summary,
            brief=self.options.brief or "", session_key=self._session_id,
        )
        if query is None and player_text is not None:
            query = latency.retrieval_query(player_text, prior)
        self.response = Response(self._ctx, self._new_response_id(), turn_input, trigger, ref, on_end=self._ended,
                                 started_at=started_at, query=query)
        return self.response

    async def interrupt(self) -> None:
        if self.response is not None:
            await self.response.interrupt()

    def _ended(self, response: Response) -> None:
        """A response ended: what was said (and heard) goes into the history."""
        said = response.said()
        if said:
            entry = HistoryEntry("character", said)
            self.history.append(entry)
            self._said = (response, entry)
        else:
            self._said = None
        if self.response is response:
            self.response = None
        self._on_end(response)

    def heard_changed(self, response: Response) -> None:
        """What the player heard of ``response`` (cut short) is now known better: its history entry says only that."""
        if self._said is None or self._said[0] is not response:
            return
        old = self._said[1]
        index = next((i for i in range(len(self.history) - 1, -1, -1) if self.history[i] is old), None)
        if index is None:
            return
        said = response.said()
        if said:
            entry = HistoryEntry("character", said)
            self.history[index] = entry
            self._said = (response, entry)
        else:
            del self.history[index]
            self._said = None

    def remember(self, *, everything: bool = False) -> None:
        """Write the settled history to memory; the last reply waits while a barge-in may still cut it."""
        hold = None if everything or self._said is None else self._said[1]
        if self.memory.write(self.history, hold=hold) and self._said is not None and self._said[1] is hold:
            self._said = None  # written: no longer cut by late playback marks

    async def aclose(self) -> None:
        """Stop the response, the warm-up; write everything to memory and wait for it."""
        response, self.response = self.response, None
        if response is not None:
            await response.interrupt()
        if self._prepare_task is not None:
            self._prepare_task.cancel()
            await asyncio.gather(self._prepare_task, return_exceptions=True)
        self.remember(everything=True)
        await self.memory.wait()
