"""Documents to chunks: pure text processing, no engines.

A Markdown document is split by its headings (``#`` .. ``######``; lines in fenced code blocks
are not headings), then each section's paragraphs (separated by blank lines) are packed into
chunks of at most ``max_chars``; a paragraph longer than that is split at sentence boundaries
(a sentence longer than that, at word boundaries). A chunk after the first of its section
starts with the last ~``overlap_chars`` of the one before (cut at a sentence, else a word
boundary), so a fact that straddles two chunks is whole in one of them. Every chunk's text
begins with its heading breadcrumb line (``Broth > Bones``) when it has one: the words of the
heading help retrieval. Plain text files are paragraphs only. A chunk's text is therefore up to
about ``max_chars`` + ``overlap_chars`` + the breadcrumb long.

A Markdown section whose body holds a line ``<!-- secret -->`` (or ``<!-- secret: why -->``; an HTML comment,
invisible when the file is rendered) is never chunked, nor are its subsections: what a character must not tell
never reaches its prompt (a marker before the first heading keeps the whole file out). See docs/knowledge.md.

:func:`read_document` turns a file into ``(text, kind)`` or raises
:class:`~npc_runtime.knowledge.errors.KnowledgeFileError` naming the file.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from npc_runtime.knowledge.errors import KnowledgeFileError

__all__ = [
    "MAX_DOCUMENT_BYTES", "SUPPORTED_SUFFIXES", "Chunk", "chunk_document", "decode_document", "read_document",
]

Kind = Literal["markdown", "text"]

#: suffix -> kind of text it holds (a PDF's extracted text is plain text)
_KINDS: dict[str, Kind] = {
    ".md": "markdown", ".markdown": "markdown",
    ".txt": "text", ".text": "text", ".rst": "text", ".pdf": "text",
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_KINDS)
#: Larger files are skipped (knowledge is prose; a 20 MB "document" is a mistake).
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_SPACES = re.compile(r"\s+")
_SECRET = re.compile(r"^ {0,3}<!--\s*secret\b[^>]*-->[ \t]*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable piece of a document."""

    source: str  #: path relative to the knowledge root (posix), e.g. "jin/broth.md"
    heading: str  #: heading breadcrumb "Broth > Bones", "" if none
    index: int  #: 0-based chunk number within the file
    text: str

    @property
    def id(self) -> str:
        """Stable within a store: ``source#index``."""
        return f"{self.source}#{self.index}"


