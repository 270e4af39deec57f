"""Streaming PCM16 (mono, little-endian) at any rate → float32 mono 16 kHz in [-1, 1].

16 kHz input is only converted. Other rates (8,000–48,000 Hz) go through PyAV's
``av.AudioResampler`` (libswresample), which keeps its filter state between calls so that
chunk boundaries leave no clicks, and whose output length tracks the input (no drift over
minutes; it holds back a few ms that :meth:`Resampler.flush` returns). PyAV is imported only
when a rate other than 16 kHz is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npc_runtime.asr.base import SAMPLE_RATE

__all__ = ["MAX_RATE", "MIN_RATE", "Pcm16Resampler", "Resampler", "pcm16_to_float"]

MIN_RATE, MAX_RATE = 8000, 48000
_EMPTY = np.zeros(0, dtype=np.float32)


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    """PCM16 little-endian bytes → float32 in [-1, 1)."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


class Resampler:
    """``feed(pcm) -> samples`` as they are ready; ``flush()`` at the end of the stream."""

    def __init__(self, input_rate: int) -> None:
        if input_rate != SAMPLE_RATE and not MIN_RATE <= input_rate <= MAX_RATE:
            raise ValueError(f"input rate {input_rate} Hz is outside {MIN_RATE}..{MAX_RATE}")
        self.input_rate = input_rate
        self._av: Any = None
        self._resampler: Any = None
        if input_rate != SAMPLE_RATE:
            import av  # noqa: PLC0415 - only needed to change rates

            self._av = av
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def feed(self, pcm: bytes) -> np.ndarray:
        if len(pcm) % 2:
            raise ValueError("PCM16 needs an even number of bytes")
        if not pcm:
            return _EMPTY
        if self._resampler is None:
            return pcm16_to_float(pcm)
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = self._av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.input_rate
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """What the filter still holds (call once, at the end of the stream)."""
        if self._resampler is None:
            return _EMPTY
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[Any]) -> np.ndarray:
        if not frames:
            return _EMPTY
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


class Pcm16Resampler:
    """PCM16 mono at ``input_rate`` → PCM16 mono at ``output_rate``, streaming (libswresample keeps its state between
    calls): a voice's output for a client that wants another rate (the Realtime endpoint's 24 kHz). ``feed(pcm) ->
    bytes`` as they are ready; ``flush()`` once at the end returns the few samples held back."""

    def __init__(self, input_rate: int, output_rate: int) -> None:
        import av  # noqa: PLC0415 - only needed to change rates

        self._av = av
        self.input_rate, self.output_rate = input_rate, output_rate
        self._resampler: Any = av.AudioResampler(format="s16", layout="mono", rate=output_rate)

    def feed(self, pcm: bytes) -> bytes:
        if len(pcm) % 2:
            raise ValueError("PCM16 needs an even number of bytes")
        if not pcm:
            return b""
        frame = self._av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.input_rate
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> bytes:
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[Any]) -> bytes:
        return b"".join(np.ascontiguousarray(f.to_ndarray().reshape(-1), dtype="<i2").tobytes() for f in frames)


def decode_file(path: str) -> np.ndarray:
    """Any audio file PyAV can read (WAV, FLAC, MP3, Ogg, ...) as float32 mono 16 kHz."""
    from faster_whisper.audio import decode_audio

    return decode_audio(path, sampling_rate=SAMPLE_RATE)  # type: ignore[no-any-return]
