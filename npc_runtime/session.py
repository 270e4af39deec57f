"""One conversation: the session state machine, a :class:`Turn` per response, the ordered outbox.

The server feeds parsed client messages to :meth:`Session.handle` and drains
:attr:`Session.outbox` into the socket, in order. A response runs as a :class:`Turn` task owned
by the session; a new utterance, a reacting game event or ``response.cancel`` interrupts it:
the dialogue generator is closed (the LLM stops at its next token), ``response.end`` reports
``interrupted`` with the text that was sent, and only that text enters the history.

Voice in: binary frames go to a per-session :class:`~npc_runtime.asr.listener.Listener` (VAD, end
of turn, streaming ASR); its events become ``speech.*`` and ``transcript.*`` events, and a final
transcript starts a response like ``input.text``. Speech that starts while the character speaks
(its response is running, or its audio is still playing on the client) and lasts ``barge_in_ms``
is a barge-in: ``response.interrupted`` (the client stops playback), the response stops, and the history keeps only what the
player heard, from the client's ``playback.mark`` events (falling back to everything sent).
Shorter speech over the character is a backchannel and changes nothing.

States and transitions are a pure table (:data:`TRANSITIONS`); :meth:`Session.aclose` cancels
and awaits every task the session owns.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import structlog

from npc_runtime import protocol as p
from npc_runtime.access import OPEN, Identity
from npc_runtime.asr.base import ASR, VAD
from npc_runtime.asr.endpoint import EndpointConfig
from npc_runtime.asr.listener import (
    AudioError,
    ListenConfig,
    Listener,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    UtteranceRefused,
)
from npc_runtime.dialogue.guard import asked_topics, touches_topic
from npc_runtime.dialogue.prompt import HistoryEntry
from npc_runtime.dialogue.turn import ActionOut, Dialogue, EmotionOut, SpeechDelta, TurnInput, TurnStats, allowed_verbs
from npc_runtime.errors import NpcError, PersonaError, ProtocolError
from npc_runtime.memory import MemoryEntry, remembered
from npc_runtime.metrics import Metrics
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene
from npc_runtime.timeline import Timeline
from npc_runtime.tts.base import TTS
from npc_runtime.tts.filler import FillerCache
from npc_runtime.tts.speaker import Speaker, SpokenChunk

if TYPE_CHECKING:
    from npc_runtime.knowledge.base import KnowledgeBase
    from npc_runtime.knowledge.store import Passage
    from npc_runtime.memory import MemoryStore

log = structlog.get_logger(__name__)

#: How many history entries a turn is given (the prompt profile keeps the character's last few replies as turns and
#: folds the rest into facts: npc_runtime/dialogue/history.py).
HISTORY_WINDOW = 16
#: Finished responses kept so that late ``playback.mark`` events still find theirs.
RECENT_TURNS = 4


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
    #: One line per engine on how it runs (e.g. which llama.cpp kernels, and why), shown by ``/readyz``.
    engine_status: list[str] = field(default_factory=list)
    ready_timeout: float = 120.0
    #: Why the server cannot become ready now (something it waits for is down, e.g. the LLM server cannot be
    #: reached; a line for the client): while set, session.start gets ``not_ready`` at once instead of waiting.
    unready_reason: str | None = None
    #: Speech recognition and voice activity detection; voice input is off without both.
    asr: ASR | None = None
    vad: VAD | None = None
    #: A second recogniser for partial transcripts (default: ``asr``), so finals never wait behind them.
    asr_partial: ASR | None = None
    #: Per-character knowledge (RAG) and per-player memory; each is off when None.
    knowledge: "KnowledgeBase | None" = None
    memory: "MemoryStore | None" = None
    retrieval_k: int = 3
    retrieval_budget_ms: float = 150.0
    metrics: Metrics | None = None
    #: Time-to-first-audio target (ms) when the persona sets none, and the pre-synthesized fillers.
    budget_ms: float = 1500.0
    fillers: FillerCache | None = None
    facts_max_chars: int = 600
    #: Open sessions at most (the server refuses more with ``busy``).
    max_sessions: int = 64
    #: Utterances allowed to wait for the final recogniser (all sessions); more are refused with ``busy``.
    asr_max_waiting: int = 4
    #: What a session's scene may add to the prompt, in tokens (a larger one is refused with ``invalid_scene``).
    scene_max_tokens: int = 1024


async def _wait_ready(services: Services) -> None:
    """Wait until the models are warm (at most ``ready_timeout``). ``not_ready`` (retryable) when the time is
    up, and at once while ``unready_reason`` says something the server waits for is down."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + services.ready_timeout
    while not services.ready.is_set():
        if services.unready_reason:
            raise NpcError(f"the server is not ready: {services.unready_reason}; retry shortly", code="not_ready", retryable=True)
        left = deadline - loop.time()
        if left <= 0:
            raise NpcError("the models are still loading; retry shortly", code="not_ready", retryable=True)
        try:
            await asyncio.wait_for(services.ready.wait(), min(left, 0.25))  # a short wait: unready_reason may be set meanwhile
        except TimeoutError:
            pass


def _cap_chars(texts: list[str], limit: int) -> list[str]:
    """The passages, best first, within ``limit`` characters in all (the last one cut at a word)."""
    out: list[str] = []
    left = limit
    for text in texts:
        if left <= 40:
            break
        if len(text) > left:
            text = text[:left].rsplit(" ", 1)[0] + "…"
        out.append(text)
        left -= len(text)
    return out


