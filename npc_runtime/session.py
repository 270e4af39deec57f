"""One conversation: the session state machine, a :class:`Turn` per response, the ordered outbox.

The server feeds parsed client messages to :meth:`Session.handle` and drains
:attr:`Session.outbox` into the socket, in order. A response runs as a :class:`Turn` task owned
by the session; a new utterance, a reacting game event or ``response.cancel`` interrupts it:
the dialogue generator is closed (the LLM stops at its next token), ``response.end`` reports
``interrupted`` with the text that was sent, and only that text enters the history.

States and transitions are a pure table (:data:`TRANSITIONS`); :meth:`Session.aclose` cancels
and awaits every task the session owns.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from npc_runtime import protocol as p
from npc_runtime.dialogue.prompt import HistoryEntry
from npc_runtime.dialogue.turn import ActionOut, Dialogue, EmotionOut, SpeechDelta, TurnInput, TurnStats, allowed_verbs
from npc_runtime.errors import NpcError, PersonaError, ProtocolError
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene
from npc_runtime.timeline import Timeline
from npc_runtime.tts.base import TTS
from npc_runtime.tts.speaker import Speaker, SpokenChunk

log = structlog.get_logger(__name__)

#: How many history entries go into the prompt (older ones are dropped until memory lands).
HISTORY_WINDOW = 16


class State(enum.Enum):
    AWAITING_START = "awaiting_start"
    IDLE = "idle"
    RESPONDING = "responding"
    CLOSED = "closed"


class Trigger(enum.Enum):
    START = "start"
    RESPOND = "respond"
    DONE = "done"
    CLOSE = "close"


TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.AWAITING_START, Trigger.START): State.IDLE,
    (State.IDLE, Trigger.RESPOND): State.RESPONDING,
    (State.RESPONDING, Trigger.RESPOND): State.RESPONDING,
    (State.RESPONDING, Trigger.DONE): State.IDLE,
    (State.IDLE, Trigger.DONE): State.IDLE,
    (State.AWAITING_START, Trigger.CLOSE): State.CLOSED,
    (State.IDLE, Trigger.CLOSE): State.CLOSED,
    (State.RESPONDING, Trigger.CLOSE): State.CLOSED,
    (State.CLOSED, Trigger.CLOSE): State.CLOSED,
}


def next_state(state: State, trigger: Trigger) -> State:
    """The pure transition function; raises :class:`ProtocolError` for an illegal move."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise ProtocolError(f"{trigger.value} is not allowed in state {state.value}", code="bad_state") from None


class PersonaSource(Protocol):
    def get(self, character_id: str) -> Persona: ...


