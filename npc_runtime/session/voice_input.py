"""A connection's voice input: it owns the :class:`~npc_runtime.asr.listener.Listener` (VAD, end of turn, streaming
ASR), turns its events into ``speech.*`` and ``transcript.*`` events, and decides barge-in.

Speech that starts while a character speaks (a response is running, or its audio still plays on the client) is a
backchannel until its voice has lasted ``barge_in_ms`` (the listener says so: ``SpeechLasted``); then it is a
barge-in. Speech that ends sooner changes nothing, and its transcript is marked ``backchannel``. A final
transcript that is not a backchannel is the player's turn. If speech recognition fails, the error is reported and a
fresh listener takes over (that utterance is lost, the session goes on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from npc_runtime import protocol as p
from npc_runtime.asr.endpoint import EndpointConfig
from npc_runtime.asr.listener import (
    AudioError,
    ListenConfig,
    Listener,
    ListenEvent,
    SpeechLasted,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    UtteranceRefused,
)
from npc_runtime.errors import NpcError
from npc_runtime.persona.schema import Persona
from npc_runtime.session.response import Outgoing, Response
from npc_runtime.session.services import Services

log = structlog.get_logger(__name__)


class Hearer(Protocol):
    """What voice input needs from its connection."""

    def speaking_response(self) -> Response | None:
        """The response a character is speaking now (running, or its audio still playing), if any."""
        ...

    async def barge_in(self, target: Response) -> None: ...

    async def heard(self, text: str, utterance_id: str, speech_end_wall: float) -> None:
        """The player said ``text`` (a final transcript, not a backchannel)."""
        ...


def listen_settings(persona: Persona, options: p.SessionOptions) -> p.ListenSettings:
    """The session's listening settings: the client's where it gave them, else the persona's."""
    listen = options.listen
    return p.ListenSettings(
        end_silence_ms=listen.end_silence_ms if listen.end_silence_ms is not None else persona.listen.end_silence_ms,
        barge_in_ms=listen.barge_in_ms if listen.barge_in_ms is not None else persona.listen.barge_in_ms,
        partials=listen.partials,
    )


class VoiceInput:
    """Owns the listener and its task. :meth:`start` once; :meth:`aclose` stops everything it owns."""

    def __init__(self, services: Services, settings: p.ListenSettings, input_rate: int, *, hearer: Hearer,
                 emit: Callable[[Outgoing], Awaitable[None]], clock: Callable[[], float], session_id: str) -> None:
        assert services.asr is not None and services.vad is not None
        self.services, self.settings, self.input_rate = services, settings, input_rate
        self._hearer, self._emit, self._clock, self._session_id = hearer, emit, clock, session_id
        self._config = ListenConfig(
            endpoint=EndpointConfig(end_silence_ms=settings.end_silence_ms),
            partials=settings.partials, max_frame_bytes=p.MAX_AUDIO_FRAME_BYTES,
            max_decodes_waiting=services.asr_max_waiting, lasted_ms=settings.barge_in_ms,
        )
        self.listener = self._new_listener()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: The speech in progress over a speaking character: (utterance id, the response it is over).
        self._over: tuple[str, Response] | None = None
        #: Utterances that are backchannels until they last ``barge_in_ms``.
        self._backchannels: set[str] = set()

    def _new_listener(self) -> Listener:
        services = self.services
        assert services.asr is not None and services.vad is not None
        return Listener(asr=services.asr, vad=services.vad, input_rate=self.input_rate, config=self._config, clock=self._clock,
                        partial_asr=services.asr_partial)

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name=f"listen-{self._session_id}")

    # -- input

    async def feed(self, pcm: bytes) -> None:
        """A binary frame from the client: microphone audio (a bad frame gets an error event)."""
        try:
            self.listener.feed(pcm)
        except AudioError as exc:
            await self._send_error(exc)

    def commit(self) -> None:
        self.listener.commit()

    def clear(self) -> None:
        self.listener.clear()

    async def _send_error(self, exc: NpcError, ref: str | None = None) -> None:
        await self._emit(p.ErrorEvent(code=exc.code, message=exc.message, ref=ref, retryable=exc.retryable, fatal=exc.fatal))

    # -- the listener's events

    async def _listen(self) -> None:
        while not self._closed:
            listener = self.listener
            try:
                async for ev in listener.events():
                    await self._on_event(ev)
                return
            except NpcError as exc:
                log.warning("speech recognition failed; listening again", code=exc.code)
                await self._send_error(exc)
            self.listener = self._new_listener()  # before closing the old one: audio keeps flowing
            await listener.aclose()

    async def _on_event(self, ev: ListenEvent) -> None:
        match ev:
            case SpeechStarted():
                await self._emit(p.SpeechStarted(utterance_id=ev.utterance_id, at_ms=round(ev.at_ms, 1)))
                target = self._hearer.speaking_response()
                if target is not None:
                    self._over = (ev.utterance_id, target)
                    self._backchannels.add(ev.utterance_id)  # until its voice lasts barge_in_ms
            case SpeechLasted():
                if self._over is not None and self._over[0] == ev.utterance_id:
                    target = self._over[1]
                    self._over = None
                    self._backchannels.discard(ev.utterance_id)
                    await self._hearer.barge_in(target)
            case SpeechStopped():
                if self._over is not None and self._over[0] == ev.utterance_id:
                    self._over = None
                await self._emit(p.SpeechStopped(utterance_id=ev.utterance_id, at_ms=round(ev.at_ms, 1),
                                                 duration_ms=round(ev.duration_ms, 1), discarded=ev.discarded))
                if ev.discarded:
                    self._backchannels.discard(ev.utterance_id)  # no final comes
            case TranscriptPartial():
                if self.settings.partials:
                    await self._emit(p.TranscriptPartial(utterance_id=ev.utterance_id, text=ev.text, stable=ev.stable))
            case TranscriptFinal():
                await self._on_final(ev)
            case UtteranceRefused():
                log.warning("utterance refused: speech recognition over capacity", utterance_id=ev.utterance_id)
                self._backchannels.discard(ev.utterance_id)
                await self._send_error(ev.error, ref=ev.utterance_id)

    async def _on_final(self, ev: TranscriptFinal) -> None:
        backchannel = ev.utterance_id in self._backchannels
        self._backchannels.discard(ev.utterance_id)
        await self._emit(p.TranscriptFinal(
            utterance_id=ev.utterance_id, text=ev.text, backchannel=backchannel,
            timings={"duration_ms": round(ev.duration_ms, 1), "decode_ms": round(ev.decode_ms, 1),
                     "final_ms": round((self._clock() - ev.speech_end_wall) * 1000.0, 1),
                     "speculative_hit": float(ev.speculative_hit)},
        ))
        log.info("transcript", chars=len(ev.text), backchannel=backchannel, decode_ms=round(ev.decode_ms, 1))
        if backchannel or not ev.text.strip() or self._closed:
            return
        await self._hearer.heard(ev.text.strip()[: p.MAX_TEXT_CHARS], ev.utterance_id, ev.speech_end_wall)

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        await self.listener.aclose()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