class Turn:
    """One response. Owns its task; :meth:`interrupt` stops it and waits until it has ended."""

    def __init__(self, session: "Session", response_id: str, turn_input: TurnInput, trigger: p.Trigger, ref: str | None,
                 *, started_at: float | None = None, query: str | None = None) -> None:
        self.session, self.id, self.trigger, self.ref = session, response_id, trigger, ref
        self.input = dataclasses.replace(turn_input, on_admitted=self._admitted)
        self.query = query
        self.sources: list[Passage] = []
        #: How the knowledge lookup went (response.end ``knowledge``); None: no lookup.
        self.knowledge: str | None = None
        #: A voice turn's timeline starts where the player's voice ended (ASR time included).
        self.timeline = Timeline(session.clock, start=started_at)
        if started_at is not None:
            self.timeline.mark("transcript_final")
        self.stats = TurnStats()
        self.text_parts: list[str] = []
        self.actions: list[ActionOut] = []
        self.status: p.ResponseStatus = "completed"
        self.speaker = Speaker(session.tts) if session.audio_enabled and session.tts is not None else None
        if self.speaker is not None:
            self.speaker.on_unit = lambda: self.timeline.mark("first_clause")
        self.voice_failed = False
        self._interrupting = False
        #: Audio sent, with the text of each chunk (to know what a player heard).
        self.spoken: list[SpokenChunk] = []
        self.action_at: list[float | None] = []
        #: Playback was stopped before the end (interrupted, or barge-in while its audio played).
        self.cut = False
        #: The last playback mark: (played_ms, clock time it arrived).
        self.mark: tuple[float, float] | None = None
        self.first_audio_at: float | None = None
        self.ended = False
        # the latency budget
        latency = turn_input.persona.latency
        self.budget_ms = float(latency.first_audio_ms or session.services.budget_ms)
        self.filler_played = False
        #: The reply was shortened (``latency.late_max_tokens``): it waited for the model past the filler point.
        self.capped = False
        self._filler_seqs: set[int] = set()
        self._voice_lock = asyncio.Lock()
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
        await emit(p.ResponseStart(response_id=self.id, trigger=self.trigger, ref=self.ref, speaker=self.speaker_id))
        error: NpcError | None = None
        try:
            await self._generate()
        except asyncio.CancelledError:
            if not self._interrupting:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            self.status = "interrupted"
            self.cut = True
        except NpcError as exc:
            error, self.status = exc, "failed"
        except Exception:  # noqa: BLE001 - a bug in a turn still ends it with response.end, never silently
            log.exception("turn failed: internal error")
            error, self.status = NpcError("the server failed on this turn (a bug: please report it, with the server log)"), "failed"
        self.timeline.mark("end")
        log.info("turn ended", status=self.status, trigger=self.trigger, chunks=self.stats.chunks,
                 dropped_tags=self.stats.dropped_tags, timings=self.timeline.as_ms())
        if error is not None:
            log.warning("turn failed", code=error.code)
            await emit(p.ErrorEvent(response_id=self.id, code=error.code, message=error.message, retryable=error.retryable))
        self.ended = True
        end = self._end_event(error)
        metrics = self.session.services.metrics
        if metrics is not None:
            metrics.turn_done(self.trigger, self.status, end.timings)
            cause = self.budget_cause(end.timings)
            if cause is not None:
                metrics.budget_misses.labels(cause=cause).inc()
        await emit(end)
        self.session.finish_turn(self)

    async def _retrieve(self) -> None:
        """Knowledge passages for this turn (never fails the turn: late or broken retrieval gives none)."""
        services = self.session.services
        topics = self.input.persona.forbidden_topics
        if services.knowledge is None or not self.query or asked_topics(self.input.player_text, topics):
            return  # a line that asks about a forbidden topic gets the refusal: nothing retrieved may be used
        left = self.budget_ms - self.timeline.elapsed_ms()
        if left <= 0:  # already late (slow recognition): answer without passages
            log.info("retrieval skipped: over budget", over_ms=round(-left))
            self._knowledge("late")
            return
        budget = min(services.retrieval_budget_ms, max(20.0, 0.2 * left))
        found = await services.knowledge.retrieve(self.input.persona, self.query, k=services.retrieval_k, budget_ms=budget)
        self.timeline.mark("retrieval")
        # a Retrieval says whether the lookup failed or was late (a plain list: it worked)
        outcome = getattr(found, "outcome", None)
        self.sources = [p for p in found if not touches_topic(p.text, topics)]
        facts = _cap_chars([p.text for p in self.sources], services.facts_max_chars)
        self.sources = self.sources[: len(facts)]
        if facts:
            self.input = dataclasses.replace(self.input, facts=tuple(facts))
        self._knowledge({"failed": "unavailable", "late": "late"}.get(outcome or "", "used" if facts else "none"))

    def _knowledge(self, result: str) -> None:
        self.knowledge = result
        metrics = self.session.services.metrics
        if metrics is not None:
            metrics.knowledge_lookups.labels(result=result).inc()

    async def _generate(self) -> None:
        filler = asyncio.create_task(self._filler_when_late(), name=f"filler-{self.id}") if self.speaking else None
        try:
            await self._generate_reply()
        finally:
            if filler is not None:
                filler.cancel()
                await asyncio.gather(filler, return_exceptions=True)

    async def _filler_when_late(self) -> None:
        """Nothing to say yet close to the budget: say the persona's filler (pre-synthesized) so the player
        is not left in silence; the reply follows it on the audio timeline."""
        services, persona = self.session.services, self.input.persona
        if services.fillers is None or not persona.latency.filler or self.session.tts is None:
            return
        await asyncio.sleep(max(0.0, 0.75 * self.budget_ms - self.timeline.elapsed_ms()) / 1000.0)
        synths = services.fillers.get(self.session.tts, persona.latency.filler)
        if not synths or self.speaker is None:
            return
        async with self._voice_lock:
            if self.spoken:
                return  # the reply made it in time
            self.filler_played = True
            log.info("filler", budget_ms=self.budget_ms, elapsed_ms=round(self.timeline.elapsed_ms()))
            for chunk in self.speaker.play(synths):
                self._filler_seqs.add(chunk.seq)
                await self._send_chunk(chunk)

    def _admitted(self) -> int | None:
        """The model takes this turn now, after any wait behind other sessions' turns: a turn that waited
        (a quarter of the budget or more) and is past the filler point gets a shorter reply, so the player
        hears the answer sooner and the turns behind it wait less. A turn that is late for another reason (a
        slow transcript) and did not wait is not cut: a shorter reply would not bring its first audio sooner."""
        self.timeline.mark("llm_start")
        cap = self.input.persona.latency.late_max_tokens
        marks = self.timeline.as_ms()
        waited = marks["llm_start"] - marks.get("prompt_ready", marks["llm_start"])
        if cap is None or waited < 0.25 * self.budget_ms or self.timeline.elapsed_ms() < 0.75 * self.budget_ms:
            return None
        self.capped = True
        log.info("reply capped: late for the model", cap=cap, elapsed_ms=round(self.timeline.elapsed_ms()))
        return cap

    async def _generate_reply(self) -> None:
        await self._retrieve()
        agen = self.session.services.dialogue.respond(self.input, timeline=self.timeline, stats=self.stats)
        try:
            async for out in agen:
                if isinstance(out, SpeechDelta):
                    self.timeline.mark("first_text")
                    self.text_parts.append(out.text)
                    await self.session.emit(p.TextDelta(response_id=self.id, text=out.text, speaker=self.speaker_id))
                    if self.speaking:
                        await self._voice(self.speaker.feed(out.text))  # type: ignore[union-attr]
                elif isinstance(out, EmotionOut):
                    if self.speaking:
                        await self._voice(self.speaker.flush())  # type: ignore[union-attr]
                    await self.session.emit(p.EmotionEvent(
                        response_id=self.id, speaker=self.speaker_id, emotion=cast(p.Emotion, out.emotion), text_offset=out.text_offset, at_ms=self._at_ms(),
                    ))
                else:
                    if self.speaking:
                        await self._voice(self.speaker.flush())  # type: ignore[union-attr]
                    self.timeline.mark("first_action")
                    self.actions.append(out)
                    self.action_at.append(self._at_ms())
                    a = out.action
                    await self.session.emit(p.ActionEvent(
                        response_id=self.id, speaker=self.speaker_id, index=len(self.actions) - 1, verb=a.verb,
                        args=a.arguments, object=a.object, target=a.target, text_offset=out.text_offset,
                        at_ms=self._at_ms(),
                    ))
            if self.speaking:
                await self._voice(self.speaker.flush())  # type: ignore[union-attr]
        finally:
            close = getattr(agen, "aclose", None)  # an async generator: stop it where it is
            if close is not None:
                await close()

    def _at_ms(self) -> float | None:
        """Where the audio sent so far ends (the moment for an action or emotion); None without audio."""
        return round(self.speaker.position_ms, 1) if self.speaker is not None else None

    async def _voice(self, chunks: AsyncIterator[SpokenChunk]) -> None:
        """Send synthesized audio: a ``response.audio`` event, then its binary frame. A TTS
        failure is reported once and the rest of the reply goes on as text only."""
        try:
            async with self._voice_lock:
                async for chunk in chunks:
                    self.timeline.mark("first_speech")
                    await self._send_chunk(chunk)
        except NpcError as exc:
            log.warning("tts failed; continuing as text", code=exc.code)
            await self.session.emit(p.ErrorEvent(response_id=self.id, code=exc.code, message=exc.message, retryable=exc.retryable))
            self.voice_failed = True
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def _send_chunk(self, chunk: SpokenChunk) -> None:
        """One audio chunk to the client: its ``response.audio`` event, then the binary frame."""
        self.timeline.mark("first_audio")
        if self.first_audio_at is None:
            self.first_audio_at = self.session.clock()
        self.spoken.append(chunk)
        await self.session.emit(p.AudioChunkEvent(
            response_id=self.id, speaker=self.speaker_id, sample_rate=chunk.sample_rate or None, seq=chunk.seq,
            start_ms=round(chunk.start_ms, 3), samples=chunk.samples,
            visemes=[p.VisemeCueMsg(viseme=cast(p.Viseme, c.viseme), start_ms=round(c.start_ms, 3), end_ms=round(c.end_ms, 3)) for c in chunk.cues],
        ))
        await self.session.emit(chunk.pcm)

    @property
    def speaker_id(self) -> str:
        return self.input.persona.id

    @property
    def speaking(self) -> bool:
        return self.speaker is not None and not self.voice_failed

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def _end_event(self, error: NpcError | None) -> p.ResponseEnd:
        timings: dict[str, float] = self.timeline.as_ms()
        timings["chunks"] = float(self.stats.chunks)
        timings["budget"] = self.budget_ms
        timings["budget_missed"] = float(self.budget_cause(timings) is not None)
        timings["filler"] = float(self.filler_played)
        timings["capped"] = float(self.capped)
        return p.ResponseEnd(
            response_id=self.id, speaker=self.speaker_id,
            status=self.status,
            text=self.text,
            actions=[p.ActionRecord(verb=a.action.verb, args=a.action.arguments, object=a.action.object, target=a.action.target) for a in self.actions],
            timings=timings,
            truncated=self.stats.finish_reason == "length",
            audio_ms=round(self.speaker.position_ms, 1) if self.speaker is not None else None,
            error=error.code if error else None,
            heard_ms=self.heard_ms,
            heard_text=self.heard_text(),
            sources=[p.SourceRef(file=s.source, heading=s.heading, score=round(s.score, 3)) for s in self.sources],
            knowledge=self.knowledge,  # type: ignore[arg-type]
        )

    # -- what the player heard

    def budget_cause(self, t: dict[str, float]) -> str | None:
        """None when the player heard something (text, without audio) within the budget; else the stage that
        took longest: asr, retrieval, queue (waiting for the model: other sessions' turns), llm (reading the
        prompt, the first clause), tts."""
        if self.status != "completed":
            return None
        first = t.get("first_audio") if self.speaker is not None and not self.voice_failed else t.get("first_text")
        if first is not None and first <= self.budget_ms:
            return None
        asr = t.get("transcript_final", 0.0)
        retrieved = t.get("retrieval", asr)
        # the LLM's share runs until the first speakable clause is complete (or the first text, without audio)
        clause = t.get("first_clause", t.get("first_text", t.get("first_token", retrieved)))
        admitted = t.get("llm_start", retrieved)
        stages = {"asr": asr, "retrieval": retrieved - asr, "queue": admitted - retrieved, "llm": clause - admitted,
                  "tts": (first - clause) if first is not None else 0.0}
        return max(stages, key=lambda k: stages[k])

    @property
    def audio_ms(self) -> float:
        return self.speaker.position_ms if self.speaker is not None else 0.0

    @property
    def heard_ms(self) -> float | None:
        """For a cut response with playback marks: how much the player heard; else None (all of it)."""
        if not self.cut or self.mark is None or self.speaker is None:
            return None
        return round(min(self.mark[0], self.audio_ms), 1)

    def heard_text(self) -> str | None:
        """The words the player heard, when that is less than all of :attr:`text`; else None."""
        heard = self.heard_ms
        if heard is None:
            return None
        return " ".join(t for t in (c.heard_text(heard) for c in self.spoken if c.seq not in self._filler_seqs) if t)

    def playing_until(self) -> float:
        """Estimated clock time at which the client's playback of this response ends."""
        if self.first_audio_at is None:
            return 0.0
        if self.mark is not None:
            played, at = self.mark
            return at + max(self.audio_ms - played, 0.0) / 1000.0
        return self.first_audio_at + self.audio_ms / 1000.0

    def history_text(self) -> str:
        """What the character said and did, as it goes back into the prompt: for a response cut
        short, only the heard words and the actions reached."""
        heard = self.heard_ms
        if heard is None:
            text, actions = self.text.strip(), self.actions
        else:
            text = self.heard_text() or ""
            actions = [a for a, at in zip(self.actions, self.action_at) if at is None or at <= heard]
        tags = " ".join(a.action.as_tag() for a in actions)
        return " ".join(part for part in (text, tags) if part)


