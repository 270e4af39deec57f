"""Text to speech: engines behind one interface (:class:`TTS`), text in, audio chunks with
phoneme timings out.

* :class:`~npc_runtime.tts.piper.PiperTTS` — the default: Piper neural voices (onnxruntime),
  phoneme alignments from the model itself. GPL-3.0, server only.
* :class:`~npc_runtime.tts.espeak.EspeakTTS` — espeak-ng through its C API: instant, robotic,
  many languages; a fallback and a second voice family. GPL-3.0, server only.
* :class:`~npc_runtime.tts.coqui.CoquiTTS` — a Coqui model you have on disk (optional
  ``coqui-tts`` with torch; nothing is downloaded).
* :class:`FakeTTS` — silence, for session-logic tests.

Engine modules are imported by name (``npc_runtime.tts.piper`` ...) so that importing this
package loads no engine library; only the wiring layer chooses one. See ``docs/tts.md``.
"""

from npc_runtime.tts.base import PAUSE, TTS, Phoneme, SynthChunk, SynthStats
from npc_runtime.tts.fake import FakeTTS
from npc_runtime.tts.text import clean_text, split_sentences

__all__ = ["PAUSE", "TTS", "FakeTTS", "Phoneme", "SynthChunk", "SynthStats", "clean_text", "split_sentences"]
