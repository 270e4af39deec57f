"""One response of one character: retrieval, the dialogue stream voiced (:mod:`.voice_out`), the filler when the
reply is late, and the events that carry it (``response.start`` … ``response.end``).

A :class:`Response` owns its task. :meth:`Response.interrupt` stops it: the dialogue generator is closed (the LLM
stops at its next token), ``response.end`` reports ``interrupted`` with the text that was sent, and ``on_end`` hands
it back to its character, which keeps only that text (:mod:`.ledger`: only what the player heard).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import structlog

from npc_runtime import protocol as p
from npc_runtime.dialogue.guard import asked_topics, touches_topic
from npc_runtime.dialogue.turn import ActionOut, EmotionOut, SpeechDelta, TurnInput, TurnStats
from npc_runtime.errors import NpcError
from npc_runtime.session import latency
from npc_runtime.session.ledger import Playback
from npc_runtime.session.services import Services
from npc_runtime.session.voice_out import VoiceFailed, VoiceStep
from npc_runtime.timeline import Timeline
from npc_runtime.tts.base import TTS
from npc_runtime.tts.speaker import Speaker, SpokenChunk

if TYPE_CHECKING:
    from npc_runtime.knowledge.store import Passage

log = structlog.get_logger(__name__)

@dataclass(frozen=True, slots=True)
class Passthrough:
    """An item a protocol adapter (the Realtime endpoint) queues in the outbox, in order with the session's events;
    the session never reads it, and the adapter's own pump takes it back out."""

    payload: dict[str, Any]


#: What goes to the client, in order: an event, or the binary frame of the audio chunk announced just before (or an
#: adapter's :class:`Passthrough`).
Outgoing = p.ServerEvent | bytes | Passthrough


class Status(enum.Enum):
    """Where a response is. The last three are the wire's ``response.end`` status."""

    RUNNING = "running"
    STOPPING = "stopping"  # interrupt() was asked; its response.end is coming
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self in (Status.COMPLETED, Status.INTERRUPTED, Status.FAILED)

    @property
    def wire(self) -> p.ResponseStatus:
        assert self.ended, self
        return cast(p.ResponseStatus, self.value)


@dataclass(frozen=True, slots=True)
class Context:
    """What a response needs from its connection and character."""

    services: Services
    emit: Callable[[Outgoing], Awaitable[None]]
    clock: Callable[[], float]
    #: The character's voice; None: text only.
    tts: TTS | None


