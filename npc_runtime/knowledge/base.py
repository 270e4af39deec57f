"""The knowledge base the runtime uses: per-character scopes, kept in sync, searched per turn.

A character's knowledge is the union of its scopes (:meth:`KnowledgeBase.scopes_for`): its own
folder ``<root>/<id>/``, the shared ``<root>/world/`` (unless ``use_world_knowledge`` is off),
and each extra source its persona lists (a folder or a file; relative to the root, or absolute).
``start()`` ingests them all, then a polling task owned by the base re-ingests a scope whenever a
file in its folder changed (mtime or size), appeared or went away: edits are picked up without a
restart. ``retrieve()`` never raises: late or broken retrieval answers no passages with a warning, so
a turn goes on without them; the answer is a :class:`Retrieval` (a list of passages) whose ``outcome``
tells "nothing relevant" (``empty``) from "could not look" (``late``, ``failed``).

The base owns the store and the embedder it is given: ``aclose()`` stops the polling, then
closes both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, Protocol

import structlog

from npc_runtime.errors import NpcError
from npc_runtime.knowledge.embed import Embedder
from npc_runtime.knowledge.ingest import IngestReport, Signature, folder_signature, ingest_folder
from npc_runtime.knowledge.store import KnowledgeStore, Passage

__all__ = ["KnowledgeBase", "PersonaLike", "Retrieval", "source_scope"]

log = structlog.get_logger(__name__)

#: ``progress(scope, done_chunks, total_chunks)`` during :meth:`KnowledgeBase.sync`.
SyncProgress = Callable[[str, int, int], None]


Outcome = Literal["found", "empty", "late", "failed"]


class Retrieval(list[Passage]):
    """The passages of one lookup (a plain list of them, best first) and how the lookup went:
    ``found`` (passages), ``empty`` (looked, nothing relevant enough), ``late`` (over its time budget:
    given up), ``failed`` (the store or the embedder failed, e.g. Chroma unreachable: ``error`` says why)."""

    def __init__(self, passages: Iterable[Passage] = (), outcome: Outcome | None = None, error: str | None = None) -> None:
        super().__init__(passages)
        self.outcome: Outcome = outcome or ("found" if self else "empty")
        self.error = error


class PersonaLike(Protocol):
    """What the knowledge base reads of a persona (``npc_runtime.persona.schema.Persona`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def knowledge(self) -> Sequence[str]: ...
    @property
    def use_world_knowledge(self) -> bool: ...


def source_scope(path: Path) -> str:
    """The scope of an extra knowledge source: ``src_`` + 8 hex of its absolute path."""
    return "src_" + hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:8]


class KnowledgeBase:
    """Knowledge folders under ``root``, ingested into ``store`` with ``embedder`` (see the module doc)."""

    def __init__(self, root: Path, store: KnowledgeStore, embedder: Embedder, *, poll_s: float = 2.0) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self.root = Path(root)
        self.store, self.embedder = store, embedder
        self.poll_s = poll_s
        self._signatures: dict[str, Signature] = {}  # scope -> its folder when it was last ingested
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._poll_problem: str | None = None
        self._closed = False

    def scopes_for(self, persona: PersonaLike) -> list[tuple[str, Path]]:
        """``(scope, folder)`` pairs of a persona, in order: its own, world, its extra sources."""
        scopes = [(persona.id, self.root / persona.id)]
        if persona.use_world_knowledge:
            scopes.append(("world", self.root / "world"))
        for entry in persona.knowledge:
            path = Path(entry).expanduser()
            path = Path(os.path.normpath(path if path.is_absolute() else Path(os.path.abspath(self.root)) / path))
            scopes.append((source_scope(path), path))
        return list(dict.fromkeys(scopes))

    async def sync(self, personas: Iterable[PersonaLike], *, progress: SyncProgress | None = None) -> list[IngestReport]:
        """Ingest every scope of ``personas`` (each scope once). Raises ``KnowledgeUnavailable``
        when the store cannot be reached or the embedder cannot load."""
        scopes = dict(scope for persona in personas for scope in self.scopes_for(persona))
        async with self._lock:
            return [await self._ingest(scope, folder, progress) for scope, folder in scopes.items()]

    async def start(self, personas_provider: Callable[[], Iterable[PersonaLike]]) -> None:
        """Start the polling task (owned by this base), then open the store, warm the embedder and
        ingest every scope. If that raises (an unreachable server), the polling goes on trying."""
        if self._closed:
            raise RuntimeError("the knowledge base is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._poll_forever(personas_provider), name="knowledge-poll")
        await self.store.open()
        await self.embedder.warm()
        await self.sync(personas_provider())

    async def retrieve(self, persona: PersonaLike, query: str, *, k: int = 3, budget_ms: float = 150.0,
                       min_score: float = 0.25) -> Retrieval:
        """The ``k`` passages of the persona's scopes most similar to ``query`` (score >= ``min_score``),
        best first, duplicates dropped. Everything runs under a ``budget_ms`` deadline: late or failed
        retrieval gives no passages and a warning, never an exception; its :class:`Retrieval` says
        ``late`` or ``failed``. Cancel-safe (a cancelled embed or query finishes in its engine thread;
        its result is dropped)."""
        if k <= 0 or not query.strip():
            return Retrieval()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(budget_ms / 1000):
                [vector] = await self.embedder.embed([query])
                found: list[Passage] = []
                for scope, _folder in self.scopes_for(persona):
                    found.extend(await self.store.query(scope, vector, k))
        except TimeoutError:
            log.warning("knowledge_retrieve_late", character=persona.id, budget_ms=budget_ms)
            return Retrieval(outcome="late")
        except NpcError as exc:
            log.warning("knowledge_retrieve_failed", character=persona.id, code=exc.code, error=exc.message)
            return Retrieval(outcome="failed", error=exc.code)
        except Exception as exc:  # noqa: BLE001 - retrieval never fails a turn
            log.warning("knowledge_retrieve_failed", character=persona.id, error=type(exc).__name__)
            return Retrieval(outcome="failed", error=type(exc).__name__)
        passages = _best(found, k, min_score)
        log.debug("knowledge_retrieved", character=persona.id, passages=len(passages),
                  top=round(passages[0].score, 3) if passages else None, ms=round((time.perf_counter() - started) * 1000, 1))
        return Retrieval(passages)

    async def aclose(self) -> None:
        """Stop polling, close the store and the embedder; idempotent."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.store.aclose()
        await self.embedder.aclose()

    # --- internals ---------------------------------------------------------------------------------------

    async def _ingest(self, scope: str, folder: Path, progress: SyncProgress | None) -> IngestReport:
        signature = await asyncio.to_thread(folder_signature, folder)  # before: a change during the ingest shows next poll
        on_progress = None if progress is None else (lambda done, total: progress(scope, done, total))
        report = await ingest_folder(self.store, self.embedder, scope, folder, root=self.root, progress=on_progress)
        self._signatures[scope] = signature
        return report

    async def poll_once(self, personas: Iterable[PersonaLike]) -> list[IngestReport]:
        """Re-ingest the scopes whose folder changed since their last ingest (new scopes included)."""
        scopes = dict(scope for persona in personas for scope in self.scopes_for(persona))
        reports = []
        async with self._lock:
            for scope, folder in scopes.items():
                if await asyncio.to_thread(folder_signature, folder) != self._signatures.get(scope):
                    reports.append(await self._ingest(scope, folder, None))
        return reports

    async def _poll_forever(self, personas_provider: Callable[[], Iterable[PersonaLike]]) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll_once(list(personas_provider()))
            except Exception as exc:  # keep polling; report each new problem once
                problem = exc.message if isinstance(exc, NpcError) else type(exc).__name__
                if problem != self._poll_problem:
                    log.warning("knowledge_poll_failed", error=problem, code=getattr(exc, "code", None),
                                exc_info=not isinstance(exc, NpcError))
                self._poll_problem = problem
            else:
                self._poll_problem = None


def _best(passages: Iterable[Passage], k: int, min_score: float) -> list[Passage]:
    kept: list[Passage] = []
    seen: set[str] = set()
    for passage in sorted(passages, key=lambda p: p.score, reverse=True):
        key = " ".join(passage.text.split())
        if passage.score < min_score or key in seen:
            continue
        seen.add(key)
        kept.append(passage)
        if len(kept) == k:
            break
    return kept