class Session:
    """One WebSocket conversation with one character."""

    def __init__(self, services: Services, *, clock: Callable[[], float] | None = None, outbox_size: int = 4096,
                 outbox: asyncio.Queue[Any] | None = None, identity: Identity = OPEN) -> None:
        self.services = services
        #: Who the connection is (its credential): with a player token, the player id is the token's.
        self.identity = identity
        #: A ``session.start`` arrived (the server's start deadline only waits for that, not for the models).
        self.start_requested = False
        self.clock = clock or time.monotonic
        self.id = uuid.uuid4().hex[:12]
        self.state = State.AWAITING_START
        #: A cast member shares its scene session's outbox (its events carry its ``speaker``).
        self.outbox: asyncio.Queue[Any] = outbox if outbox is not None else asyncio.Queue(maxsize=outbox_size)
        self.is_cast_member = outbox is not None
        #: Other characters present (session.start's cast): one member session each, same connection.
        self.cast: dict[str, Session] = {}
        self._converse_task: asyncio.Task[None] | None = None
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
        self._recent: collections.deque[Turn] = collections.deque(maxlen=RECENT_TURNS)
        self._said: tuple[Turn, HistoryEntry] | None = None  # the last character history entry, while marks may cut it
        # voice in
        self.listener: Listener | None = None
        self.listen_settings: p.ListenSettings | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._barge_task: asyncio.Task[None] | None = None
        self._barge_target: Turn | None = None  # the response the speech in progress is over
        self._backchannels: set[str] = set()
        # memory
        self.memory_summary = ""
        self._persisted = 0  # history entries already written to memory
        self._memory_task: asyncio.Task[None] | None = None
        self._recall_failed: str | None = None  # the code, when the memory could not be read at the start

    # -- output

    async def emit(self, event: Any) -> None:
        if self.state is not State.CLOSED:
            if isinstance(event, p.ErrorEvent) and self.services.metrics is not None:
                self.services.metrics.error(event.code)
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
            await self._player_turn(msg)
        elif isinstance(msg, p.Converse):
            await self._converse(msg)
        elif isinstance(msg, p.GameEvent):
            if msg.react:
                await self._interrupt_scene()
            for member in self.cast.values():  # everyone present perceives it; only this character reacts
                member.history.append(HistoryEntry("event", msg.description))
            self.history.append(HistoryEntry("event", msg.description))
            await self.emit(p.EventAccepted(ref=msg.id, reacting=msg.react))
            if msg.react:
                await self._respond(player_text=None, trigger="game_event", ref=msg.id, query=msg.description)
            else:
                self._persist()
        elif isinstance(msg, p.SceneUpdate):
            if self.persona is not None:
                await self._check_scene(self.persona, msg.scene.without(self.persona.id), self.player.name)
            self.scene = msg.scene.without(self.persona.id) if self.persona else msg.scene
            s = self.scene
            self._prepare()
            for cid, member in self.cast.items():
                member.scene = msg.scene.without(cid)
                member._prepare()
            await self.emit(p.SceneUpdated(objects=len(s.objects), locations=len(s.locations), characters=len(s.characters)))
        elif isinstance(msg, p.ResponseCancel):
            await self._cancel(msg)
        elif isinstance(msg, p.PlaybackMark):
            self._on_mark(msg)
        elif isinstance(msg, p.AudioCommit):
            self._require_listener().commit()
        elif isinstance(msg, p.AudioClear):
            self._require_listener().clear()

    async def _start(self, msg: p.SessionStart) -> None:
        if self.state is not State.AWAITING_START:
            raise ProtocolError("the session has already started; open a new connection for another", code="session_exists")
        self.start_requested = True  # the start deadline waits for this start (the models may still be loading) ...
        try:
            await self._begin(msg)
        except BaseException:
            self.start_requested = self.state is not State.AWAITING_START  # ... and not for one that failed
            raise

    async def _begin(self, msg: p.SessionStart) -> None:
        msg = self._as_identity(msg)
        persona = self.services.personas.get(msg.character)
        if len(set(msg.cast)) != len(msg.cast) or msg.character in msg.cast:
            raise ProtocolError("cast: each other character once, not the session's own", code="invalid_message")
        cast = [self.services.personas.get(cid) for cid in msg.cast]  # unknown_character before anything starts
        await _wait_ready(self.services)
        if not self.is_cast_member:  # members share the scene: one check
            await self._check_scene(persona, msg.scene.without(persona.id), msg.player.name)
        self.persona, self.player, self.options = persona, msg.player, msg.options
        await self._recall(persona)
        voices = self.services.voices
        tts = self.tts = voices(persona) if voices is not None else self.services.tts
        self.audio_enabled = tts is not None and not msg.options.text_only
        self.scene = msg.scene.without(persona.id)
        self.state = next_state(self.state, Trigger.START)
        if self.is_cast_member:
            self._prepare()
            return
        structlog.contextvars.bind_contextvars(session_id=self.id, character=persona.id)
        log.info("session started", objects=len(self.scene.objects), cast=len(cast))
        self._prepare()
        self._start_listening(persona, msg.options)
        for member_persona in cast:
            member = Session(self.services, clock=self.clock, outbox=self.outbox, identity=self.identity)
            await member._start(msg.model_copy(update={"character": member_persona.id, "cast": []}))
            self.cast[member_persona.id] = member
        await self.emit(p.SessionReady(
            session_id=self.id, character=p.CharacterInfo(id=persona.id, name=persona.name),
            actions=allowed_verbs(persona, self.scene),
            audio=p.AudioFormat(sample_rate=tts.sample_rate) if self.audio_enabled and tts is not None else None,
            audio_in=msg.options.audio_in if self.listener is not None else None,
            listen=self.listen_settings,
            mood=persona.mood,
            cast=[p.CharacterInfo(id=m.id, name=m.name) for m in cast],
        ))
        for who in (self, *self.cast.values()):  # after session.ready: the session goes on, without what was remembered
            if who._recall_failed is not None:
                name = who.persona.id if who.persona is not None else "the character"
                await self.emit(p.ErrorEvent(
                    code="memory_unavailable", retryable=True,
                    message=f"what {name} remembers of the player could not be read ({who._recall_failed}); "
                            "the conversation starts fresh and is still saved",
                ))

    async def _check_scene(self, persona: Persona, scene: Scene, player_name: str | None) -> None:
        """A scene too costly for the prompt is refused (``invalid_scene``) before anything uses it."""
        await self.services.dialogue.check_scene(persona, scene, player_name=player_name,
                                                 max_scene_tokens=self.services.scene_max_tokens)

    def _as_identity(self, msg: p.SessionStart) -> p.SessionStart:
        """``msg`` as this connection's credential allows: characters the token names, and the token's player id
        (a client's own ``player.id`` is ignored then)."""
        identity = self.identity
        for cid in (msg.character, *msg.cast):
            if not identity.allows(cid):
                raise ProtocolError(f"this player token does not allow talking to {cid!r}", code="forbidden")
        if identity.trusted:
            return msg
        if msg.player.id is not None and msg.player.id != identity.player_id:
            log.info("player.id ignored: the player token names the player")
        player = msg.player.model_copy(update={"id": identity.player_id, "name": msg.player.name or identity.name})
        return msg.model_copy(update={"player": player})

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
        fillers = self.services.fillers
        if fillers is not None and self.tts is not None and self.audio_enabled and persona.latency.filler:
            try:
                await fillers.ensure(self.tts, persona.latency.filler)
            except NpcError as exc:
                log.warning("filler synthesis failed", code=exc.code)

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

    async def _respond(self, *, player_text: str | None, trigger: p.Trigger, ref: str | None, started_at: float | None = None,
                       query: str | None = None) -> None:
        self.state = next_state(self.state, Trigger.RESPOND)
        self._persist()
        persona = self._current_persona()
        prior = self.history[:-1] if player_text is not None else self.history
        turn_input = TurnInput(
            persona=persona, scene=self.scene, history=tuple(prior[-HISTORY_WINDOW:]),
            player_text=player_text, player_name=self.player.name,
            max_tokens=self.options.max_tokens, seed=self.options.seed, memory_summary=self.memory_summary,
            brief=self.options.brief or "", session_key=self.id,
        )
        if query is None and player_text is not None:
            query = self._retrieval_query(player_text, prior)
        self.turn = Turn(self, f"r{next(self._turn_ids)}-{self.id[:6]}", turn_input, trigger, ref, started_at=started_at,
                         query=query)

    @staticmethod
    def _retrieval_query(player_text: str, prior: list[HistoryEntry]) -> str:
        """What to look up: the player's words; a short follow-up ("why?") with the line it follows."""
        if len(player_text.split()) >= 6:
            return player_text
        last = next((h.text for h in reversed(prior) if h.kind == "character"), "")
        return f"{last} {player_text}".strip()

    # -- memory

    async def _recall(self, persona: Persona) -> None:
        """Load what this character remembers of this player (a failure only means starting fresh)."""
        memory = self.services.memory
        if memory is None or self.player.id is None:  # an anonymous player is remembered by no one
            return
        try:
            recall = await memory.recall(self.player.id, persona.id)
        except NpcError as exc:
            log.warning("memory unavailable; starting fresh", code=exc.code)
            self._recall_failed = exc.code
            return
        # facts only: a returning player's earlier turns never come back as the character's lines to copy
        self.memory_summary = remembered(recall, partner_name=self.player.name or self.player.id)
        if recall.total:
            log.info("remembered", entries=recall.total, recent=len(recall.recent), summary_chars=len(recall.summary))

    def _persist(self, *, everything: bool = False) -> None:
        """Write the settled history entries to memory, in order, off the event loop. The last reply
        stays out while a barge-in may still cut it (it is written with the next line, or at close)."""
        memory = self.services.memory
        if memory is None or self.persona is None or self.player.id is None:
            return
        end = len(self.history)
        if not everything and self._said is not None and end and self.history[-1] is self._said[1]:
            end -= 1
        entries = [MemoryEntry(h.kind, h.text, time.time()) for h in self.history[self._persisted:end]]
        if end > self._persisted and self._said is not None and any(h is self._said[1] for h in self.history[self._persisted:end]):
            self._said = None  # written: no longer cut by late playback marks
        self._persisted = max(self._persisted, end)
        if entries:
            previous = self._memory_task
            self._memory_task = asyncio.create_task(self._write_memory(previous, self.player.id, self.persona.id, entries),
                                                    name=f"memory-{self.id}")

    async def _write_memory(self, previous: asyncio.Task[None] | None, partner: str, character: str,
                            entries: list[MemoryEntry]) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        memory, metrics = self.services.memory, self.services.metrics
        assert memory is not None
        try:
            await memory.append(partner, character, entries, partner_name=self.player.name or partner,
                                character_name=self.persona.name if self.persona else character)
        except NpcError as exc:
            # the store retried and keeps the entries pending (written before the next write): say so, go on
            log.warning("memory write failed; entries kept for the next write", code=exc.code, entries=len(entries),
                        pending=memory.pending)
            if metrics is not None:
                metrics.memory_write_failures.inc()
            await self.emit(p.ErrorEvent(
                code="memory_unavailable", retryable=True,
                message=f"this conversation could not be saved to memory ({exc.code}); {memory.pending} lines are kept "
                        "and written with the next one",
            ))
        finally:
            if metrics is not None:
                metrics.memory_pending.set(memory.pending)

    async def _cancel(self, msg: p.ResponseCancel) -> None:
        turn = self.turn
        if turn is None or (msg.response_id is not None and msg.response_id != turn.id):
            raise ProtocolError("no response in progress with that id", code="no_response")
        await turn.interrupt()

    def finish_turn(self, turn: Turn) -> None:
        """Called by a turn as it ends: record what was said and heard, go idle."""
        self._recent.append(turn)
        said = turn.history_text()
        if said:
            entry = HistoryEntry("character", said)
            self.history.append(entry)
            self._said = (turn, entry)
        else:
            self._said = None
        if self.turn is turn:
            self.turn = None
            if self.state is State.RESPONDING:
                self.state = next_state(self.state, Trigger.DONE)

    # -- what the player heard

    def _find_turn(self, response_id: str) -> Turn | None:
        if self.turn is not None and self.turn.id == response_id:
            return self.turn
        return next((t for t in reversed(self._recent) if t.id == response_id), None)

    def _on_mark(self, msg: p.PlaybackMark) -> None:
        turn = self._find_turn(msg.response_id)
        if turn is None:
            log.debug("playback mark for an unknown or old response", ref_response=msg.response_id)
            return
        turn.mark = (msg.played_ms, self.clock())
        if turn.cut:
            self._update_said(turn)

    def _update_said(self, turn: Turn) -> None:
        """Rewrite the history entry of a finished response that was cut short: only what was heard."""
        if self._said is None or self._said[0] is not turn:
            return
        old = self._said[1]
        index = next((i for i in range(len(self.history) - 1, -1, -1) if self.history[i] is old), None)
        if index is None:
            return
        said = turn.history_text()
        if said:
            entry = HistoryEntry("character", said)
            self.history[index] = entry
            self._said = (turn, entry)
        else:
            del self.history[index]
            self._said = None

    # -- voice in

    def _start_listening(self, persona: Persona, options: p.SessionOptions) -> None:
        asr, vad = self.services.asr, self.services.vad
        if asr is None or vad is None:
            return
        listen = options.listen
        settings = p.ListenSettings(
            end_silence_ms=listen.end_silence_ms if listen.end_silence_ms is not None else persona.listen.end_silence_ms,
            barge_in_ms=listen.barge_in_ms if listen.barge_in_ms is not None else persona.listen.barge_in_ms,
            partials=listen.partials,
        )
        config = ListenConfig(
            endpoint=EndpointConfig(end_silence_ms=settings.end_silence_ms),
            partials=settings.partials, max_frame_bytes=p.MAX_AUDIO_FRAME_BYTES,
            max_decodes_waiting=self.services.asr_max_waiting,
        )
        self.listen_settings = settings
        self.listener = self._new_listener(options.audio_in.sample_rate, config)
        self._listen_task = asyncio.create_task(self._listen(options.audio_in.sample_rate, config), name=f"listen-{self.id}")

    def _new_listener(self, input_rate: int, config: ListenConfig) -> Listener:
        assert self.services.asr is not None and self.services.vad is not None
        return Listener(asr=self.services.asr, vad=self.services.vad, input_rate=input_rate, config=config, clock=self.clock,
                        partial_asr=self.services.asr_partial)

    def _require_listener(self) -> Listener:
        if self.listener is None:
            raise ProtocolError("this server runs no speech recognition: send input.text", code="audio_in_unavailable")
        return self.listener

    async def feed_audio(self, pcm: bytes) -> None:
        """A binary frame from the client: microphone audio."""
        try:
            if self.state is State.AWAITING_START:
                raise ProtocolError("send session.start before audio", code="no_session")
            self._require_listener().feed(pcm)
        except AudioError as exc:
            await self.send_error(exc)
        except NpcError as exc:
            await self.send_error(exc)

    async def _listen(self, input_rate: int, config: ListenConfig) -> None:
        """Run the session's listener; if speech recognition fails, report it and start a fresh one
        (the utterance is lost, the session goes on)."""
        while self.state is not State.CLOSED and self.listener is not None:
            listener = self.listener
            try:
                await self._consume(listener)
                return
            except NpcError as exc:
                log.warning("speech recognition failed; listening again", code=exc.code)
                await self.send_error(exc)
            self.listener = self._new_listener(input_rate, config)  # before closing the old one: audio keeps flowing
            await listener.aclose()

    async def _consume(self, listener: Listener) -> None:
        async for ev in listener.events():
            if isinstance(ev, SpeechStarted):
                await self.emit(p.SpeechStarted(utterance_id=ev.utterance_id, at_ms=round(ev.at_ms, 1)))
                target = self._speaking_turn()
                if target is not None:
                    self._watch_barge_in(ev.utterance_id, target)
            elif isinstance(ev, SpeechStopped):
                target, self._barge_target = self._barge_target, None
                self._stop_barge_watch()
                await self.emit(p.SpeechStopped(
                    utterance_id=ev.utterance_id, at_ms=round(ev.at_ms, 1), duration_ms=round(ev.duration_ms, 1),
                    discarded=ev.discarded,
                ))
                if ev.discarded:
                    self._backchannels.discard(ev.utterance_id)  # no final comes
                elif (target is not None and ev.utterance_id in self._backchannels and self.listen_settings is not None
                      and ev.duration_ms >= self.listen_settings.barge_in_ms):
                    # it lasted barge_in_ms but ended before the watch saw it (its audio came in a burst)
                    self._backchannels.discard(ev.utterance_id)
                    await self._barge_in(target)
            elif isinstance(ev, TranscriptPartial):
                if self.listen_settings is not None and self.listen_settings.partials:
                    await self.emit(p.TranscriptPartial(utterance_id=ev.utterance_id, text=ev.text, stable=ev.stable))
            elif isinstance(ev, TranscriptFinal):
                await self._on_final(ev)
            elif isinstance(ev, UtteranceRefused):
                log.warning("utterance refused: speech recognition over capacity", utterance_id=ev.utterance_id)
                self._backchannels.discard(ev.utterance_id)
                await self.send_error(ev.error, ref=ev.utterance_id)

    async def _on_final(self, ev: TranscriptFinal) -> None:
        backchannel = ev.utterance_id in self._backchannels
        self._backchannels.discard(ev.utterance_id)
        now = self.clock()
        await self.emit(p.TranscriptFinal(
            utterance_id=ev.utterance_id, text=ev.text, backchannel=backchannel,
            timings={"duration_ms": round(ev.duration_ms, 1), "decode_ms": round(ev.decode_ms, 1),
                     "final_ms": round((now - ev.speech_end_wall) * 1000.0, 1),
                     "speculative_hit": float(ev.speculative_hit)},
        ))
        log.info("transcript", chars=len(ev.text), backchannel=backchannel, decode_ms=round(ev.decode_ms, 1))
        if backchannel or not ev.text.strip() or self.state is State.CLOSED:
            return
        text = ev.text.strip()[: p.MAX_TEXT_CHARS]
        await self._interrupt_scene()
        self.history.append(HistoryEntry("player", text))
        await self._respond(player_text=text, trigger="voice", ref=ev.utterance_id, started_at=ev.speech_end_wall)

    def _speaking_turn(self) -> Turn | None:
        """The response the character (or one of its cast) is speaking now: the running one, or the
        last one whose audio is still playing on the client."""
        if self.turn is not None:
            return self.turn
        for member in self.cast.values():
            if member.turn is not None:
                return member.turn
        last = self._recent[-1] if self._recent else None
        if last is not None and not last.cut and last.playing_until() > self.clock():
            return last
        return None

    def _watch_barge_in(self, utterance_id: str, target: Turn) -> None:
        self._stop_barge_watch()
        self._backchannels.add(utterance_id)  # until the speech lasts barge_in_ms
        self._barge_target = target
        self._barge_task = asyncio.create_task(self._barge_in_after(utterance_id, target), name=f"barge-{self.id}")

    def _stop_barge_watch(self) -> None:
        if self._barge_task is not None and not self._barge_task.done():
            self._barge_task.cancel()
        self._barge_task = None

    async def _barge_in_after(self, utterance_id: str, target: Turn) -> None:
        assert self.listener is not None and self.listen_settings is not None
        # the voice, not the silence after it; polled every 10 ms until the listener emits its progress (issue 16)
        while self.listener.voiced_ms() < self.listen_settings.barge_in_ms:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self._backchannels.discard(utterance_id)
        await self._barge_in(target)

    async def _barge_in(self, target: Turn) -> None:
        """Stop the character: its audio on the client, and its response if still running."""
        log.info("barge-in", response=target.id, running=not target.ended)
        target.cut = True
        if target.ended:
            target.status = "interrupted"
        await self.emit(p.ResponseInterrupted(response_id=target.id, speaker=target.speaker_id))
        if not target.ended:
            await self._stop_converse()
            await target.interrupt()
        else:
            target.session._update_said(target)

    # -- the cast: several characters in one scene

    def _member(self, character: str | None) -> "Session":
        assert self.persona is not None
        if character is None or character == self.persona.id:
            return self
        if character not in self.cast:
            raise ProtocolError(f"{character!r} is not in this scene (session.start cast)", code="not_in_scene")
        return self.cast[character]

    async def _interrupt_scene(self) -> None:
        """The player speaks: stop a conversation among the characters and whoever is speaking."""
        await self._stop_converse()
        await self._interrupt()
        for member in self.cast.values():
            await member._interrupt()

    async def _player_turn(self, msg: p.TextInput) -> None:
        member = self._member(msg.to)
        await self._interrupt_scene()
        for other in (self, *self.cast.values()):
            if other is not member:  # the others hear it too
                assert member.persona is not None
                other.history.append(HistoryEntry("event", f"{self.player.name or 'The player'} said to {member.persona.name}: {msg.text}"))
        member.history.append(HistoryEntry("player", msg.text))
        await member._respond(player_text=msg.text, trigger="text", ref=msg.id)

    async def _converse(self, msg: p.Converse) -> None:
        assert self.persona is not None
        everyone = [self.persona.id, *self.cast]
        order = msg.characters or everyone
        for cid in order:
            self._member(cid)
        if len(set(order)) < 2:
            raise ProtocolError("a conversation needs two characters: start the session with a cast", code="no_cast")
        await self._interrupt_scene()
        self._converse_task = asyncio.create_task(self._run_converse(msg, order), name=f"converse-{self.id}")

    async def _run_converse(self, msg: p.Converse, order: list[str]) -> None:
        """The characters talk in turn: each line goes to the next speaker as what it hears."""
        members = {cid: self._member(cid) for cid in order}
        names = {cid: m.persona.name for cid, m in members.items() if m.persona is not None}
        spoken, status, line, previous = 0, "completed", "", ""
        current: Session | None = None
        try:
            for i in range(msg.turns):
                speaker = order[i % len(order)]
                current = members[speaker]
                if i == 0:
                    others = ", ".join(names[c] for c in dict.fromkeys(order) if c != speaker)
                    current.history.append(HistoryEntry("event", f"You start talking with {others} about: {msg.topic}"))
                    await current._respond(player_text=None, trigger="converse", ref=msg.id, query=msg.topic)
                else:
                    heard = f"{names[previous]}: {line}"
                    current.history.append(HistoryEntry("player", heard))
                    await current._respond(player_text=heard, trigger="converse", ref=msg.id, query=line)
                turn = current.turn
                assert turn is not None
                await asyncio.wait([turn.task])  # not gather: cancelling this must not cancel the turn itself
                if turn.status != "completed":
                    status = turn.status
                    break
                spoken += 1
                line, previous = turn.text.strip() or "...", speaker
                for cid, member in members.items():
                    if cid != speaker and cid != order[(i + 1) % len(order)]:
                        member.history.append(HistoryEntry("event", f"{names[speaker]} said: {line}"))
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            status = "interrupted"
            if current is not None:
                await current._interrupt()
        await self.emit(p.ConverseEnd(ref=msg.id, turns=spoken, status=status))  # type: ignore[arg-type]

    async def _stop_converse(self) -> None:
        task, self._converse_task = self._converse_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel and await everything the session owns. Idempotent."""
        await self._stop_converse()
        for member in self.cast.values():
            await member.aclose()
        turn, self.turn = self.turn, None
        self.state = next_state(self.state, Trigger.CLOSE)
        if turn is not None:
            await turn.interrupt()
        tasks = [t for t in (self._prepare_task, self._barge_task, self._listen_task) if t is not None]
        for task in tasks:
            task.cancel()
        if self.listener is not None:
            await self.listener.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._persist(everything=True)
        if self._memory_task is not None:
            await asyncio.gather(self._memory_task, return_exceptions=True)
