"""Audio for the Realtime endpoint: base64 PCM16 at 24 kHz on the wire.

In: the client's 24 kHz PCM16 goes to the session's listener as it is (the listener takes any rate from 8 to 48 kHz
and resamples to 16 kHz itself), cut into frames no larger than the native limit. Out: the voice's own rate (Piper:
22,050 Hz) is resampled to 24 kHz with libswresample (:class:`~npc_runtime.asr.resample.Pcm16Resampler`: PyAV,
already a dependency of faster-whisper), one resampler per response so that chunk boundaries leave no clicks; :meth:`OutputResampler.flush`
returns the few samples it holds back at the end of a response. Resampling 3 s of speech takes ~1.2 ms (measured on
the 2-core VM of docs/realtime.md), so it runs on the event loop.
"""

from __future__ import annotations

import base64
import binascii

from npc_runtime.asr.resample import Pcm16Resampler

#: The Realtime API's PCM rate (``audio/pcm``, ``pcm16``), in and out.
RATE = 24000


class AudioDecodeError(ValueError):
    """``input_audio_buffer.append`` audio that is not base64 of whole PCM16 samples."""


def decode_append(audio: str) -> bytes:
    """The PCM16 bytes of an ``input_audio_buffer.append``'s ``audio`` (strict base64). Raises
    :class:`AudioDecodeError` for text that is not base64 or an odd number of bytes."""
    try:
        pcm = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise AudioDecodeError("audio is not valid base64") from None
    if len(pcm) % 2:
        raise AudioDecodeError(f"audio is {len(pcm)} bytes: not whole PCM16 samples (2 bytes each)")
    return pcm


def frames(pcm: bytes, limit: int) -> list[bytes]:
    """``pcm`` cut into pieces of at most ``limit`` bytes (an even number), in order."""
    step = max(2, limit - limit % 2)
    return [pcm[i:i + step] for i in range(0, len(pcm), step)]


def encode(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


def duration_ms(samples: int, rate: int = RATE) -> float:
    return samples * 1000.0 / rate


class OutputResampler:
    """PCM16 mono at ``input_rate`` → PCM16 mono at :data:`RATE`, streaming (:class:`~npc_runtime.asr.resample.Pcm16Resampler`,
    libswresample). A pass-through at 24 kHz. One per response; :meth:`flush` ends it."""

    def __init__(self, input_rate: int) -> None:
        self.input_rate = input_rate
        self._resampler: Pcm16Resampler | None = Pcm16Resampler(input_rate, RATE) if input_rate != RATE else None

    def feed(self, pcm: bytes) -> bytes:
        if self._resampler is None or not pcm:
            return pcm
        return self._resampler.feed(pcm)

    def flush(self) -> bytes:
        """What the resampler still holds (a few ms); the stream is over after this."""
        resampler, self._resampler = self._resampler, None
        return resampler.flush() if resampler is not None else b""