class Response:
    """One response. Owns its task; :meth:`interrupt` stops it and waits until it has ended."""

    def __init__(self, ctx: Context, response_id: str, turn_input: TurnInput, trigger: p.Trigger, ref: str | None, *,
                 on_end: Callable[[Response], None], started_at: float | None = None, query: str | None = None) -> None:
        self.ctx, self.id, self.trigger, self.ref, self._on_end = ctx, response_id, trigger, ref, on_end
        self.input = dataclasses.replace(turn_input, on_admitted=self._admitted)
        self.query = query
        self.status = Status.RUNNING
        self.sources: list[Passage] = []
        #: How the knowledge lookup went (response.end ``knowledge``); None: no lookup.
        self.knowledge: str | None = None
        #: A voice turn's timeline starts where the player's voice ended (ASR time included).
        self.timeline = Timeline(ctx.clock, start=started_at)
        if started_at is not None:
            self.timeline.mark("transcript_final")
        self.stats = TurnStats()
        self.text_parts: list[str] = []
        self.actions: list[ActionOut] = []
        #: Where each action falls on the audio timeline (None without audio).
        self.action_at: list[float | None] = []
        speaker = Speaker(ctx.tts) if ctx.tts is not None else None
        if speaker is not None:
            speaker.on_unit = lambda: self.timeline.mark("first_clause")
        self.voice = VoiceStep(speaker)
        self.playback = Playback(ctx.clock, voiced=speaker is not None)
        self.budget_ms = float(turn_input.persona.latency.first_audio_ms or ctx.services.budget_ms)
        self.filler_played = False
        #: The reply was shortened (``latency.late_max_tokens``): it waited for the model past the filler point.
        self.capped = False
        self.task: asyncio.Task[None] = asyncio.create_task(self._run(), name=f"turn-{response_id}")

    # -- control

    async def interrupt(self) -> None:
        """Stop the response (no-op once it has ended) and wait for its ``response.end``."""
        if self.status is Status.RUNNING:  # still generating (past that, its end is being sent: wait for it)
            self.status = Status.STOPPING
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def finished(self) -> None:
        """Wait until the response has ended (cancelling the waiter does not cancel the response)."""
        await asyncio.wait([self.task])

    def stop_playback(self) -> None:
        """The client stopped playing this response's audio (barge-in): a response that already ended counts as
        interrupted from now on."""
        self.playback.cut = True
        if self.status.ended:
            self.status = Status.INTERRUPTED

    # -- what it is

    @property
    def ended(self) -> bool:
        return self.status.ended

    @property
    def speaker_id(self) -> str:
        return self.input.persona.id

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def said(self) -> str:
        """What goes into the history: what the player heard of the words and the actions."""
        return self.playback.said(self.text, self.actions, self.action_at)

    # -- the run

    async def _run(self) -> None:
        structlog.contextvars.bind_contextvars(response_id=self.id)
        emit = self.ctx.emit
        await emit(p.ResponseStart(response_id=self.id, trigger=self.trigger, ref=self.ref, speaker=self.speaker_id))
        error: NpcError | None = None
        try:
            await self._generate()
            self.status = Status.COMPLETED
        except asyncio.CancelledError:
            if self.status is not Status.STOPPING:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            self.status = Status.INTERRUPTED
            self.playback.cut = True
        except NpcError as exc:
            error, self.status = exc, Status.FAILED
        except Exception:  # noqa: BLE001 - a bug in a turn still ends it with response.end, never silently
            log.exception("turn failed: internal error")
            error = NpcError("the server failed on this turn (a bug: please report it, with the server log)")
            self.status = Status.FAILED
        self.timeline.mark("end")
        log.info("turn ended", status=self.status.value, trigger=self.trigger, chunks=self.stats.chunks,
                 dropped_tags=self.stats.dropped_tags, timings=self.timeline.as_ms())
        if error is not None:
            log.warning("turn failed", code=error.code)
            await emit(p.ErrorEvent(response_id=self.id, code=error.code, message=error.message, retryable=error.retryable))
        end = self._end_event(error)
        metrics = self.ctx.services.metrics
        if metrics is not None:
            metrics.turn_done(self.trigger, end.status, end.timings)
            cause = self._budget_cause(end.timings)
            if cause is not None:
                metrics.budget_misses.labels(cause=cause).inc()
        await emit(end)
        self._on_end(self)

    async def _generate(self) -> None:
        filler = asyncio.create_task(self._filler_when_late(), name=f"filler-{self.id}") if self.voice.speaking else None
        try:
            await self._retrieve()
            await self._reply()
        finally:
            if filler is not None:
                filler.cancel()
                await asyncio.gather(filler, return_exceptions=True)

    async def _retrieve(self) -> None:
        """Knowledge passages for this turn (never fails the turn: late or broken retrieval gives none)."""
        services = self.ctx.services
        topics = self.input.persona.forbidden_topics
        if services.knowledge is None or not self.query or asked_topics(self.input.player_text, topics):
            return  # a line that asks about a forbidden topic gets the refusal: nothing retrieved may be used
        budget = latency.retrieval_budget_ms(services.retrieval_budget_ms, self.budget_ms - self.timeline.elapsed_ms())
        if budget is None:
            log.info("retrieval skipped: over budget", over_ms=round(self.timeline.elapsed_ms() - self.budget_ms))
            self._knowledge("late")
            return
        found = await services.knowledge.retrieve(self.input.persona, self.query, k=services.retrieval_k, budget_ms=budget)
        self.timeline.mark("retrieval")
        # a Retrieval says whether the lookup failed or was late (a plain list: it worked)
        outcome = getattr(found, "outcome", None)
        self.sources = [s for s in found if not touches_topic(s.text, topics)]
        facts = latency.cap_chars([s.text for s in self.sources], services.facts_max_chars)
        self.sources = self.sources[: len(facts)]
        if facts:
            self.input = dataclasses.replace(self.input, facts=tuple(facts))
        self._knowledge({"failed": "unavailable", "late": "late"}.get(outcome or "", "used" if facts else "none"))

    def _knowledge(self, result: str) -> None:
        self.knowledge = result
        metrics = self.ctx.services.metrics
        if metrics is not None:
            metrics.knowledge_lookups.labels(result=result).inc()

    def _admitted(self) -> int | None:
        """The model takes this turn now: the reply's token cap if it waited too long (:func:`latency.late_reply_cap`)."""
        self.timeline.mark("llm_start")
        marks = self.timeline.as_ms()
        cap = latency.late_reply_cap(self.input.persona.latency.late_max_tokens,
                                     waited_ms=marks["llm_start"] - marks.get("prompt_ready", marks["llm_start"]),
                                     elapsed_ms=self.timeline.elapsed_ms(), budget_ms=self.budget_ms)
        if cap is not None:
            self.capped = True
            log.info("reply capped: late for the model", cap=cap, elapsed_ms=round(self.timeline.elapsed_ms()))
        return cap

    async def _reply(self) -> None:
        emit = self.ctx.emit
        stream = self.ctx.services.dialogue.respond(self.input, timeline=self.timeline, stats=self.stats)
        async with aclosing(self.voice.voiced(stream)) as voiced:
            async for out in voiced:
                if isinstance(out, SpokenChunk):
                    self.timeline.mark("first_speech")
                    await self._send_audio(out)
                elif isinstance(out, SpeechDelta):
                    self.timeline.mark("first_text")
                    self.text_parts.append(out.text)
                    await emit(p.TextDelta(response_id=self.id, text=out.text, speaker=self.speaker_id))
                elif isinstance(out, EmotionOut):
                    await emit(p.EmotionEvent(response_id=self.id, speaker=self.speaker_id, emotion=cast(p.Emotion, out.emotion),
                                              text_offset=out.text_offset, at_ms=self._at_ms()))
                elif isinstance(out, VoiceFailed):
                    log.warning("tts failed; continuing as text", code=out.error.code)
                    await emit(p.ErrorEvent(response_id=self.id, code=out.error.code, message=out.error.message,
                                            retryable=out.error.retryable))
                else:
                    self.timeline.mark("first_action")
                    self.actions.append(out)
                    self.action_at.append(self._at_ms())
                    a = out.action
                    await emit(p.ActionEvent(response_id=self.id, speaker=self.speaker_id, index=len(self.actions) - 1,
                                             verb=a.verb, args=a.arguments, object=a.object, target=a.target,
                                             text_offset=out.text_offset, at_ms=self._at_ms()))

    async def _filler_when_late(self) -> None:
        """Nothing to say yet close to the budget: say the persona's filler (pre-synthesized) so the player
        is not left in silence; the reply follows it on the audio timeline."""
        services, persona, speaker = self.ctx.services, self.input.persona, self.voice.speaker
        if services.fillers is None or not persona.latency.filler or self.ctx.tts is None or speaker is None:
            return
        await asyncio.sleep(latency.filler_delay_ms(self.budget_ms, self.timeline.elapsed_ms()) / 1000.0)
        synths = services.fillers.get(self.ctx.tts, persona.latency.filler)
        if not synths:
            return
        async with self.voice.lock:
            if self.playback.spoken:
                return  # the reply made it in time
            self.filler_played = True
            log.info("filler", budget_ms=self.budget_ms, elapsed_ms=round(self.timeline.elapsed_ms()))
            for chunk in speaker.play(synths):
                await self._send_audio(chunk, filler=True)

    def _at_ms(self) -> float | None:
        """Where the audio sent so far ends (the moment for an action or emotion); None without audio."""
        speaker = self.voice.speaker
        return round(speaker.position_ms, 1) if speaker is not None else None

    async def _send_audio(self, chunk: SpokenChunk, *, filler: bool = False) -> None:
        """One audio chunk to the client: its ``response.audio`` event, then the binary frame."""
        self.timeline.mark("first_audio")
        self.playback.sent(chunk, filler=filler)
        await self.ctx.emit(p.AudioChunkEvent(
            response_id=self.id, speaker=self.speaker_id, sample_rate=chunk.sample_rate or None, seq=chunk.seq,
            start_ms=round(chunk.start_ms, 3), samples=chunk.samples,
            visemes=[p.VisemeCueMsg(viseme=cast(p.Viseme, c.viseme), start_ms=round(c.start_ms, 3), end_ms=round(c.end_ms, 3))
                     for c in chunk.cues],
        ))
        await self.ctx.emit(chunk.pcm)

    def _budget_cause(self, timings: dict[str, float]) -> str | None:
        return latency.budget_cause(timings, self.budget_ms, completed=self.status is Status.COMPLETED,
                                    audio=self.voice.speaking)

    def _end_event(self, error: NpcError | None) -> p.ResponseEnd:
        timings: dict[str, float] = self.timeline.as_ms()
        timings["chunks"] = float(self.stats.chunks)
        timings["budget"] = self.budget_ms
        timings["budget_missed"] = float(self._budget_cause(timings) is not None)
        timings["filler"] = float(self.filler_played)
        timings["capped"] = float(self.capped)
        speaker = self.voice.speaker
        return p.ResponseEnd(
            response_id=self.id, speaker=self.speaker_id, status=self.status.wire, text=self.text,
            actions=[p.ActionRecord(verb=a.action.verb, args=a.action.arguments, object=a.action.object, target=a.action.target)
                     for a in self.actions],
            timings=timings,
            truncated=self.stats.finish_reason == "length",
            audio_ms=round(speaker.position_ms, 1) if speaker is not None else None,
            error=error.code if error else None,
            heard_ms=self.playback.heard_ms,
            heard_text=self.playback.heard_text(),
            sources=[p.SourceRef(file=s.source, heading=s.heading, score=round(s.score, 3)) for s in self.sources],
            knowledge=self.knowledge,  # type: ignore[arg-type]
        )