def chunk_document(text: str, source: str, *, kind: Kind = "markdown", max_chars: int = 700,
                   overlap_chars: int = 120) -> list[Chunk]:
    """Split one document into chunks (see the module doc). Empty or whitespace-only text: ``[]``."""
    if max_chars < 20 or not 0 <= overlap_chars < max_chars:
        raise ValueError("need max_chars >= 20 and 0 <= overlap_chars < max_chars")
    if kind not in ("markdown", "text"):
        raise ValueError(f"unknown document kind {kind!r}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    sections = _markdown_sections(text) if kind == "markdown" else [("", text)]
    chunks: list[Chunk] = []
    for heading, body in sections:
        previous = ""
        for packed in _pack(_pieces(_paragraphs(body), max_chars), max_chars):
            overlap = _tail(previous, overlap_chars) if previous and overlap_chars else ""
            chunk_text = "\n".join(part for part in (heading, overlap, packed) if part)
            chunks.append(Chunk(source, heading, len(chunks), chunk_text))
            previous = packed
    return chunks


def read_document(path: Path) -> tuple[str, Kind]:
    """The text of a knowledge file and its kind; raises ``KnowledgeFileError`` (unsupported suffix,
    unreadable, binary, not UTF-8, too large, a PDF without pypdf)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise KnowledgeFileError(path, "not a text document")
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise KnowledgeFileError(path, f"larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB")
        data = path.read_bytes()
    except OSError as exc:
        raise KnowledgeFileError(path, f"cannot read: {exc.strerror or type(exc).__name__}") from None
    return decode_document(data, path)


def decode_document(data: bytes, path: Path) -> tuple[str, Kind]:
    """``read_document`` for bytes already read from ``path`` (its suffix picks the kind)."""
    suffix = path.suffix.lower()
    kind = _KINDS.get(suffix)
    if kind is None:
        raise KnowledgeFileError(path, "not a text document")
    if suffix == ".pdf":
        return _pdf_text(data, path), "text"
    if b"\x00" in data:
        raise KnowledgeFileError(path, "binary content, not text")
    try:
        return data.decode("utf-8-sig"), kind
    except UnicodeDecodeError:
        raise KnowledgeFileError(path, "not UTF-8 text") from None


def _pdf_text(data: bytes, path: Path) -> str:
    try:
        import pypdf  # noqa: PLC0415 - optional: only PDF knowledge needs it
    except ImportError:
        raise KnowledgeFileError(path, "a PDF needs pypdf: install pypdf (pip install pypdf==7.1.0)") from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as exc:  # noqa: BLE001 - any parse failure: the file is skipped
        raise KnowledgeFileError(path, f"unreadable PDF ({type(exc).__name__})") from None
    return "\n\n".join(page.strip() for page in pages if page.strip())


# --- splitting ----------------------------------------------------------------------------------------


def _markdown_sections(text: str) -> list[tuple[str, str]]:
    """``(breadcrumb, body)`` per heading (the text before the first heading has breadcrumb ""); sections marked
    secret, and their subsections, left out."""
    sections: list[tuple[str, str]] = []
    trail: list[tuple[int, str, bool]] = []  # (level, title, secret) of the open headings
    lines: list[str] = []
    fence: str | None = None
    whole_file_secret = False

    def close() -> None:
        body = "\n".join(lines).strip()
        if body and not whole_file_secret and not any(secret for _, _, secret in trail):
            sections.append((" > ".join(title for _, title, _ in trail if title), body))
        lines.clear()

    for line in text.split("\n"):
        fenced = _FENCE.match(line)
        if fenced:
            fence = None if fence == fenced.group(1) else (fence or fenced.group(1))
        outside = not (fence or fenced)
        if outside and _SECRET.match(line):  # this section (or, before any heading, the file) is secret
            if trail:
                trail[-1] = (trail[-1][0], trail[-1][1], True)
            else:
                whole_file_secret = True
            continue
        heading = _HEADING.match(line) if outside else None
        if heading is None:
            lines.append(line)
            continue
        close()
        level, title = len(heading.group(1)), _SPACES.sub(" ", heading.group(2) or "").strip()
        while trail and trail[-1][0] >= level:
            trail.pop()
        trail.append((level, title, False))
    close()
    return sections


def _paragraphs(body: str) -> list[str]:
    return [p.strip() for p in _BLANK_LINES.split(body) if p.strip()]


def _pieces(paragraphs: list[str], max_chars: int) -> list[str]:
    """Paragraphs, with each one longer than ``max_chars`` split into sentence runs that fit."""
    pieces: list[str] = []
    for paragraph in paragraphs:
        if len(paragraph) <= max_chars:
            pieces.append(paragraph)
            continue
        sentences: list[str] = []
        for sentence in _SENTENCE_BREAK.split(paragraph):
            sentences.extend(_split_words(sentence, max_chars) if len(sentence) > max_chars else [sentence])
        pieces.extend(_pack(sentences, max_chars, sep=" "))
    return pieces


def _split_words(text: str, max_chars: int) -> list[str]:
    words: list[str] = []
    for word in text.split():
        words.extend(word[i:i + max_chars] for i in range(0, len(word), max_chars))
    return _pack(words, max_chars, sep=" ")


def _pack(pieces: list[str], max_chars: int, *, sep: str = "\n\n") -> list[str]:
    """Greedily join consecutive pieces while the result fits in ``max_chars``."""
    packed: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(sep) + len(piece) <= max_chars:
            current += sep + piece
        else:
            if current:
                packed.append(current)
            current = piece
    if current:
        packed.append(current)
    return packed


def _tail(text: str, overlap_chars: int) -> str:
    """The last ~``overlap_chars`` of ``text``, starting at a sentence start if there is one in
    that window, else at a word start."""
    if len(text) <= overlap_chars:
        return text
    window = text[-overlap_chars:]
    sentence = _SENTENCE_BREAK.search(window)
    if sentence and window[sentence.end():].strip():
        return window[sentence.end():].strip()
    if text[-overlap_chars - 1].isspace():
        return window.strip()
    space = re.search(r"\s", window)
    return window[space.end():].strip() if space and window[space.end():].strip() else window.strip()
