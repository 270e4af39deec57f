"""Text cleaning for speech: what a TTS engine must never be fed (markup, emoji, control
characters, other scripts for a Latin voice, endless "words"), and sentence chunking. Pure."""

from __future__ import annotations

import html
import re
import unicodedata

MAX_WORD_CHARS = 32  # a longer "word" is broken into pieces of WORD_PIECE_CHARS,
WORD_PIECE_CHARS = 16  # at most MAX_WORD_PIECES of them (a 500-letter "word" is garbage, not speech)
MAX_WORD_PIECES = 4
MAX_SENTENCE_CHARS = 300

#: Languages written in the Latin script: their voices drop letters of other scripts (an
#: English voice would read 你 as "Chinese letter").
LATIN_LANGUAGES = frozenset(
    "af az bs ca cs cy da de en eo es et eu fi fr ga gd gl hr ht hu id is it la lt lv mt ms nb nl "
    "no pl pt ro sk sl sq sv sw tn tr uz vi".split()
)

_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>|<!--.*?-->", re.DOTALL)
_MD_LINK = re.compile(r"!?\[([^\[\]]*)\]\([^()]*\)")
_MD_MARKS = re.compile(r"[*_`#~^|\\]+")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_MARK = re.compile(r" ([,.;:!?…])")
_LONG_WORD = re.compile(rf"\S{{{MAX_WORD_CHARS + 1},}}")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=\S)")
_ABBREVIATION = re.compile(r"(?:\b(?:mr|mrs|ms|dr|prof|st|mt|vs|etc|jr|sr|no)|\b[a-z]|\b(?:[a-z]\.)+[a-z])\.$", re.IGNORECASE)
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "So", "Sk", "Me"})
_DROP_RANGES = ((0xFE00, 0xFE0F), (0xE0000, 0xE007F), (0x1F3FB, 0x1F3FF))  # variation selectors, tags, skin tones


def is_latin_language(language: str) -> bool:
    """Whether a voice language (``en-us``, ``en_US``, ``de``) is written in the Latin script."""
    return re.split(r"[-_]", language.lower(), maxsplit=1)[0] in LATIN_LANGUAGES


def _latin_ok(ch: str) -> bool:
    """Characters a Latin-script voice reads well: Latin letters and marks, common punctuation."""
    code = ord(ch)
    return (
        code < 0x250  # ASCII, Latin-1, Latin Extended-A/B
        or 0x300 <= code < 0x370  # combining diacritics
        or 0x1E00 <= code < 0x1F00  # Latin Extended Additional
        or 0x2000 <= code < 0x2070  # general punctuation
        or 0x20A0 <= code < 0x20D0  # currency signs
    )


def _replacement(ch: str, latin_only: bool) -> str:
    """``ch`` itself when a voice can read it; else nothing (format characters, emoji
    modifiers) or a space (anything else, so that the words around it stay apart)."""
    if ch.isspace():
        return " "
    category = unicodedata.category(ch)
    if category == "Cf" or any(lo <= ord(ch) <= hi for lo, hi in _DROP_RANGES):
        return ""
    if category in _DROP_CATEGORIES or (latin_only and not _latin_ok(ch)):
        return " "
    return ch


def _break_word(match: re.Match[str]) -> str:
    word = match.group(0)
    pieces = (word[i : i + WORD_PIECE_CHARS] for i in range(0, len(word), WORD_PIECE_CHARS))
    return " ".join(list(pieces)[:MAX_WORD_PIECES])


def clean_text(text: str, *, latin_only: bool = True) -> str:
    """What an engine can speak of ``text``, or ``""`` when nothing speakable is left.

    Unescapes HTML entities, drops tags and Markdown marks (keeping a link's text), emoji and
    other symbols, control and format characters and (``latin_only``) letters of other scripts;
    breaks words longer than ``MAX_WORD_CHARS`` into pieces (keeping the first
    ``MAX_WORD_PIECES``); folds whitespace. Text without a letter or a
    digit (``"..."``) is not speakable.
    """
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = _MD_LINK.sub(r"\1", _TAG.sub(" ", text))
    text = _MD_MARKS.sub(" ", text)
    text = "".join(_replacement(ch, latin_only) for ch in text)
    text = _LONG_WORD.sub(_break_word, text)
    text = _SPACE_BEFORE_MARK.sub(r"\1", _SPACES.sub(" ", text)).strip()
    return text if any(ch.isalnum() for ch in text) else ""


def split_sentences(text: str, *, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Sentences of cleaned text, each at most ``max_chars`` (a longer one is cut at a comma or a
    space). No cut after an abbreviation ("Mr.", "e.g.") or before a lower-case word."""
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        before, after = text[start : match.start()], text[match.end() :]
        if _ABBREVIATION.search(before) or after[:1].islower():
            continue
        pieces.append(before)
        start = match.end()
    pieces.append(text[start:])
    out: list[str] = []
    for sentence in pieces:
        sentence = sentence.strip()
        while len(sentence) > max_chars:
            cut = sentence.rfind(", ", 0, max_chars)
            cut = cut + 1 if cut > 0 else sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if any(ch.isalnum() for ch in sentence):
            out.append(sentence)
    return out


