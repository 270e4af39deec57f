"""Coqui TTS (``coqui-tts``, an optional extra that needs torch) with a model already on disk.

Every Coqui model is published for download from GitHub or Hugging Face, which this runtime
never does at run time: point ``model_path`` at a checkpoint you have (a ``.pth`` file, or a
model folder such as XTTS's) and ``config_path`` at its ``config.json`` (default: the
``config.json`` beside the file, or inside the folder). ``warm()`` raises
``NpcError(code="tts_unavailable")`` when the path does not exist or the package is missing.

Coqui gives audio but no phoneme timings. Chunks get their phonemes from ``timing``, another
engine (espeak-ng is the natural one: a few ms a sentence) asked to speak the same text, its
durations scaled to the Coqui audio; without one, the sentence's letters share the audio evenly.
Either is an approximation of where the sounds are, good enough for lips, coarse for actions.

torch runs with one thread (two shared cores; llama.cpp has the other). The stop flag is
checked between sentences. coqui-tts is MPL-2.0; each model has its own licence (XTTS's is
the non-commercial CPML).
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from npc_runtime.tts.base import (
    TTS,
    Phoneme,
    SynthChunk,
    ThreadedTTS,
    closing,
    spread_phonemes,
    stretch_phonemes,
    tts_thread,
    tts_unavailable,
)
from npc_runtime.tts.text import is_latin_language

PACKAGE_HINT = "pip install coqui-tts (it needs torch)"


def default_config_path(model_path: Path) -> Path:
    """``config.json`` inside a model folder, or beside a checkpoint file."""
    return model_path / "config.json" if model_path.is_dir() else model_path.parent / "config.json"


class CoquiTTS(ThreadedTTS):
    """The :class:`~npc_runtime.tts.base.TTS` protocol over a Coqui model on disk, in its own thread.

    ``speaker`` / ``language`` / ``speaker_wav``: for multi-speaker, multilingual and cloning
    models (XTTS needs ``language`` and ``speaker_wav`` or ``speaker``). ``speed`` is passed to
    models that take it (XTTS) when not 1. ``device``: ``"cpu"`` or ``"cuda"``.
    """

    name = "coqui"

    def __init__(self, *, model_path: str | Path, config_path: str | Path | None = None, speaker: str | None = None,
                 language: str | None = None, speaker_wav: str | Path | None = None, speed: float = 1.0,
                 device: str = "cpu", threads: int = 1, timing: TTS | None = None) -> None:
        self.model_path = Path(model_path).expanduser()
        self.config_path = Path(config_path).expanduser() if config_path else default_config_path(self.model_path)
        self.speaker, self.language, self.speed, self.device, self.threads = speaker, language, speed, device, threads
        self.speaker_wav = str(speaker_wav) if speaker_wav else None
        self.timing = timing
        self._model: Any = None  # TTS.api.TTS, owned by the engine thread
        super().__init__(thread=tts_thread("tts-coqui"), owns_thread=True,
                         latin_only=is_latin_language(language or "en"))

    def check(self) -> None:
        """Raise ``tts_unavailable`` unless the model, its config and the package are all there."""
        for what, path in (("model", self.model_path), ("config", self.config_path)):
            if not path.exists():
                raise tts_unavailable(
                    f"Coqui {what} path {path} does not exist: point the voice at a Coqui model you have "
                    "on disk (no model is downloaded at run time)"
                )
        if importlib.util.find_spec("TTS") is None or importlib.util.find_spec("torch") is None:
            raise tts_unavailable(f"the Coqui engine needs the coqui-tts package: {PACKAGE_HINT}")

    @property
    def sample_rate(self) -> int:
        """The model's output rate: from the loaded synthesizer, else from its config."""
        if self._model is not None:
            return int(self._model.synthesizer.output_sample_rate)
        try:
            audio = json.loads(self.config_path.read_text(encoding="utf-8")).get("audio", {})
        except (OSError, ValueError) as exc:
            raise tts_unavailable(f"Coqui config {self.config_path} does not load: {exc}") from exc
        rate = audio.get("output_sample_rate") or audio.get("sample_rate")
        if not isinstance(rate, int) or rate <= 0:
            raise tts_unavailable(f"Coqui config {self.config_path} names no audio sample rate")
        return rate

    async def warm(self) -> None:
        self.check()
        if self.timing is not None:
            await self.timing.warm()
        await super().warm()

    def _load(self) -> None:
        if self._model is not None:
            return
        self.check()
        import torch
        from TTS.api import TTS as CoquiModel

        torch.set_num_threads(self.threads)
        try:
            model = CoquiModel(model_path=str(self.model_path), config_path=str(self.config_path), progress_bar=False)
            self._model = model.to(self.device)
        except Exception as exc:  # noqa: BLE001 - coqui raises many kinds
            raise tts_unavailable(f"Coqui cannot load the model at {self.model_path}: {type(exc).__name__}: {exc}") from exc

    def _unload(self) -> None:
        self._model = None

    def _speak(self, sentence: str, stop: threading.Event) -> SynthChunk | None:
        import numpy as np

        extra: dict[str, Any] = {"speed": self.speed} if self.speed != 1.0 else {}
        wav = self._model.tts(text=sentence, speaker=self.speaker, language=self.language,
                              speaker_wav=self.speaker_wav, split_sentences=False, **extra)
        if stop.is_set():
            return None
        pcm = (np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2").tobytes()
        letters = [ch.lower() if ch.isalpha() else " " for ch in sentence if ch.isalpha() or ch == " "]
        return SynthChunk(pcm, self.sample_rate, spread_phonemes(letters, len(pcm) // 2), sentence)

    async def synthesize(self, text: str) -> AsyncIterator[SynthChunk]:
        """As :meth:`ThreadedTTS.synthesize`; with a ``timing`` engine, each chunk's phonemes are
        that engine's for the same sentence, scaled to the Coqui audio."""
        async with closing(super().synthesize(text)) as chunks:
            async for chunk in chunks:
                if self.timing is not None:
                    chunk = await retime(chunk, self.timing)
                yield chunk


async def retime(chunk: SynthChunk, timing: TTS) -> SynthChunk:
    """``chunk`` with the phonemes ``timing`` gives its text, scaled to its audio."""
    phonemes: list[Phoneme] = []
    async with closing(timing.synthesize(chunk.text)) as parts:
        async for part in parts:
            phonemes.extend(part.phonemes)
    if not phonemes:
        return chunk
    return SynthChunk(chunk.pcm, chunk.sample_rate, stretch_phonemes(phonemes, chunk.samples), chunk.text)
