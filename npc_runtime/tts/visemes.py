"""IPA phonemes with durations → Oculus/OVR viseme cues on the audio timeline. Pure: no I/O, no asyncio.

Input is what the TTS engines give: a sequence of ``(ipa, samples)`` pairs (tuples, or objects with
``phoneme``/``num_samples`` as Piper's ``PhonemeAlignment`` has, or ``ipa``/``samples``) whose sample counts add up
to the chunk's audio. Piper's quirks are folded in here:

* ``^`` (sentence start), ``$`` (sentence end) and punctuation (``, . ? ! : ;`` …) carry real pauses: ``sil``.
* Stress marks (ˈ ˌ), length marks (ː ˑ), combining diacritics (nasal ̃, syllabic ̩ …), modifier letters (ʰ ʲ ʷ)
  and ``_`` padding are no sound of their own: their samples go to the previous entry (to the next one when nothing
  precedes). Length, diacritics and r-colouring (˞) also join the previous symbol for the lookup.
* A space is a word boundary. Piper gives it a short duration that is the transition between two words, not a
  pause, so its samples go to the previous sound; a space of ``min_pause_ms`` or longer is a real pause: ``sil``.
* A tie bar (t͡ʃ) joins its neighbours into one symbol; ``tʃ`` and ``dʒ`` split per code point are joined too (one
  ``CH`` cue, not ``DD`` then ``CH``).
* Diphthongs split per code point (``a`` then ``ɪ``) stay two cues (``aa`` then ``ih``): the mouth really travels
  and Piper times each half. An entry holding several symbols (espeak-ng's ``aɪ``) is shared out evenly among them.

Unknown letters map to ``FALLBACK_VISEME``; unknown non-letters (digits, symbols) join the previous entry.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

VISEMES: tuple[str, ...] = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")
FALLBACK_VISEME = "E"  # a mid-open mouth: an unknown letter is most likely a vowel of another language
DEFAULT_MIN_PAUSE_MS = 100.0

_GROUPS: dict[str, str] = {
    "PP": "p b m ɓ ʙ ɸ β ʘ",
    "FF": "f v ɱ ʋ",
    "TH": "θ ð",
    "DD": "t d ɾ ɺ ʈ ɖ ɗ ɽ ǀ ǁ ǃ",
    "kk": "k g ɡ ŋ c ɟ q ɢ ɴ x ɣ χ ɰ ɠ ʛ ǂ h ɦ ħ ʕ ʜ ʢ ʡ ʔ",
    "CH": "ʃ ʒ tʃ dʒ ʧ ʤ ç ʝ ɕ ʑ ʂ ʐ ɧ",
    "SS": "s z ts dz ʦ ʣ",
    "nn": "n ɲ ɳ l ɫ ɭ ʎ ʟ ɬ ɮ",
    "RR": "ɹ r ɻ ʀ ʁ ɚ ɝ",
    "aa": "a ɑ ɐ æ ʌ ɒ ɶ ᴀ",
    "E": "e ɛ ə ɜ ɘ ɤ ᵊ",
    "ih": "i ɪ ɨ ᵻ ɯ j",
    "oh": "o ɔ ø œ ɵ ɞ",
    "ou": "u ʊ ʉ y ʏ w ʍ ɥ",
}
IPA_TO_VISEME: dict[str, str] = {sym: vis for vis, syms in _GROUPS.items() for sym in syms.split()}
"""Every IPA symbol we know, one code point (or a joined affricate) each, to its OVR viseme."""

_BOUNDARY = frozenset("^$|‖")  # Piper's sentence start/end markers, IPA group boundaries
_STRESS = frozenset("ˈˌ'")
_ATTACH = frozenset("ːˑ˞ʰʱʲʷˠˤˀʼⁿˡ̚_‿")  # join the previous symbol (length, release, r-colour, padding)
_TIES = frozenset("\u0361\u035c")
_AFFRICATES = frozenset({"tʃ", "dʒ"})

_PHONE, _SIL, _SPACE = "phone", "sil", "space"


@dataclass(frozen=True, slots=True)
class VisemeCue:
    """One viseme held from ``start_ms`` to ``end_ms`` (ms from the start of the response's audio)."""

    viseme: str
    start_ms: float
    end_ms: float


def viseme_for(symbol: str) -> str:
    """The OVR viseme of one IPA symbol (diacritics and length marks allowed; r-coloured vowels give ``RR``)."""
    if symbol in IPA_TO_VISEME:
        return IPA_TO_VISEME[symbol]
    if "˞" in symbol:
        return "RR"
    base = "".join(ch for ch in symbol if _kind(ch) == _PHONE)
    if base in IPA_TO_VISEME:
        return IPA_TO_VISEME[base]
    for ch in base:
        if ch in IPA_TO_VISEME:
            return IPA_TO_VISEME[ch]
    return FALLBACK_VISEME


def phonemes_to_cues(
    phonemes: Iterable[Any],
    sample_rate: int,
    *,
    offset_samples: int = 0,
    min_pause_ms: float = DEFAULT_MIN_PAUSE_MS,
) -> list[VisemeCue]:
    """Viseme cues for one chunk of audio from its phonemes and their sample counts.

    The cues are contiguous (each starts where the previous ends), merge consecutive identical visemes, and cover
    exactly the chunk: the first starts at ``offset_samples`` and the last ends at ``offset_samples`` plus the sum
    of the sample counts, both in ms (``samples * 1000 / sample_rate``, unrounded). ``offset_samples`` is the audio
    of the response already sent in earlier chunks. Zero-length entries make no cue; empty audio gives ``[]``.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    units = _resolve_spaces(_units(phonemes), min_pause_ms * sample_rate / 1000.0)
    merged: list[list[Any]] = []
    for symbol, samples, kind in units:
        viseme = "sil" if kind != _PHONE else viseme_for(symbol)
        if samples == 0:
            continue
        if merged and merged[-1][0] == viseme:
            merged[-1][1] += samples
        else:
            merged.append([viseme, samples])
    cues: list[VisemeCue] = []
    position = offset_samples
    for viseme, samples in merged:
        end = position + samples
        cues.append(VisemeCue(viseme, position * 1000.0 / sample_rate, end * 1000.0 / sample_rate))
        position = end
    return cues


def word_end_samples(phonemes: Iterable[Any], *, offset_samples: int = 0) -> list[int]:
    """Sample positions (plus ``offset_samples``) where the words of the chunk end, one per word, in order.

    Piper marks word boundaries only by its space entries (and punctuation, which espeak-ng keeps as an entry of
    its own before the space); engines built on espeak-ng events should insert a ``" "`` entry at each word event.
    A word ends where the first boundary entry after it starts, that is at the end of its last sounding phoneme;
    the last word ends at its last phoneme even with no boundary after it. Words are the TTS engine's, so "3.5"
    counts as three ("three point five"): map an action to the end of the speech before it, not by word count.
    """
    ends: list[int] = []
    position = offset_samples
    in_word = False
    for _, samples, kind in _units(phonemes):
        if kind == _PHONE:
            in_word = True
        elif in_word:
            ends.append(position)
            in_word = False
        position += samples
    if in_word:
        ends.append(position)
    return ends


def _entry(item: Any) -> tuple[str, int]:
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
        ipa, samples = item
    elif hasattr(item, "phoneme") and hasattr(item, "num_samples"):
        ipa, samples = item.phoneme, item.num_samples
    elif hasattr(item, "ipa") and hasattr(item, "samples"):
        ipa, samples = item.ipa, item.samples
    else:
        raise TypeError(f"expected (ipa, samples) or a phoneme alignment, got {item!r}")
    samples = int(samples)
    if samples < 0:
        raise ValueError(f"negative sample count for {ipa!r}: {samples}")
    return str(ipa), samples


def _kind(ch: str) -> str:
    """How one code point behaves: a phone, a pause, a space, a tie, stress, or something to attach."""
    if ch in IPA_TO_VISEME:
        return _PHONE
    if ch.isspace():
        return _SPACE
    if ch in _TIES:
        return "tie"
    if ch in _STRESS:
        return "stress"
    if ch in _ATTACH:
        return "attach"
    if ch in _BOUNDARY:
        return _SIL
    category = unicodedata.category(ch)
    if category.startswith("P"):
        return _SIL
    if category in ("Lm", "Mn", "Me", "Mc", "Sk"):
        return "attach"
    if category.startswith("L"):
        return _PHONE
    return "attach"  # digits, symbols, controls: no sound of their own


def _pieces(phonemes: Iterable[Any]) -> Iterable[tuple[str, int]]:
    """Each code point with its share of its entry's samples (an entry's phones share them evenly)."""
    for item in phonemes:
        ipa, samples = _entry(item)
        chars = list(unicodedata.normalize("NFD", ipa)) or ["_"]
        bearers = [i for i, ch in enumerate(chars) if _kind(ch) == _PHONE] or [0]
        share, extra = divmod(samples, len(bearers))
        for i, ch in enumerate(chars):
            if i in bearers:
                yield ch, share + (extra if i == bearers[0] else 0)
            else:
                yield ch, 0


def _units(phonemes: Iterable[Any]) -> list[list[Any]]:
    """Fold the pieces into ``[symbol, samples, kind]`` units in time order; samples only move to a neighbour."""
    units: list[list[Any]] = []
    leading = 0  # samples of marks seen before any unit: they go to the first unit
    tie = False
    for ch, samples in _pieces(phonemes):
        kind = _kind(ch)
        last = units[-1] if units else None
        if kind == _PHONE:
            if last is not None and last[2] == _PHONE and (tie or last[0] + ch in _AFFRICATES):
                last[0] += ch
                last[1] += samples
            else:
                units.append([ch, samples + leading, _PHONE])
                leading = 0
            tie = False
        elif kind in (_SIL, _SPACE):
            if last is not None and last[2] == kind:
                last[1] += samples
            else:
                units.append([ch if kind == _SIL else " ", samples + leading, kind])
                leading = 0
            tie = False
        elif last is None:
            leading += samples
        else:
            last[1] += samples
            if kind == "tie":
                tie = last[2] == _PHONE
            elif kind == "attach" and last[2] == _PHONE and not ch.isdigit():
                last[0] += ch
    if leading:
        units.append(["", leading, _SIL])
    return units


def _resolve_spaces(units: list[list[Any]], min_pause_samples: float) -> list[list[Any]]:
    """A long space becomes silence; a short one gives its samples to the previous unit (the next if first)."""
    out: list[list[Any]] = []
    pending = 0
    for symbol, samples, kind in units:
        if kind == _SPACE and samples < min_pause_samples:
            if out:
                out[-1][1] += samples
            else:
                pending += samples
            continue
        out.append([symbol, samples + pending, _SIL if kind == _SPACE else kind])
        pending = 0
    if pending:
        out.append([" ", pending, _SIL])
    return out
