"""The speech-recognition and voice-activity interfaces every engine implements, and the engine thread they share.

An engine turns a whole utterance (float32 mono 16 kHz samples in [-1, 1]) into a
:class:`Transcript`. ``partial=True`` asks for a quick, greedy decode of an utterance still in
progress (no temperature fallback); a final decode may retry at higher temperatures. Engine
failures raise :class:`~npc_runtime.errors.NpcError` with code ``asr_unavailable`` (cannot load:
missing package or model, engine closed) or ``asr_failed`` (a decode broke); messages and logs
above debug never hold the words heard.

A voice-activity detector (:class:`VAD`) gives one speech probability per window of ``window_ms``
of 16 kHz audio, streaming: its per-session state (``stream()``, opaque to the caller) carries what
it needs between calls, so audio may come in chunks of any size. The real ones:
:class:`~npc_runtime.asr.whisper.WhisperASR` and :class:`~npc_runtime.asr.vad.SileroVAD`; the test
doubles (session logic only): :mod:`npc_runtime.asr.fake`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from npc_runtime.engine_thread import EngineThread
from npc_runtime.errors import NpcError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ASR", "SAMPLE_RATE", "VAD", "Transcript", "asr_failed", "asr_thread", "asr_unavailable", "queue_depth"]

#: The rate every ASR engine and the VAD take (Whisper and Silero both want 16 kHz).
SAMPLE_RATE = 16000


@dataclass(frozen=True, slots=True)
class Transcript:
    """What an engine heard. ``text``: stripped, single-spaced (empty when nothing was said).
    ``audio_ms``: length of the audio decoded. ``decode_ms``: wall time of the decode in the engine thread."""

    text: str
    audio_ms: float
    decode_ms: float


@runtime_checkable
class ASR(Protocol):
    """A recogniser. Optional: a ``pending`` count of decodes queued or running (:func:`queue_depth`; the
    listener's load limits read it), 0 when absent."""

    name: str
    sample_rate: int

    async def warm(self) -> None:
        """Load the model and decode a little silence; raise ``NpcError(code="asr_unavailable")`` if it cannot load."""

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcript:
        """Decode one utterance (float32 mono at ``sample_rate``). Not cancel-safe in the engine: a
        cancelled call still finishes its decode in the engine thread (the result is dropped)."""

    async def aclose(self) -> None:
        """Release the engine; idempotent."""


@runtime_checkable
class VAD(Protocol):
    name: str
    #: The length of the audio behind each probability (ms at 16 kHz); the endpointer counts time in these.
    window_ms: float

    def stream(self) -> Any:
        """Fresh per-session state for :meth:`process` (opaque; one stream per listener, used by one task at a time)."""

    async def warm(self) -> None:
        """Load the model and run one window; raise ``NpcError(code="asr_unavailable")`` if it cannot load."""

    async def process(self, stream: Any, audio: np.ndarray) -> np.ndarray:
        """Speech probabilities in [0, 1] (float32), one per complete window of ``stream``'s leftover + ``audio``
        (float32 mono 16 kHz); the samples short of a window stay in ``stream`` for the next call. Failures raise
        ``NpcError`` (``asr_failed`` / ``asr_unavailable``)."""

    async def aclose(self) -> None:
        """Release the model; idempotent."""


def queue_depth(asr: ASR) -> int:
    """How many decodes an engine has queued or running (an engine without a ``pending`` count: 0)."""
    return int(getattr(asr, "pending", 0))


def asr_unavailable(message: str) -> NpcError:
    return NpcError(message, code="asr_unavailable")


def asr_failed(message: str) -> NpcError:
    return NpcError(message, code="asr_failed")


def asr_thread(name: str) -> EngineThread:
    """The engine thread of a speech-recognition engine (errors ``asr_unavailable`` / ``asr_failed``)."""
    return EngineThread(name, closed_error=asr_unavailable, failure=asr_failed)
