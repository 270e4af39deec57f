"""Incremental ingest of one folder into one scope of a :class:`KnowledgeStore`.

Each supported file is hashed (sha256 of its bytes); a file whose hash the store already holds is
left alone (no read, no embedding); a new or changed one is chunked, embedded (in groups of about
64 chunks across files) and its chunks replaced; a file gone from the folder has its chunks
deleted. Unsupported, unreadable, binary or empty files are skipped with a warning naming the file
(never its content) and listed in the report; a skipped file that had chunks loses them. Hidden
files and folders (``.name``) are ignored. A missing or empty folder gives an empty report.

Cancel-safe in the sense that the store stays consistent: a cancelled ingest leaves each file
either fully replaced or untouched (its old hash), and the next ingest finishes the job.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from npc_runtime.knowledge.chunk import MAX_DOCUMENT_BYTES, SUPPORTED_SUFFIXES, Chunk, chunk_document, decode_document
from npc_runtime.knowledge.embed import Embedder
from npc_runtime.knowledge.errors import KnowledgeFileError
from npc_runtime.knowledge.store import KnowledgeStore

__all__ = ["IngestReport", "folder_signature", "ingest_folder", "list_documents"]

log = structlog.get_logger(__name__)

#: What tells that a folder changed: (relative path, mtime ns, size) of each file.
Signature = tuple[tuple[str, int, int], ...]
EMBED_GROUP = 64


@dataclass
class IngestReport:
    """What one ingest did to one scope. ``chunks``: chunks the scope holds afterwards;
    ``embedded``: chunks embedded by this ingest."""

    scope: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    chunks: int = 0
    seconds: float = 0.0
    embedded: int = 0

    @property
    def files(self) -> int:
        """Files the scope holds afterwards."""
        return self.added + self.updated + self.unchanged

    def summary(self) -> str:
        """``jin: 3 files (1 added, 0 updated, 2 unchanged, 0 removed), 14 chunks, 1 skipped: jin/photo.png (not a text document)``"""
        line = (f"{self.scope}: {self.files} files ({self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.removed} removed), {self.chunks} chunks")
        if self.skipped:
            line += f", {len(self.skipped)} skipped: " + ", ".join(f"{s} ({r})" for s, r in self.skipped)
        return line


@dataclass(frozen=True, slots=True)
class _Pending:
    source: str
    file_hash: str
    chunks: list[Chunk]
    new: bool


async def ingest_folder(store: KnowledgeStore, embedder: Embedder, scope: str, folder: Path, *, root: Path,
                        progress: Callable[[int, int], None] | None = None) -> IngestReport:
    """Bring ``scope`` in line with ``folder`` (a folder, or a single file); see the module doc.
    Sources are named relative to ``root`` (to the folder's parent when it is not under ``root``).
    ``progress(done_chunks, total_chunks)`` is called as chunks are embedded (first with done = 0).
    File I/O runs in a worker thread, the store and the embedder in their engine threads."""
    started = time.perf_counter()
    report = IngestReport(scope)
    listing = await asyncio.to_thread(list_documents, folder, root)
    stored = await store.file_hashes(scope)
    pending, present = await asyncio.to_thread(_plan, listing, stored, report)
    for source, reason in report.skipped:
        log.warning("knowledge_file_skipped", scope=scope, file=source, reason=reason)
    total = sum(len(p.chunks) for p in pending)
    if progress is not None:
        progress(0, total)
    for group in _groups(pending):
        vectors = await embedder.embed([c.text for p in group for c in p.chunks])
        offset = 0
        for item in group:
            count = len(item.chunks)
            await store.replace_file(scope, item.source, item.file_hash, item.chunks, vectors[offset:offset + count])
            offset += count
            report.embedded += count
            if item.new:
                report.added += 1
            else:
                report.updated += 1
        if progress is not None:
            progress(report.embedded, total)
    for source in sorted(stored.keys() - present):
        await store.delete_file(scope, source)
        report.removed += 1
    report.chunks = await store.count(scope)
    report.seconds = time.perf_counter() - started
    log.info("knowledge_ingested", scope=scope, added=report.added, updated=report.updated, unchanged=report.unchanged,
             removed=report.removed, skipped=len(report.skipped), chunks=report.chunks, embedded=report.embedded,
             seconds=round(report.seconds, 2))
    return report


def list_documents(folder: Path, root: Path) -> list[tuple[str, Path]]:
    """``(source, path)`` of every non-hidden file in ``folder`` (recursively; or ``folder`` itself
    when it is a file), sorted by source. Missing folder: ``[]``."""
    folder = Path(os.path.abspath(folder))
    base = Path(os.path.abspath(root))
    if not folder.is_relative_to(base):
        base = folder.parent
    if folder.is_file():
        return [(folder.relative_to(base).as_posix(), folder)]
    found: list[tuple[str, Path]] = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                path = Path(directory) / name
                found.append((path.relative_to(base).as_posix(), path))
    return sorted(found)


def folder_signature(folder: Path, root: Path | None = None) -> Signature:
    """``(source, mtime_ns, size)`` of each file :func:`list_documents` would see (cheap: stat only)."""
    signature: list[tuple[str, int, int]] = []
    for source, path in list_documents(folder, root if root is not None else folder):
        try:
            st = path.stat()
        except OSError:  # deleted between listing and stat
            continue
        signature.append((source, st.st_mtime_ns, st.st_size))
    return tuple(signature)


def _plan(listing: list[tuple[str, Path]], stored: dict[str, str],
          report: IngestReport) -> tuple[list[_Pending], set[str]]:
    """In a worker thread: hash every file, chunk the new and changed ones. Returns the files to
    embed and the sources that stay (unchanged or pending); fills ``unchanged`` and ``skipped``."""
    pending: list[_Pending] = []
    present: set[str] = set()
    for source, path in listing:
        try:
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise KnowledgeFileError(source, "not a text document")
            data = _read(path, source)
            file_hash = hashlib.sha256(data).hexdigest()
            if stored.get(source) == file_hash:
                report.unchanged += 1
                present.add(source)
                continue
            text, kind = decode_document(data, path)
            chunks = chunk_document(text, source, kind=kind)
            if not chunks:
                raise KnowledgeFileError(source, "no text")
        except KnowledgeFileError as exc:
            report.skipped.append((source, exc.reason))
            continue
        pending.append(_Pending(source, file_hash, chunks, new=source not in stored))
        present.add(source)
    return pending, present


def _read(path: Path, source: str) -> bytes:
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise KnowledgeFileError(source, f"larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB")
        return path.read_bytes()
    except OSError as exc:
        raise KnowledgeFileError(source, f"cannot read: {exc.strerror or type(exc).__name__}") from None


def _groups(pending: list[_Pending]) -> list[list[_Pending]]:
    """Consecutive files grouped so each group holds about ``EMBED_GROUP`` chunks (a big file alone)."""
    groups: list[list[_Pending]] = []
    current: list[_Pending] = []
    size = 0
    for item in pending:
        current.append(item)
        size += len(item.chunks)
        if size >= EMBED_GROUP:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups
