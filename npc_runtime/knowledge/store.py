"""Chunks and their embeddings in Chroma: one collection per scope, cosine space.

A scope is ``"world"``, a character id, or ``"src_<8 hex>"`` for an extra source; its collection
is ``knowledge_<scope>``. Each chunk is stored under its id (``source#index``) with the metadata
``source``, ``heading``, ``index`` and ``file_hash`` (sha256 of the file's bytes), so an ingest
can tell which files changed without reading the chunks. Chroma's own embedding function is
never used (it would download a model): vectors always come from our embedder.

Every Chroma call runs in this store's engine thread (``chroma``): the client is not known to be
thread-safe, and its calls block (disk, HTTP). Errors: ``knowledge_unavailable`` (retryable)
when the server cannot be reached or the store is closed, ``knowledge_failed`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from npc_runtime.engine_thread import EngineThread
from npc_runtime.errors import NpcError
from npc_runtime.knowledge.chunk import Chunk
from npc_runtime.knowledge.errors import KnowledgeError, KnowledgeUnavailable

__all__ = ["KnowledgeStore", "Passage", "collection_name"]

T = TypeVar("T")
_NAME_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_SCOPE_OK = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved chunk. ``score``: cosine similarity to the query, in [-1, 1]."""

    text: str
    source: str
    heading: str
    score: float


def collection_name(scope: str) -> str:
    """``knowledge_<scope>``; a scope Chroma would reject as a name (one ending in ``_``) gets a
    ``-<hash>`` suffix (ids cannot hold ``-``, so it cannot collide)."""
    if not _SCOPE_OK.match(scope):
        raise ValueError(f"invalid knowledge scope {scope!r}: lowercase letters, digits and '_'")
    name = f"knowledge_{scope}"
    return name if _NAME_OK.match(name) else f"{name}-{hashlib.sha256(scope.encode()).hexdigest()[:8]}"


