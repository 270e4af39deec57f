"""One session's voice input: PCM16 frames in, speech and transcript events out.

``feed()`` only checks and queues a frame. One task (``listen``) takes the queued frames in
order, resamples them to 16 kHz, runs them through the VAD and the :class:`Endpointer`, and keeps
the audio of the utterance in progress (with ``pre_roll_ms`` before the voice started: when no
one speaks, only a short tail of recent audio is kept). Decodes run in tasks of their own so the
VAD never waits for Whisper:

* partials, at most one per ``partial_interval_ms`` of new audio and never two at once, none
  after a :class:`SpeechPause`, their words settled by a :class:`Stabilizer`;
* on :class:`SpeechPause`, a *speculative* final decode of the utterance up to where the voice
  stopped; when the end is then confirmed with no new speech, that result is the final
  (``speculative_hit=True``), else the utterance is decoded again;
* finals come out in utterance order, each after its :class:`SpeechStopped` (a later
  utterance's :class:`SpeechStarted` may come between).

Times called ``*_ms`` are on the input audio timeline (ms since the first frame fed, dropped
frames included); ``*_wall`` are ``clock()`` readings. ``SpeechStarted.at_ms`` is where the
voice started, ``SpeechStopped.at_ms`` where it stopped.

Errors: ``feed()`` raises :class:`AudioError` (the frame is dropped, the listener goes on).
A failed VAD or final decode is raised by the ``events()`` iterator (code ``asr_failed`` /
``asr_unavailable``); a failed partial is skipped. Words heard never go into messages or logs.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from npc_runtime.asr.base import ASR, SAMPLE_RATE, VAD, Transcript, queue_depth
from npc_runtime.asr.endpoint import EndpointConfig, Endpointer, SpeechEnd, SpeechPause, SpeechResume, SpeechStart
from npc_runtime.asr.resample import Resampler
from npc_runtime.asr.stabilize import Stabilizer
from npc_runtime.errors import BusyError, NpcError

__all__ = ["AudioError", "ListenConfig", "ListenEvent", "Listener", "SpeechLasted", "SpeechStarted", "SpeechStopped",
           "TranscriptFinal", "TranscriptPartial", "UtteranceRefused"]

SPM = SAMPLE_RATE / 1000  # samples per ms
POST_ROLL_MS = 100        # audio kept after the voice stopped (at most speculative_ms)
BATCH_MS = 1000           # at most this much queued input per VAD call


@dataclass(frozen=True, slots=True)
class ListenConfig:
    endpoint: EndpointConfig = EndpointConfig()
    partials: bool = True
    partial_interval_ms: int = 600    # at most one partial decode per this much NEW audio
    max_frame_bytes: int = 64 * 1024
    max_backlog_s: float = 10.0       # audio received but not yet VAD-processed; more -> AudioError("audio_overflow")
    #: Load limits, counted over every session sharing the engines: a partial decode is skipped (tried again
    #: on the next frames) while the partial recogniser has this many decodes queued or running — partials
    #: are a nicety and must not eat the CPU that finals need; an utterance whose final decode would
    #: queue behind ``max_decodes_waiting`` others (on both recognisers) is refused (``UtteranceRefused``:
    #: the client gets ``busy``). A tiny.en decode takes ~0.9 s on one core here: 4 waiting is ~3.5 s.
    partial_max_pending: int = 1
    max_decodes_waiting: int = 4
    #: No partial starts while a final decode is queued or running on the final recogniser (any session's).
    partials_yield: bool = True
    #: Say when the voice of the utterance in progress has lasted this long (:class:`SpeechLasted`, once per
    #: utterance; the session's barge-in threshold); None: never.
    lasted_ms: float | None = None


class AudioError(NpcError):
    """A frame that cannot be taken: ``bad_audio`` (odd byte count / empty),
    ``audio_frame_too_large``, ``audio_overflow`` (the backlog is full)."""

    code = "bad_audio"


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    utterance_id: str
    at_ms: float


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    utterance_id: str
    at_ms: float
    duration_ms: float
    discarded: bool
    forced: bool


@dataclass(frozen=True, slots=True)
class SpeechLasted:
    """The voice of the utterance in progress has lasted ``ListenConfig.lasted_ms`` (silence after it not counted)."""
    utterance_id: str
    voiced_ms: float


@dataclass(frozen=True, slots=True)
class TranscriptPartial:
    utterance_id: str
    text: str    # stable + " " + unstable, stripped
    stable: str  # only ever grows within an utterance


@dataclass(frozen=True, slots=True)
class TranscriptFinal:
    utterance_id: str
    text: str
    duration_ms: float
    decode_ms: float
    speech_end_wall: float     # when the frame holding the end of the voice was fed
    end_detected_wall: float   # when the end of the utterance was decided
    speculative_hit: bool


@dataclass(frozen=True, slots=True)
class UtteranceRefused:
    """The recogniser is over capacity: this utterance is not transcribed (the player should say it again)."""
    utterance_id: str
    error: NpcError


ListenEvent = SpeechStarted | SpeechStopped | SpeechLasted | TranscriptPartial | TranscriptFinal | UtteranceRefused


@dataclass(slots=True)
class _Frame:
    pcm: bytes
    end_ms: float  # input timeline
    wall: float


_COMMIT = object()
_CLOSED = object()


class _Audio:
    """16 kHz samples from absolute index ``base`` to ``end`` (chunks joined when read)."""

    def __init__(self, base: int) -> None:
        self.base = self.end = base
        self._chunks: list[np.ndarray] = []

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.end += samples.size

    def _joined(self) -> np.ndarray:
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)]
        return self._chunks[0]

    def slice(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(start, self.base), min(stop, self.end)
        return self._joined()[start - self.base:max(start, stop) - self.base].copy()

    def trim(self, keep_from: int) -> None:
        if keep_from > self.base:
            keep_from = min(keep_from, self.end)
            self._chunks = [self._joined()[keep_from - self.base:]]
            self.base = keep_from


@dataclass(slots=True)
class _Utterance:
    id: str
    start_ms: float
    audio_from: int          # absolute sample of the first sample decoded (pre-roll included)
    partial_mark: int        # audio end at the last partial decode
    stabilizer: Stabilizer = field(default_factory=Stabilizer)
    paused: bool = False
    ended: bool = False
    lasted: bool = False     # SpeechLasted was said
    speculative: tuple[float, asyncio.Task[Transcript]] | None = None  # (speech end ms, decode)


class Listener:
    """The per-session pipeline (see the module doc). Owns its tasks, not ``asr`` nor ``vad``."""

    def __init__(self, *, asr: ASR, vad: VAD, input_rate: int = 16000, config: ListenConfig = ListenConfig(),
                 clock: Callable[[], float] = time.monotonic, partial_asr: ASR | None = None) -> None:
        self._asr, self._vad, self.config, self._clock = asr, vad, config, clock
        #: Partials may run on an engine of their own, so that a final never waits behind a partial.
        self._partial_asr = partial_asr or asr
        self.input_rate = input_rate
        self._resampler = Resampler(input_rate)  # raises ValueError for a rate out of range
        self._endpointer = Endpointer(config.endpoint, vad.window_ms)
        self._stream = vad.stream()
        self._pending: collections.deque[_Frame | object] = collections.deque()
        self._backlog = 0        # input samples queued and not yet VAD-processed
        self._fed = 0            # input samples fed so far (dropped ones included)
        self._origin_ms = 0.0    # input time where the endpointer's clock restarted
        self._audio = _Audio(0)
        self._walls: collections.deque[tuple[float, float]] = collections.deque()  # (frame end ms, wall)
        self._generation = 0     # bumped by clear(): results of older work are dropped
        self._ids = itertools.count(1)
        self._utterance: _Utterance | None = None
        self._partial: asyncio.Task[None] | None = None
        self._own_decodes = 0  # this listener's decodes in the recognisers (not counted as others' load)
        self._last_final: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[object] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._listen = self._spawn(self._run(), "listen")

    # -- the public, synchronous side --------------------------------------------------------

    def feed(self, pcm16: bytes) -> None:
        """Queue one frame of PCM16 mono little-endian audio at ``input_rate``. Never blocks."""
        if self._closed:
            raise NpcError("the listener is closed", code="asr_unavailable")
        size = len(pcm16)
        if size == 0 or size % 2:
            raise AudioError("an audio frame must hold a whole number of 16-bit samples (and at least one)")
        if size > self.config.max_frame_bytes:
            raise AudioError(f"an audio frame may hold at most {self.config.max_frame_bytes} bytes",
                             code="audio_frame_too_large")
        samples = size // 2
        if (self._backlog + samples) / self.input_rate > self.config.max_backlog_s:
            raise AudioError(f"more than {self.config.max_backlog_s:g} s of audio is waiting to be processed",
                             code="audio_overflow", retryable=True)
        self._fed += samples
        self._backlog += samples
        self._pending.append(_Frame(bytes(pcm16), self._fed * 1000 / self.input_rate, self._clock()))
        self._idle.clear()
        self._wake.set()

    def commit(self) -> None:
        """End the utterance in progress once the frames fed so far are processed (push-to-talk
        release): it gets SpeechStopped(forced=True) and a final, however short. No utterance: nothing."""
        if not self._closed:
            self._pending.append(_COMMIT)
            self._idle.clear()
            self._wake.set()

    def clear(self) -> None:
        """Drop the backlog and the utterance in progress: it ends with SpeechStopped(discarded=True)
        and no final. Finals of utterances that had already stopped still come."""
        self._generation += 1
        self._pending.clear()
        self._backlog = 0
        self._origin_ms = self._fed * 1000 / self.input_rate
        origin = round(self._origin_ms * SPM)
        if self._utterance is not None:
            self._stop(self._utterance, SpeechStopped(self._utterance.id, self._origin_ms,
                                                      self._endpointer.speech_ms(), True, False))
        self._resampler = Resampler(self.input_rate)
        self._endpointer.reset()
        self._stream = self._vad.stream()
        self._audio = _Audio(origin)
        self._walls.clear()

    def speech_ms(self) -> float:
        """Audio length so far of the utterance in progress (0 if none)."""
        return self._endpointer.speech_ms()

    def voiced_ms(self) -> float:
        """Length so far of the voice in the utterance in progress, not counting the silence after it (0 if none):
        how long the player has been talking (barge-in)."""
        return self._endpointer.voiced_ms()

    async def events(self) -> AsyncIterator[ListenEvent]:
        """The events, in order, for the single consumer; ends after :meth:`aclose`. Raises the
        NpcError of a failed VAD or final decode."""
        while True:
            item = await self._events.get()
            if item is _CLOSED:
                self._events.put_nowait(_CLOSED)  # a later call ends at once too
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    async def drain(self) -> None:
        """Wait until everything fed so far is processed and every decode started is done
        (for tests, benchmarks and whole-file transcription)."""
        while not self._closed:
            await self._idle.wait()
            busy = [t for t in self._tasks if not t.done() and t is not self._listen]
            if not busy and self._idle.is_set():
                return
            if busy:
                await asyncio.wait(busy)

    async def aclose(self) -> None:
        """Cancel and await every task; end ``events()``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._idle.set()
        self._events.put_nowait(_CLOSED)

    # -- tasks -------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"listener-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an unused speculative decode may fail unseen

    def _emit(self, item: object) -> None:
        self._events.put_nowait(item)

    async def _run(self) -> None:
        try:
            while True:
                if not self._pending:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                frames, commit = self._take()
                generation = self._generation
                if frames:
                    await self._process(frames, generation)
                if commit and generation == self._generation:
                    end = self._endpointer.finish()
                    if end is not None:
                        self._on_end(end)
        except NpcError as exc:
            self._emit(exc)
        except Exception as exc:  # noqa: BLE001 - reported to the consumer, without its text
            failure = NpcError(f"the listener failed: {type(exc).__name__}", code="asr_failed")
            failure.__cause__ = exc
            self._emit(failure)
        finally:
            self._idle.set()

    def _take(self) -> tuple[list[_Frame], bool]:
        """Frames from the front of the queue, up to a commit marker or BATCH_MS of input."""
        frames: list[_Frame] = []
        limit = self.input_rate * BATCH_MS // 1000
        samples = 0
        while self._pending and samples < limit:
            item = self._pending.popleft()
            if item is _COMMIT:
                return frames, True
            assert isinstance(item, _Frame)
            frames.append(item)
            samples += len(item.pcm) // 2
        return frames, False

    async def _process(self, frames: list[_Frame], generation: int) -> None:
        audio = np.concatenate([self._resampler.feed(f.pcm) for f in frames])
        self._walls.extend((f.end_ms, f.wall) for f in frames)
        self._audio.append(audio)
        probs = await self._vad.process(self._stream, audio)
        if generation != self._generation:
            return  # cleared meanwhile
        self._backlog = max(0, self._backlog - sum(len(f.pcm) // 2 for f in frames))
        for prob in probs:
            for event in self._endpointer.push(float(prob)):
                self._on_endpoint(event)
            self._check_lasted()
        utterance = self._utterance
        if utterance is None:
            self._forget()
        elif self.config.partials and not utterance.paused and (self._partial is None or self._partial.done()):
            if ((self._audio.end - utterance.partial_mark) / SPM >= self.config.partial_interval_ms
                    and queue_depth(self._partial_asr) < self.config.partial_max_pending and not self._finals_busy()):
                utterance.partial_mark = self._audio.end
                audio = self._audio.slice(utterance.audio_from, self._audio.end)
                self._partial = self._spawn(self._decode_partial(utterance, audio, generation), f"partial-{utterance.id}")

    def _check_lasted(self) -> None:
        utterance, lasted_ms = self._utterance, self.config.lasted_ms
        if utterance is None or utterance.lasted or lasted_ms is None:
            return
        voiced = self._endpointer.voiced_ms()
        if voiced >= lasted_ms:
            utterance.lasted = True
            self._emit(SpeechLasted(utterance.id, voiced))

    def _forget(self) -> None:
        """No utterance: keep only the audio and frame times a coming start may reach back to."""
        cfg = self.config.endpoint
        keep_ms = self._origin_ms + self._endpointer.now_ms - (cfg.pre_roll_ms + cfg.start_ms + 2 * self._vad.window_ms)
        self._audio.trim(round(keep_ms * SPM))
        while len(self._walls) > 1 and self._walls[0][0] < keep_ms:
            self._walls.popleft()

    # -- endpoint events ---------------------------------------------------------------------

    def _on_endpoint(self, event: object) -> None:
        if isinstance(event, SpeechStart):
            start_ms = self._origin_ms + event.at_ms
            audio_from = max(self._audio.base, round((start_ms - self.config.endpoint.pre_roll_ms) * SPM))
            self._utterance = _Utterance(f"u{next(self._ids)}", start_ms, audio_from, round(start_ms * SPM))
            self._emit(SpeechStarted(self._utterance.id, start_ms))
            return
        utterance = self._utterance
        if utterance is None:
            return
        if isinstance(event, SpeechPause):
            utterance.paused = True
            stopped = self._endpointer.voice_stopped_ms
            engine = self._final_engine()
            if stopped is not None and self._decodes_waiting() < self.config.max_decodes_waiting:
                speech_end = self._origin_ms + stopped
                task = self._spawn(self._decode(engine, self._utterance_audio(utterance, speech_end)),
                                   f"speculative-{utterance.id}")
                utterance.speculative = (speech_end, task)
        elif isinstance(event, SpeechResume):
            utterance.paused = False
            utterance.speculative = None  # its decode finishes in the engine thread, unused
        elif isinstance(event, SpeechEnd):
            self._on_end(event)

    def _on_end(self, event: SpeechEnd) -> None:
        utterance = self._utterance
        if utterance is None:
            return
        speech_end = self._origin_ms + event.speech_end_ms
        self._stop(utterance, SpeechStopped(utterance.id, speech_end, event.duration_ms, event.discarded, event.forced))
        if event.discarded:
            return
        detected = self._clock()
        speculative = utterance.speculative
        if speculative is not None and speculative[0] == speech_end:
            decode, hit = speculative[1], True
        elif (waiting := self._decodes_waiting()) >= self.config.max_decodes_waiting:
            refused = UtteranceRefused(utterance.id, BusyError(
                f"speech recognition is busy ({waiting} utterances waiting); say it again shortly"))
            self._last_final = self._spawn(self._in_order(refused, self._last_final), f"refused-{utterance.id}")
            return
        else:
            audio = self._utterance_audio(utterance, speech_end, tail=event.forced)
            decode, hit = self._spawn(self._decode(self._final_engine(), audio), f"final-{utterance.id}"), False
        self._last_final = self._spawn(
            self._finish(utterance.id, decode, event.duration_ms, self._wall_at(speech_end), detected, hit,
                         self._last_final), f"finish-{utterance.id}")

    def _stop(self, utterance: _Utterance, stopped: SpeechStopped) -> None:
        utterance.ended = True
        self._utterance = None
        self._emit(stopped)

    def _finals_busy(self) -> bool:
        """Partials yield to finals: while the final recogniser has a decode queued or running (any session's), no
        partial starts on the other one — under load a final is what a player waits for (issue 18: partials slowed
        the finals at load ~3); a partial is only skipped, and tried again on the next frames."""
        return self._partial_asr is not self._asr and self.config.partials_yield and queue_depth(self._asr) > 0

    def _final_engine(self) -> ASR:
        """The recogniser for a final decode: the final one, or the partial one when it has the shorter
        queue — under load (several sessions' turns ending together) both serve finals, and partials,
        which are shed while their recogniser is busy, give way."""
        if self._partial_asr is not self._asr and queue_depth(self._partial_asr) < queue_depth(self._asr):
            return self._partial_asr
        return self._asr

    def _decodes_waiting(self) -> int:
        """Other sessions' decodes queued or running on the recognisers that serve finals (this listener's own
        speculative and partial decodes do not count: one session alone is never refused)."""
        total = queue_depth(self._asr) if self._partial_asr is self._asr else queue_depth(self._asr) + queue_depth(self._partial_asr)
        return max(0, total - self._own_decodes)

    async def _decode(self, engine: ASR, audio: np.ndarray, *, partial: bool = False) -> Transcript:
        self._own_decodes += 1
        try:
            return await engine.transcribe(audio, partial=partial)
        finally:
            self._own_decodes -= 1

    def _utterance_audio(self, utterance: _Utterance, speech_end_ms: float, *, tail: bool = False) -> np.ndarray:
        """The utterance from its pre-roll to where the voice stopped, plus a short post-roll
        (``tail``: all the audio there is, for an end forced while the voice was on)."""
        post_roll = min(POST_ROLL_MS, self.config.endpoint.speculative_ms)
        stop = self._audio.end if tail else round((speech_end_ms + post_roll) * SPM)
        return self._audio.slice(utterance.audio_from, stop)

    def _wall_at(self, at_ms: float) -> float:
        for end_ms, wall in self._walls:
            if end_ms >= at_ms:
                return wall
        return self._walls[-1][1] if self._walls else self._clock()

    # -- decodes -----------------------------------------------------------------------------

    async def _decode_partial(self, utterance: _Utterance, audio: np.ndarray, generation: int) -> None:
        try:
            result = await self._decode(self._partial_asr, audio, partial=True)
        except NpcError:
            return  # the final reports a broken engine
        if utterance is self._utterance and not utterance.paused and generation == self._generation:
            stable, unstable = utterance.stabilizer.update(result.text)
            self._emit(TranscriptPartial(utterance.id, f"{stable} {unstable}".strip(), stable))

    async def _in_order(self, event: UtteranceRefused, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # after the finals of earlier utterances
        self._emit(event)

    async def _finish(self, utterance_id: str, decode: asyncio.Task[Transcript], duration_ms: float,
                      speech_end_wall: float, end_detected_wall: float, hit: bool,
                      previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # finals in utterance order
        try:
            result = await decode
        except NpcError as exc:
            self._emit(exc)
            return
        self._emit(TranscriptFinal(utterance_id, result.text, duration_ms, result.decode_ms,
                                   speech_end_wall, end_detected_wall, hit))
