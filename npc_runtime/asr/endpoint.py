"""End of turn from voice-activity probabilities: when an utterance starts, pauses, resumes and
ends. Pure (no asyncio, no numpy): one probability per VAD window in, events out.

States::

    IDLE ──speech ≥ start_ms──▶ SPEAKING ──silence ≥ speculative_ms──▶ PAUSED
      ▲                            │  ▲                                   │
      │                            │  └──────────speech again──(Resume)───┤
      └──── silence ≥ end_silence_ms, max_utterance_ms, or finish() ──────┘  (SpeechEnd)

Hysteresis: a window is speech when ``prob >= threshold``; once speaking, speech continues
while ``prob >= neg_threshold`` and turns to silence below it; silence turns back to speech
only at ``prob >= threshold``. Times are in ms of input audio since the last :meth:`reset`,
counted in windows: a window's time is where it ends.

* :class:`SpeechStart` is emitted ``start_ms`` after the voice started; its ``at_ms`` is where
  the voice started (the caller keeps ``pre_roll_ms`` of audio before that).
* :class:`SpeechPause` — the silence reached ``speculative_ms``: probably the end (a good time
  to start a speculative final decode). Not emitted for an utterance still shorter than
  ``min_speech_ms`` (it would be discarded).
* :class:`SpeechResume` — speech again after a :class:`SpeechPause`.
* :class:`SpeechEnd` — ``speech_end_ms`` is where the voice stopped (``at_ms`` minus the
  silence); ``duration_ms`` = ``speech_end_ms - start_ms``; shorter than ``min_speech_ms``:
  ``discarded``. ``forced``: ended by ``max_utterance_ms`` or :meth:`Endpointer.finish`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["EndpointConfig", "EndpointEvent", "Endpointer", "SpeechEnd", "SpeechPause", "SpeechResume", "SpeechStart"]


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    threshold: float = 0.5          # prob >= threshold: speech
    neg_threshold: float = 0.35     # prob < neg_threshold: silence (hysteresis)
    start_ms: int = 96              # speech this long (contiguous-ish) before SpeechStart is declared
    end_silence_ms: int = 500       # silence this long ends the utterance (tunable per persona/session)
    min_speech_ms: int = 250        # shorter utterances are noise: discarded (SpeechEnd with discarded=True)
    max_utterance_ms: int = 28000   # forced end (Whisper's window is 30 s)
    pre_roll_ms: int = 200          # audio kept before the detected start
    speculative_ms: int = 200       # silence after which a speculative final decode may start

    def __post_init__(self) -> None:
        if not 0.0 <= self.neg_threshold <= self.threshold <= 1.0:
            raise ValueError("need 0 <= neg_threshold <= threshold <= 1")
        for name in ("start_ms", "end_silence_ms", "min_speech_ms", "max_utterance_ms", "pre_roll_ms", "speculative_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_utterance_ms <= self.start_ms:
            raise ValueError("max_utterance_ms must exceed start_ms")


@dataclass(frozen=True, slots=True)
class SpeechStart:
    at_ms: float  # where the voice started


@dataclass(frozen=True, slots=True)
class SpeechPause:
    at_ms: float  # when the silence reached speculative_ms


@dataclass(frozen=True, slots=True)
class SpeechResume:
    at_ms: float  # where the voice came back


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    at_ms: float          # when the end was decided
    start_ms: float       # where the voice started
    speech_end_ms: float  # where the voice stopped
    duration_ms: float
    forced: bool
    discarded: bool


EndpointEvent = SpeechStart | SpeechPause | SpeechResume | SpeechEnd


class State(enum.Enum):
    IDLE = "idle"          # no utterance (maybe a candidate run of speech shorter than start_ms)
    SPEAKING = "speaking"  # in an utterance, voice on or a silence shorter than speculative_ms
    PAUSED = "paused"      # in an utterance, silence of speculative_ms or more (SpeechPause sent)


class Endpointer:
    """Feed one VAD probability per window with :meth:`push`; read the events it returns."""

    def __init__(self, config: EndpointConfig = EndpointConfig(), window_ms: float = 32.0) -> None:
        if window_ms <= 0:
            raise ValueError("window_ms must be > 0")
        self.config = config
        self.window_ms = window_ms
        self.reset()

    def reset(self) -> None:
        """Forget any utterance and restart the clock at 0."""
        self.state = State.IDLE
        self._windows = 0
        self._candidate: float | None = None  # IDLE: where a run of speech began
        self._start = 0.0                     # in an utterance: where the voice started
        self._voiced = False                  # in an utterance: hysteresis flag
        self._silence_from = 0.0              # in an utterance, not voiced: where the voice stopped

    @property
    def now_ms(self) -> float:
        return self._windows * self.window_ms

    @property
    def in_utterance(self) -> bool:
        return self.state is not State.IDLE

    @property
    def voice_stopped_ms(self) -> float | None:
        """In an utterance during a silence: where the voice stopped (else None)."""
        return self._silence_from if self.in_utterance and not self._voiced else None

    def speech_ms(self) -> float:
        """Length so far of the utterance in progress (0 if none)."""
        return self.now_ms - self._start if self.in_utterance else 0.0

    def voiced_ms(self) -> float:
        """Length so far of the voice in the utterance in progress: from where it started to now while the voice
        is on, to where it stopped during a silence (a pause inside counts; the silence after it does not); 0 if none."""
        if not self.in_utterance:
            return 0.0
        return (self.now_ms if self._voiced else self._silence_from) - self._start

    def push(self, prob: float) -> list[EndpointEvent]:
        window_start = self.now_ms
        self._windows += 1
        if self.state is State.IDLE:
            return self._idle(prob, window_start)
        return self._utterance(prob, window_start)

    def finish(self) -> SpeechEnd | None:
        """End the utterance in progress now (push-to-talk release): a forced, never discarded
        :class:`SpeechEnd`; None when there is none."""
        if self.state is State.IDLE:
            self._candidate = None
            return None
        return self._end(forced=True, discard=False)

    # -- transitions -------------------------------------------------------------------------

    def _idle(self, prob: float, window_start: float) -> list[EndpointEvent]:
        cfg = self.config
        if self._candidate is None:
            if prob < cfg.threshold:
                return []
            self._candidate = window_start
        elif prob < cfg.neg_threshold:
            self._candidate = None
            return []
        if self.now_ms - self._candidate < cfg.start_ms:
            return []
        self.state, self._start, self._voiced = State.SPEAKING, self._candidate, True
        self._candidate = None
        return [SpeechStart(self._start)]

    def _utterance(self, prob: float, window_start: float) -> list[EndpointEvent]:
        cfg = self.config
        events: list[EndpointEvent] = []
        if self._voiced and prob < cfg.neg_threshold:
            self._voiced, self._silence_from = False, window_start
        elif not self._voiced and prob >= cfg.threshold:
            self._voiced = True
            if self.state is State.PAUSED:
                self.state = State.SPEAKING
                events.append(SpeechResume(window_start))
        if self.now_ms - self._start >= cfg.max_utterance_ms:
            events.append(self._end(forced=True, discard=False))
            return events
        if not self._voiced:
            silence = self.now_ms - self._silence_from
            if silence >= cfg.end_silence_ms:
                events.append(self._end(forced=False, discard=True))
            elif (self.state is State.SPEAKING and silence >= cfg.speculative_ms
                  and self._silence_from - self._start >= cfg.min_speech_ms):
                self.state = State.PAUSED
                events.append(SpeechPause(self.now_ms))
        return events

    def _end(self, *, forced: bool, discard: bool) -> SpeechEnd:
        speech_end = self.now_ms if self._voiced else self._silence_from
        duration = speech_end - self._start
        event = SpeechEnd(self.now_ms, self._start, speech_end, duration, forced,
                          discard and duration < self.config.min_speech_ms)
        self.state, self._voiced, self._candidate = State.IDLE, False, None
        return event
