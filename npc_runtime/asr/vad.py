"""Silero VAD v6 (the ONNX model shipped inside faster-whisper), streaming.

faster-whisper's own ``SileroVADModel`` restarts the LSTM state on every call; here each
session keeps a :class:`VadStream` (the LSTM's ``h`` and ``c``, the last 64 samples as the next
window's context, and the samples short of a whole 512-sample window), so audio can arrive in
chunks of any size and the probabilities come out exactly as if it came in one piece.

The model runs in its own engine thread (onnxruntime with one intra-op and one inter-op
thread). All the complete windows of one :meth:`SileroVAD.process` call go in one
``session.run``: the model carries ``h``/``c`` through the batch, window after window, so the
batch gives the same probabilities as window-by-window streaming (tested), about 3x cheaper.
One window is 32 ms; a second of audio costs ~1–3 ms here.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from npc_runtime.asr.base import SAMPLE_RATE, asr_failed, asr_thread, asr_unavailable
from npc_runtime.engine_thread import EngineThread
from npc_runtime.errors import NpcError

__all__ = ["CONTEXT", "WINDOW", "SileroVAD", "VadStream", "model_path"]

WINDOW = 512   # samples per probability at 16 kHz (32 ms)
CONTEXT = 64   # samples of the previous window the model sees before each window
WINDOW_MS = WINDOW * 1000 / SAMPLE_RATE


def _zeros_state() -> np.ndarray:
    return np.zeros((1, 1, 128), dtype=np.float32)


@dataclass(slots=True)
class VadStream:
    """Per-session VAD state. Use one stream from one task at a time."""

    h: np.ndarray = field(default_factory=_zeros_state)
    c: np.ndarray = field(default_factory=_zeros_state)
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, dtype=np.float32))
    leftover: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    windows: int = 0  # windows processed so far

    def reset(self) -> None:
        self.h, self.c = _zeros_state(), _zeros_state()
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self.leftover = np.zeros(0, dtype=np.float32)
        self.windows = 0


def model_path() -> str:
    """The Silero VAD v6 ONNX file inside the installed faster-whisper."""
    try:
        import faster_whisper  # noqa: PLC0415 - an engine library, loaded only when the VAD loads
    except ImportError as exc:
        raise asr_unavailable("Silero VAD needs faster-whisper (pip install faster-whisper==1.2.1)") from exc
    path = os.path.join(os.path.dirname(faster_whisper.__file__), "assets", "silero_vad_v6.onnx")
    if not os.path.isfile(path):
        raise asr_unavailable(f"the Silero VAD model is missing from faster-whisper ({path})")
    return path


class SileroVAD:
    """Speech probabilities per 32 ms window (the :class:`~npc_runtime.asr.base.VAD` protocol; its streams are
    :class:`VadStream`). ``thread``: share an engine thread (else its own, "vad")."""

    name = "silero-vad-v6"
    window_ms = WINDOW_MS

    def __init__(self, *, thread: EngineThread | None = None) -> None:
        self._owns_thread = thread is None
        self._thread = thread or asr_thread("vad")
        self._session: Any = None
        self._load_lock = asyncio.Lock()
        self._closed = False

    def stream(self) -> VadStream:
        return VadStream()

    async def warm(self) -> None:
        """Load the model and run one window."""
        await self.process(self.stream(), np.zeros(WINDOW, dtype=np.float32))

    async def process(self, stream: VadStream, audio: np.ndarray) -> np.ndarray:
        """Probabilities (float32), one per complete window of ``stream``'s leftover + ``audio``;
        the samples short of a window stay in ``stream`` for the next call. Runs in the VAD
        thread. A cancelled call still advances ``stream`` in the thread (its probabilities are lost)."""
        samples = np.concatenate([stream.leftover, np.asarray(audio, dtype=np.float32).reshape(-1)])
        whole = len(samples) // WINDOW * WINDOW
        if whole == 0:
            stream.leftover = samples
            return np.zeros(0, dtype=np.float32)
        await self._ensure_loaded()
        try:
            return await self._thread.call(self._run, stream, samples, whole)
        except NpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - the engine broke
            raise asr_failed(f"{self.name} failed: {type(exc).__name__}") from exc

    async def _ensure_loaded(self) -> None:
        if self._closed:
            raise asr_unavailable("the VAD is closed")
        if self._session is not None:
            return
        async with self._load_lock:
            if self._session is None:
                try:
                    self._session = await self._thread.call(self._load)
                except NpcError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any load failure means "not available"
                    raise asr_unavailable(f"Silero VAD could not load: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _load() -> Any:
        try:
            import onnxruntime  # noqa: PLC0415 - an engine library, loaded in the engine thread
        except ImportError as exc:
            raise asr_unavailable("Silero VAD needs onnxruntime (pip install onnxruntime)") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4
        return onnxruntime.InferenceSession(model_path(), providers=["CPUExecutionProvider"], sess_options=options)

    def _run(self, stream: VadStream, samples: np.ndarray, whole: int) -> np.ndarray:
        windows = samples[:whole].reshape(-1, WINDOW)
        contexts = np.concatenate([stream.context[None, :], windows[:-1, -CONTEXT:]])
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1))
        probs, h, c = self._session.run(None, {"input": batch, "h": stream.h, "c": stream.c})
        stream.h, stream.c = h, c
        stream.context = windows[-1, -CONTEXT:].copy()
        stream.leftover = samples[whole:].copy()
        stream.windows += len(windows)
        return np.asarray(probs, dtype=np.float32).reshape(-1)

    async def aclose(self) -> None:
        """Free the model; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_thread:
            await self._thread.aclose(self._free)

    def _free(self) -> None:
        self._session = None


def speech_spans_16k(audio: np.ndarray, *, min_silence_ms: int = 200) -> list[tuple[int, int]]:
    """Offline speech spans (sample indices) of 16 kHz float audio, by faster-whisper's Silero helper (a
    blocking call: for tools and benchmarks, not the server's event loop)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=min_silence_ms, speech_pad_ms=0))
    return [(int(s["start"]), int(s["end"])) for s in spans]