class KnowledgeStore:
    """A Chroma client: local (``path``, a directory created if missing) or a server (``url``,
    e.g. ``http://127.0.0.1:8000``). ``open()`` connects; the other methods open on first use."""

    def __init__(self, *, path: Path | None = None, url: str | None = None, thread_name: str = "chroma") -> None:
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path and url")
        self.path, self.url = path, url
        self.where = url or str(path)
        self._thread = EngineThread(thread_name, closed_error=lambda m: KnowledgeUnavailable(m),
                                    failure=lambda m: KnowledgeError(m))
        self._open_lock = asyncio.Lock()
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._closed = False

    async def open(self) -> None:
        """Connect (a server: check its heartbeat). Raises ``KnowledgeUnavailable`` when it cannot."""
        if self._closed:
            raise KnowledgeUnavailable("the knowledge store is closed")
        if self._client is not None:
            return
        async with self._open_lock:
            if self._client is None:
                self._client = await self._call(self._connect)

    async def file_hashes(self, scope: str) -> dict[str, str]:
        """``source -> file_hash`` of every file stored in ``scope`` (empty for an unknown scope)."""
        return await self._run(self._file_hashes, scope)

    async def replace_file(self, scope: str, source: str, file_hash: str, chunks: Sequence[Chunk],
                           embeddings: Sequence[Sequence[float]]) -> None:
        """Store ``source``'s new chunks, then drop its old ones past the new count (a reader sees
        the old or the new text of each chunk, never a gap)."""
        if len(chunks) != len(embeddings):
            raise ValueError("one embedding per chunk")
        if any(chunk.source != source for chunk in chunks):
            raise ValueError("every chunk must come from source")
        await self._run(self._replace_file, scope, source, file_hash, list(chunks), [list(e) for e in embeddings])

    async def delete_file(self, scope: str, source: str) -> None:
        await self._run(self._delete_file, scope, source)

    async def query(self, scope: str, embedding: Sequence[float], k: int) -> list[Passage]:
        """The ``k`` chunks of ``scope`` nearest to ``embedding``, best first ([] for an unknown scope)."""
        return await self._run(self._query, scope, list(embedding), k)

    async def count(self, scope: str) -> int:
        """How many chunks ``scope`` holds (0 for an unknown scope)."""
        return await self._run(self._count, scope)

    async def aclose(self) -> None:
        """Close the client and end the thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._thread.aclose(self._close_client)

    # --- on the loop -----------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        await self.open()
        return await self._call(fn, *args)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._thread.call(fn, *args)
        except NpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - no exception text: it may quote a document
            if self.url is not None and _unreachable(exc):
                raise KnowledgeUnavailable(f"the Chroma server at {self.url} cannot be reached") from exc
            raise KnowledgeError(f"the knowledge store failed: {type(exc).__name__}") from exc

    # --- in the engine thread --------------------------------------------------------------------------

    def _connect(self) -> Any:
        import chromadb  # noqa: PLC0415 - the engine library, loaded in its thread
        from chromadb.config import Settings  # noqa: PLC0415

        settings = Settings(anonymized_telemetry=False)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(self.path), settings=settings)
        parts = urlsplit(self.url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise KnowledgeUnavailable(f"the Chroma URL {self.url!r} is not http(s)://host:port")
        port = parts.port or (443 if parts.scheme == "https" else 8000)
        try:
            client = chromadb.HttpClient(host=parts.hostname, port=port, ssl=parts.scheme == "https", settings=settings)
            client.heartbeat()
        except Exception as exc:  # noqa: BLE001 - the constructor itself connects
            raise KnowledgeUnavailable(f"the Chroma server at {self.url} cannot be reached") from exc
        return client

    def _collection(self, scope: str, *, create: bool) -> Any:
        collection = self._collections.get(scope)
        if collection is not None:
            return collection
        name = collection_name(scope)
        if create:
            collection = self._client.get_or_create_collection(
                name, embedding_function=None, metadata={"hnsw:space": "cosine", "scope": scope})
        else:
            from chromadb.errors import NotFoundError  # noqa: PLC0415

            try:
                collection = self._client.get_collection(name, embedding_function=None)
            except NotFoundError:
                return None
        self._collections[scope] = collection
        return collection

    def _file_hashes(self, scope: str) -> dict[str, str]:
        collection = self._collection(scope, create=False)
        if collection is None:
            return {}
        metadatas = collection.get(include=["metadatas"])["metadatas"] or []
        return {str(m["source"]): str(m["file_hash"]) for m in metadatas if m and "source" in m}

    def _replace_file(self, scope: str, source: str, file_hash: str, chunks: list[Chunk],
                      embeddings: list[list[float]]) -> None:
        collection = self._collection(scope, create=True)
        step = max(1, self._client.get_max_batch_size())
        for start in range(0, len(chunks), step):
            batch = chunks[start:start + step]
            collection.upsert(
                ids=[c.id for c in batch], embeddings=embeddings[start:start + step], documents=[c.text for c in batch],
                metadatas=[{"source": source, "heading": c.heading, "index": c.index, "file_hash": file_hash} for c in batch])
        collection.delete(where={"$and": [{"source": source}, {"index": {"$gte": len(chunks)}}]})

    def _delete_file(self, scope: str, source: str) -> None:
        collection = self._collection(scope, create=False)
        if collection is not None:
            collection.delete(where={"source": source})

    def _query(self, scope: str, embedding: list[float], k: int) -> list[Passage]:
        collection = self._collection(scope, create=False)
        if collection is None or k <= 0:
            return []
        result = collection.query(query_embeddings=[embedding], n_results=k,
                                  include=["documents", "metadatas", "distances"])
        documents = (result.get("documents") or [[]])[0]
        metadatas = (result.get("metadatas") or [[]])[0]
        distances = (result.get("distances") or [[]])[0]
        return [Passage(text=doc or "", source=str((meta or {}).get("source", "")),
                        heading=str((meta or {}).get("heading", "")), score=1.0 - float(dist))
                for doc, meta, dist in zip(documents, metadatas, distances, strict=True)]

    def _count(self, scope: str) -> int:
        collection = self._collection(scope, create=False)
        return 0 if collection is None else int(collection.count())

    def _close_client(self) -> None:
        client, self._client = self._client, None
        self._collections.clear()
        if client is not None:
            _close_client(client)


def _close_client(client: Any) -> None:
    """``client.close()``, then what chromadb 1.5 leaves behind for an HTTP client: the connection
    pools of the systems that close stopped (its own and its admin client's) and the registry
    entry its admin client adds for the client's system. Systems still shared stay untouched."""
    from chromadb.api.shared_system_client import SharedSystemClient  # noqa: PLC0415

    registry = SharedSystemClient._identifier_to_system
    owners = [c for c in (client, getattr(client, "_admin_client", None)) if c is not None]
    systems = {id(registry[c._identifier]): registry[c._identifier] for c in owners if c._identifier in registry}
    sessions = [(c._identifier, getattr(getattr(c, "_server", None), "_session", None)) for c in owners]
    client.close()
    for identifier, session in sessions:
        if session is not None and identifier not in registry:  # that system was stopped
            with contextlib.suppress(Exception):
                session.close()
    for identifier, system in list(registry.items()):
        if id(system) in systems and all(c._identifier not in registry for c in owners):
            registry.pop(identifier, None)


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the server could not be reached."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name, module = type(current).__name__, type(current).__module__
        if isinstance(current, (ConnectionError, TimeoutError)) or "Connect" in name or "Timeout" in name:
            return True
        if module.startswith(("httpx", "httpcore")) and any(
                base.__name__ in ("TransportError", "NetworkError") for base in type(current).__mro__):
            return True
        if "could not connect" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False
