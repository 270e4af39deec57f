"""espeak-ng through libespeak-ng's C API (ctypes), with phoneme timings from its events.

The library comes from PyPI ``espeakng-loader`` (it ships ``libespeak-ng`` and its data), or
else from the system (Debian ``libespeak-ng1``). It runs in synchronous mode
(``AUDIO_OUTPUT_SYNCHRONOUS``): ``espeak_Synth`` returns when the text is spoken, after calling
our synth callback with buffers of samples and the events inside them. With
``espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA`` every phoneme gives an event
whose name is its IPA (stress marks included, ``"ˈoʊ"``) and whose ``sample`` field is its exact
sample position from the start of the call. A phoneme lasts until the next one; the last runs to
the end of the audio. Pauses (phonemes with an empty name) and the silence before the first
phoneme become :data:`~npc_runtime.tts.base.PAUSE`; each word event after the first adds a
``" "`` word boundary (zero samples when a phoneme starts at the same sample).

libespeak-ng is a process-wide singleton (global state, one callback): one :class:`_Library`
per process owns it, one lock guards it, and every call runs in its one thread, shared by all
:class:`EspeakTTS` instances (each sets its voice and rate before speaking). The callback
returns 1 when the stop flag is set, which aborts the synthesis mid-sentence.

espeak-ng is GPL-3.0: it runs in the server only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any

from npc_runtime.tts.base import (
    PAUSE,
    Phoneme,
    SynthChunk,
    ThreadedTTS,
    fit_phonemes,
    tts_failed,
    tts_thread,
    tts_unavailable,
)
from npc_runtime.tts.text import is_latin_language

AUDIO_OUTPUT_SYNCHRONOUS = 2
espeakINITIALIZE_PHONEME_EVENTS = 0x0001
espeakINITIALIZE_PHONEME_IPA = 0x0002
espeakINITIALIZE_DONT_EXIT = 0x8000
espeakCHARS_UTF8 = 1
POS_CHARACTER = 1
espeakRATE = 1
espeakEVENT_LIST_TERMINATED = 0
espeakEVENT_WORD = 1
espeakEVENT_PHONEME = 7
EE_OK = 0

DEFAULT_VOICE = "en-us"
DEFAULT_RATE_WPM = 175  # espeak-ng's default speaking rate
MIN_RATE_WPM, MAX_RATE_WPM = 80, 450
DEFAULT_SAMPLE_RATE = 22050  # what espeak-ng's voices produce; espeak_Initialize reports it


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # samples from the start of this espeak_Synth call
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def find_library() -> tuple[str, str | None]:
    """``(library path, data path or None)``: espeakng-loader's copy, else the system's."""
    try:
        import espeakng_loader
    except ImportError:
        pass
    else:
        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    for candidate in ("libespeak-ng.so.1", ctypes.util.find_library("espeak-ng")):
        if candidate:
            try:
                ctypes.CDLL(candidate)
            except OSError:
                continue
            return candidate, None
    raise tts_unavailable(
        "libespeak-ng not found: install the espeakng-loader package (or Debian's libespeak-ng1)"
    )


class _Collector:
    """What the callback gathers during one ``espeak_Synth`` call."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.pcm = bytearray()
        self.marks: list[tuple[int, str]] = []  # (sample position, name)


class _Library:
    """The process's one libespeak-ng: loaded once, used from its own thread under a lock."""

    def __init__(self) -> None:
        self.thread = tts_thread("tts-espeak")
        self.lock = threading.Lock()
        self.lib: Any = None
        self.sample_rate = 0
        self.path = ""
        self._callback: Any = None  # keep the ctypes callback alive
        self._collector: _Collector | None = None
        self._voice: str | None = None
        self._rate: int | None = None

    def load(self) -> None:
        with self.lock:
            if self.lib is not None:
                return
            path, data = find_library()
            try:
                lib = ctypes.CDLL(path)
            except OSError as exc:
                raise tts_unavailable(f"libespeak-ng at {path} does not load: {exc}") from exc
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
            lib.espeak_SetSynthCallback.restype = None
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetVoiceByName.restype = ctypes.c_int
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_SetParameter.restype = ctypes.c_int
            lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                         ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            lib.espeak_Synth.restype = ctypes.c_int
            options = espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA | espeakINITIALIZE_DONT_EXIT
            rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode() if data else None, options)
            if rate <= 0:
                raise tts_unavailable(f"espeak_Initialize failed ({rate}) with data at {data or 'the default path'}")
            self._callback = _SynthCallback(self._on_synth)
            lib.espeak_SetSynthCallback(self._callback)
            self.lib, self.sample_rate, self.path = lib, rate, path

    def _on_synth(self, wav: Any, count: int, events: Any) -> int:
        collector = self._collector
        if collector is None:
            return 0
        if count > 0 and wav:
            collector.pcm += ctypes.string_at(wav, count * 2)
        i = 0
        while events[i].type != espeakEVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == espeakEVENT_PHONEME:
                name = event.id.string.decode("utf-8", errors="ignore")
                collector.marks.append((event.sample, name or PAUSE))
            elif event.type == espeakEVENT_WORD:
                collector.marks.append((event.sample, " "))
            i += 1
        return 1 if collector.stop.is_set() else 0

    def select(self, voice: str, rate: int) -> None:
        """Set the voice and rate (under the lock, in the thread)."""
        if voice != self._voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                self._voice = None
                raise tts_unavailable(f"espeak-ng has no voice named {voice!r} (names look like en, en-us, en-gb-x-rp, de)")
            self._voice = voice
            self._rate = None  # a new voice resets the parameters
        if rate != self._rate:
            self.lib.espeak_SetParameter(espeakRATE, rate, 0)
            self._rate = rate

    def speak(self, text: str, voice: str, rate: int, stop: threading.Event) -> _Collector:
        collector = _Collector(stop)
        data = text.encode("utf-8") + b"\0"
        with self.lock:
            self.select(voice, rate)
            self._collector = collector
            try:
                status = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
            finally:
                self._collector = None
        if status != EE_OK and not stop.is_set():
            raise tts_failed(f"espeak_Synth failed with status {status}")
        return collector


_LIBRARY = _Library()


def phonemes_from_marks(marks: list[tuple[int, str]], total: int) -> tuple[Phoneme, ...]:
    """Phonemes covering ``total`` samples from ``(position, name)`` marks: each phoneme runs to
    the next mark, the last to the end; before the first phoneme is a pause. A word mark is a
    zero-length ``" "`` when a phoneme starts at the same sample, else it takes the samples up
    to the next phoneme (the transition between words)."""
    out: list[Phoneme] = []
    position, name = 0, PAUSE
    first_word = True
    for sample, mark in sorted(marks, key=lambda m: m[0]):  # stable: same-sample order kept
        sample = min(max(sample, position), total)
        if mark == " " and first_word:
            first_word = False
            continue
        if sample > position or name == " ":  # a word boundary stays, even with no samples
            out.append(Phoneme(name, sample - position))
        position, name = sample, mark
    out.append(Phoneme(name, total - position))
    return fit_phonemes(_drop_empty_runs(out), total)


def _drop_empty_runs(phonemes: list[Phoneme]) -> list[Phoneme]:
    """Drop zero-length entries that are not word boundaries, and repeated boundaries."""
    out: list[Phoneme] = []
    for p in phonemes:
        if p.samples == 0 and p.ipa != " ":
            continue
        if p.ipa == " " and p.samples == 0 and out and out[-1].ipa == " ":
            continue
        out.append(p)
    return out


def rate_for(speed: float) -> int:
    """espeak-ng's words-per-minute rate for a speed multiplier."""
    return max(MIN_RATE_WPM, min(MAX_RATE_WPM, round(DEFAULT_RATE_WPM * speed)))


class EspeakTTS(ThreadedTTS):
    """The :class:`~npc_runtime.tts.base.TTS` protocol over libespeak-ng.

    ``voice``: an espeak-ng voice name (``en-us``, ``en-gb``, ``de``...). ``speed``: a multiplier
    of the default rate (175 words per minute). Synthesis takes a few milliseconds a sentence.
    """

    name = "espeak"

    def __init__(self, *, voice: str | None = None, speed: float = 1.0) -> None:
        self.voice = voice or DEFAULT_VOICE
        self.rate = rate_for(speed)
        super().__init__(thread=_LIBRARY.thread, owns_thread=False, latin_only=is_latin_language(self.voice))

    @property
    def sample_rate(self) -> int:
        """The rate espeak_Initialize reported (before the library is loaded: 22050, espeak-ng's)."""
        return _LIBRARY.sample_rate or DEFAULT_SAMPLE_RATE

    @property
    def library_path(self) -> str:
        return _LIBRARY.path

    def _load(self) -> None:
        _LIBRARY.load()
        with _LIBRARY.lock:
            _LIBRARY.select(self.voice, self.rate)

    def _speak(self, sentence: str, stop: threading.Event) -> SynthChunk | None:
        collected = _LIBRARY.speak(sentence, self.voice, self.rate, stop)
        if stop.is_set() or not collected.pcm:
            return None
        total = len(collected.pcm) // 2
        phonemes = phonemes_from_marks(collected.marks, total)
        return SynthChunk(bytes(collected.pcm), _LIBRARY.sample_rate, phonemes, sentence)

