"""Voice in: voice activity (Silero VAD), end of turn, streaming speech recognition (Whisper).

* :class:`~npc_runtime.asr.listener.Listener` — one session's pipeline: PCM16 frames in,
  ``SpeechStarted`` / ``TranscriptPartial`` / ``SpeechStopped`` / ``TranscriptFinal`` out.
* :class:`~npc_runtime.asr.whisper.WhisperASR` — faster-whisper (tiny.en, base, or a model
  folder), nothing downloaded. :class:`~npc_runtime.asr.vad.SileroVAD` — streaming Silero VAD v6.
  Both behind the protocols of :mod:`~npc_runtime.asr.base` (:class:`ASR`, :class:`VAD`);
  :mod:`npc_runtime.asr.fake` has test doubles for session logic (imported by name, never from here).
* :class:`~npc_runtime.asr.endpoint.Endpointer`, :class:`~npc_runtime.asr.stabilize.Stabilizer`,
  :func:`~npc_runtime.asr.wer.wer` — pure.

Engine modules (``whisper``, ``vad``) load their libraries (faster-whisper, onnxruntime) only
when a model loads, and PyAV loads only for a Resampler at a rate other than 16 kHz; importing
this package loads numpy and nothing heavier.
"""

from npc_runtime.asr.base import ASR, SAMPLE_RATE, VAD, Transcript, asr_thread
from npc_runtime.asr.endpoint import EndpointConfig, Endpointer
from npc_runtime.asr.listener import (
    AudioError,
    ListenConfig,
    Listener,
    ListenEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
)
from npc_runtime.asr.stabilize import Stabilizer
from npc_runtime.asr.wer import wer

__all__ = ["ASR", "SAMPLE_RATE", "VAD", "AudioError", "EndpointConfig", "Endpointer", "ListenConfig", "ListenEvent",
           "Listener", "SpeechStarted", "SpeechStopped", "Stabilizer", "Transcript", "TranscriptFinal", "TranscriptPartial",
           "asr_thread", "wer"]