@dataclass(slots=True)
class Services:
    """What a session needs from the runtime (built by :mod:`npc_runtime.wiring`)."""

    personas: PersonaSource
    dialogue: Dialogue
    tts: TTS | None = None
    #: The voice of a persona (engine per persona voice settings); overrides ``tts`` when set.
    voices: Callable[[Persona], TTS | None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ready_timeout: float = 120.0


class Turn:
    """One response. Owns its task; :meth:`interrupt` stops it and waits until it has ended."""

    def __init__(self, session: "Session", response_id: str, turn_input: TurnInput, trigger: str, ref: str | None) -> None:
        self.session, self.id, self.input, self.trigger, self.ref = session, response_id, turn_input, trigger, ref
        self.timeline = Timeline(session.clock)
        self.stats = TurnStats()
        self.text_parts: list[str] = []
        self.actions: list[ActionOut] = []
        self.status = "completed"
        self.speaker = Speaker(session.tts) if session.audio_enabled and session.tts is not None else None
        self.voice_failed = False
        self._interrupting = False
        self.task: asyncio.Task[None] = asyncio.create_task(self._run(), name=f"turn-{response_id}")

    async def interrupt(self) -> None:
        """Stop the response (no-op once it has ended) and wait for its ``response.end``."""
        if not self.task.done():
            self._interrupting = True
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        structlog.contextvars.bind_contextvars(response_id=self.id)
        emit = self.session.emit
        await emit(p.ResponseStart(response_id=self.id, trigger=self.trigger, ref=self.ref))
        error: NpcError | None = None
        try:
            await self._generate()
        except asyncio.CancelledError:
            if not self._interrupting:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            self.status = "interrupted"
        except NpcError as exc:
            error, self.status = exc, "failed"
        self.timeline.mark("end")
        log.info("turn ended", status=self.status, chunks=self.stats.chunks, dropped_tags=self.stats.dropped_tags)
        if error is not None:
            log.warning("turn failed", code=error.code)
            await emit(p.ErrorEvent(response_id=self.id, code=error.code, message=error.message, retryable=error.retryable))
        await emit(self._end_event(error))
        self.session.finish_turn(self)

    async def _generate(self) -> None:
        agen = self.session.services.dialogue.respond(self.input, timeline=self.timeline, stats=self.stats)
        try:
            async for out in agen:
                if isinstance(out, SpeechDelta):
                    self.timeline.mark("first_text")
                    self.text_parts.append(out.text)
                    await self.session.emit(p.TextDelta(response_id=self.id, text=out.text))
                    if self.speaking:
                        await self._voice(self.speaker.feed(out.text))  # type: ignore[union-attr]
                elif isinstance(out, EmotionOut):
                    if self.speaking:
                        await self._voice(self.speaker.flush())  # type: ignore[union-attr]
                    await self.session.emit(p.EmotionEvent(
                        response_id=self.id, emotion=out.emotion, text_offset=out.text_offset, at_ms=self._at_ms(),
                    ))
                else:
                    if self.speaking:
                        await self._voice(self.speaker.flush())  # type: ignore[union-attr]
                    self.timeline.mark("first_action")
                    self.actions.append(out)
                    a = out.action
                    await self.session.emit(p.ActionEvent(
                        response_id=self.id, index=len(self.actions) - 1, verb=a.verb,
                        object=a.object, target=a.target, text_offset=out.text_offset,
                        at_ms=self._at_ms(),
                    ))
            if self.speaking:
                await self._voice(self.speaker.flush())  # type: ignore[union-attr]
        finally:
            await agen.aclose()

    def _at_ms(self) -> float | None:
        """Where the audio sent so far ends (the moment for an action or emotion); None without audio."""
        return round(self.speaker.position_ms, 1) if self.speaker is not None else None

    async def _voice(self, chunks: AsyncIterator[SpokenChunk]) -> None:
        """Send synthesized audio: a ``response.audio`` event, then its binary frame. A TTS
        failure is reported once and the rest of the reply goes on as text only."""
        try:
            async for chunk in chunks:
                self.timeline.mark("first_audio")
                await self.session.emit(p.AudioChunkEvent(
                    response_id=self.id, seq=chunk.seq, start_ms=round(chunk.start_ms, 3), samples=chunk.samples,
                    visemes=[p.VisemeCueMsg(viseme=c.viseme, start_ms=round(c.start_ms, 3), end_ms=round(c.end_ms, 3)) for c in chunk.cues],
                ))
                await self.session.emit(chunk.pcm)
        except NpcError as exc:
            log.warning("tts failed; continuing as text", code=exc.code)
            await self.session.emit(p.ErrorEvent(response_id=self.id, code=exc.code, message=exc.message, retryable=exc.retryable))
            self.voice_failed = True
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    @property
    def speaking(self) -> bool:
        return self.speaker is not None and not self.voice_failed

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def _end_event(self, error: NpcError | None) -> p.ResponseEnd:
        timings: dict[str, float] = self.timeline.as_ms()
        timings["chunks"] = float(self.stats.chunks)
        return p.ResponseEnd(
            response_id=self.id,
            status=self.status,
            text=self.text,
            actions=[p.ActionRecord(verb=a.action.verb, object=a.action.object, target=a.action.target) for a in self.actions],
            timings=timings,
            truncated=self.stats.finish_reason == "length",
            audio_ms=round(self.speaker.position_ms, 1) if self.speaker is not None else None,
            error=error.code if error else None,
        )

    def history_text(self) -> str:
        """What the character said and did, as it goes back into the prompt."""
        tags = " ".join(a.action.as_tag() for a in self.actions)
        return " ".join(part for part in (self.text.strip(), tags) if part)


class Session:
    """One WebSocket conversation with one character."""

    def __init__(self, services: Services, *, clock: Callable[[], float] | None = None, outbox_size: int = 4096) -> None:
        self.services = services
        self.clock = clock or time.monotonic
        self.id = uuid.uuid4().hex[:12]
        self.state = State.AWAITING_START
        self.outbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=outbox_size)
        self.persona: Persona | None = None
        self.scene = Scene()
        self.player = p.Player()
        self.options = p.SessionOptions()
        self.audio_enabled = False
        self.tts: TTS | None = None
        self.history: list[HistoryEntry] = []
        self.turn: Turn | None = None
        self._turn_ids = itertools.count(1)
        self._prepare_task: asyncio.Task[None] | None = None

    # -- output

    async def emit(self, event: Any) -> None:
        if self.state is not State.CLOSED:
            await self.outbox.put(event)

    async def send_error(self, exc: NpcError, ref: str | None = None) -> None:
        await self.emit(p.ErrorEvent(code=exc.code, message=exc.message, ref=ref, retryable=exc.retryable, fatal=exc.fatal))

    # -- input

    async def handle(self, msg: Any) -> None:
        """Act on one parsed client message. Errors become ``error`` events; the session stays usable."""
        try:
            await self._dispatch(msg)
        except NpcError as exc:
            await self.send_error(exc, getattr(msg, "id", None))

    async def _dispatch(self, msg: Any) -> None:
        if isinstance(msg, p.Ping):
            await self.emit(p.Pong(ref=msg.id))
        elif isinstance(msg, p.SessionStart):
            await self._start(msg)
        elif self.state is State.AWAITING_START:
            raise ProtocolError(f"send session.start before {msg.type}", code="no_session")
        elif isinstance(msg, p.TextInput):
            await self._interrupt()
            self.history.append(HistoryEntry("player", msg.text))
            await self._respond(player_text=msg.text, trigger="text", ref=msg.id)
        elif isinstance(msg, p.GameEvent):
            if msg.react:
                await self._interrupt()
            self.history.append(HistoryEntry("event", msg.description))
            await self.emit(p.EventAccepted(ref=msg.id, reacting=msg.react))
            if msg.react:
                await self._respond(player_text=None, trigger="game_event", ref=msg.id)
        elif isinstance(msg, p.SceneUpdate):
            self.scene = msg.scene.without(self.persona.id) if self.persona else msg.scene
            s = self.scene
            self._prepare()
            await self.emit(p.SceneUpdated(objects=len(s.objects), locations=len(s.locations), characters=len(s.characters)))
        elif isinstance(msg, p.ResponseCancel):
            await self._cancel(msg)

    async def _start(self, msg: p.SessionStart) -> None:
        if self.state is not State.AWAITING_START:
            raise ProtocolError("the session has already started; open a new connection for another", code="session_exists")
        persona = self.services.personas.get(msg.character)
        try:
            await asyncio.wait_for(self.services.ready.wait(), self.services.ready_timeout)
        except TimeoutError:
            raise NpcError("the models are still loading; retry shortly", code="not_ready", retryable=True) from None
        self.persona, self.player, self.options = persona, msg.player, msg.options
        voices = self.services.voices
        tts = self.tts = voices(persona) if voices is not None else self.services.tts
        self.audio_enabled = tts is not None and not msg.options.text_only
        self.scene = msg.scene.without(persona.id)
        self.state = next_state(self.state, Trigger.START)
        structlog.contextvars.bind_contextvars(session_id=self.id, character=persona.id)
        log.info("session started", objects=len(self.scene.objects))
        self._prepare()
        await self.emit(p.SessionReady(
            session_id=self.id, character=p.CharacterInfo(id=persona.id, name=persona.name),
            actions=allowed_verbs(persona),
            audio=p.AudioFormat(sample_rate=tts.sample_rate) if self.audio_enabled and tts is not None else None,
            mood=persona.mood,
        ))

    def _prepare(self) -> None:
        """Warm the engine for this character and scene in the background (owned task)."""
        if self._prepare_task is not None:
            self._prepare_task.cancel()
        assert self.persona is not None
        self._prepare_task = asyncio.create_task(self._run_prepare(self.persona, self.scene), name=f"prepare-{self.id}")

    async def _run_prepare(self, persona: Persona, scene: Scene) -> None:
        try:
            await self.services.dialogue.prepare(persona, scene, player_name=self.player.name)
        except NpcError as exc:
            log.warning("prefill failed", code=exc.code)

    def _current_persona(self) -> Persona:
        """The latest good version of the persona (hot reload); the session's own if it vanished."""
        assert self.persona is not None
        try:
            self.persona = self.services.personas.get(self.persona.id)
        except PersonaError:
            log.warning("persona no longer available; keeping the loaded version")
        return self.persona

    async def _interrupt(self) -> None:
        if self.turn is not None:
            await self.turn.interrupt()

    async def _respond(self, *, player_text: str | None, trigger: str, ref: str | None) -> None:
        self.state = next_state(self.state, Trigger.RESPOND)
        persona = self._current_persona()
        prior = self.history[:-1] if player_text is not None else self.history
        turn_input = TurnInput(
            persona=persona, scene=self.scene, history=tuple(prior[-HISTORY_WINDOW:]),
            player_text=player_text, player_name=self.player.name,
            max_tokens=self.options.max_tokens, seed=self.options.seed,
        )
        self.turn = Turn(self, f"r{next(self._turn_ids)}-{self.id[:6]}", turn_input, trigger, ref)

    async def _cancel(self, msg: p.ResponseCancel) -> None:
        turn = self.turn
        if turn is None or (msg.response_id is not None and msg.response_id != turn.id):
            raise ProtocolError("no response in progress with that id", code="no_response")
        await turn.interrupt()

    def finish_turn(self, turn: Turn) -> None:
        """Called by a turn as it ends: record what was said and heard, go idle."""
        said = turn.history_text()
        if said:
            self.history.append(HistoryEntry("character", said))
        if self.turn is turn:
            self.turn = None
            if self.state is State.RESPONDING:
                self.state = next_state(self.state, Trigger.DONE)

    async def aclose(self) -> None:
        """Cancel and await everything the session owns. Idempotent."""
        turn, self.turn = self.turn, None
        self.state = next_state(self.state, Trigger.CLOSE)
        if turn is not None:
            await turn.interrupt()
        if self._prepare_task is not None:
            self._prepare_task.cancel()
            await asyncio.gather(self._prepare_task, return_exceptions=True)
