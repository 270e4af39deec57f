"""The personas a server serves, reloaded while it runs.

``PersonaRegistry`` loads a directory at construction, then (once started) polls it: every
``poll_interval`` seconds it stats the files (name, mtime, size, inode) and re-reads the changed ones in a
worker thread. A changed file that no longer loads is reported (a structlog error per problem, and
``errors()``) while the last good version keeps serving; a new file adds a persona; a deleted file removes
it. ``version(id)`` grows on every (re)load, so a session can notice that its persona changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from npc_runtime.errors import PersonaError, PersonaFileError
from npc_runtime.persona.loader import PersonaFile, duplicate_error, persona_files, read_persona_file
from npc_runtime.persona.schema import Persona

log = structlog.get_logger(__name__)

#: What tells a file changed: mtime (ns), size, inode (editors that save by renaming change it).
_Signature = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class _Served:
    persona: Persona
    path: str


class PersonaRegistry:
    """Personas by id from a directory of YAML files, hot-reloaded by polling.

    Construct it at start-up (the first load reads the files synchronously); ``await start()`` to begin
    polling and ``await aclose()`` to stop. Also an async context manager that does both.
    Raises ``PersonaError`` when ``directory`` is not a directory.
    """

    def __init__(self, directory: str | Path, *, poll_interval: float = 1.0) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self._directory = Path(directory)
        self._poll_interval = poll_interval
        self._signatures: dict[str, _Signature] = {}
        self._served: dict[str, _Served] = {}
        self._versions: dict[str, int] = {}
        self._errors: dict[str, tuple[PersonaFileError, ...]] = {}
        self._task: asyncio.Task[None] | None = None
        self._poll_problem: str | None = None
        self._lock = asyncio.Lock()
        signatures = self._scan()
        self._apply(signatures, [read_persona_file(p) for p in sorted(signatures)])

    # --- queries (cheap, no I/O) -----------------------------------------------------------------------

    def get(self, character_id: str) -> Persona:
        """The current persona for ``character_id``; raises ``PersonaError`` (code ``unknown_character``)."""
        served = self._served.get(character_id)
        if served is None:
            raise PersonaError(f"unknown character {character_id!r}", code="unknown_character")
        return served.persona

    def ids(self) -> list[str]:
        """The ids being served, sorted."""
        return sorted(self._served)

    def version(self, character_id: str) -> int:
        """A counter that grows each time ``character_id`` is (re)loaded; raises like ``get``."""
        self.get(character_id)
        return self._versions[character_id]

    def errors(self) -> list[PersonaFileError]:
        """The problems of the files that currently do not load (their last good version, if any, serves)."""
        return [e for path in sorted(self._errors) for e in self._errors[path]]

    # --- polling ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin polling the directory in a background task owned by this registry (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll_forever(), name=f"persona-registry:{self._directory}")

    async def aclose(self) -> None:
        """Stop polling: cancel the task and wait for it to end. Safe to call twice."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError

    async def __aenter__(self) -> PersonaRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def refresh(self) -> bool:
        """Check the directory once now and apply what changed; return whether anything did.

        Stat and file reads run in a worker thread. Cancel-safe: a cancelled refresh changes nothing.
        Raises ``PersonaError`` if the directory has gone (the polling task logs it and keeps serving).
        """
        async with self._lock:
            signatures = await asyncio.to_thread(self._scan)
            changed = {p for p, sig in signatures.items() if self._signatures.get(p) != sig}
            removed = self._signatures.keys() - signatures.keys()
            if not changed and not removed:
                return False
            if removed:  # a file that lost a duplicate-id clash may load now
                changed |= self._errors.keys() & signatures.keys()
            loaded = await asyncio.to_thread(lambda: [read_persona_file(p) for p in sorted(changed)])
            self._apply(signatures, loaded)
            return True

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self.refresh()
            except Exception as exc:  # keep serving; the next poll tries again (report each new problem once)
                if str(exc) != self._poll_problem:
                    unexpected = not isinstance(exc, PersonaError)
                    log.error(
                        "persona_poll_failed", directory=str(self._directory), error=str(exc), exc_info=unexpected
                    )
                self._poll_problem = str(exc)
            else:
                self._poll_problem = None

    # --- state changes (on the event loop, no I/O) --------------------------------------------------------

    def _scan(self) -> dict[str, _Signature]:
        signatures: dict[str, _Signature] = {}
        for path in persona_files(self._directory):
            with contextlib.suppress(OSError):  # deleted between listing and stat
                st = os.stat(path)
                signatures[str(path)] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return signatures

    def _apply(self, signatures: dict[str, _Signature], loaded: list[PersonaFile]) -> None:
        for path in sorted(self._signatures.keys() - signatures.keys()):
            self._remove(path)
        self._signatures = signatures
        for item in loaded:
            self._load(item)

    def _remove(self, path: str) -> None:
        self._errors.pop(path, None)
        for character_id, served in list(self._served.items()):
            if served.path == path:
                del self._served[character_id]
                log.info("persona_removed", character=character_id, path=path)

    def _load(self, item: PersonaFile) -> None:
        persona = item.persona
        if persona is not None:
            owner = self._served.get(persona.id)
            if owner is not None and owner.path != item.path:
                item = PersonaFile(item.path, None, (duplicate_error(item, owner.path),), item.id_line)
        if item.persona is None:
            self._errors[item.path] = item.errors
            kept = [cid for cid, s in self._served.items() if s.path == item.path]
            for error in item.errors:
                log.error(
                    "persona_invalid", error=str(error), path=item.path, line=error.line, field=error.field, serving=kept
                )
            return
        self._errors.pop(item.path, None)
        for character_id, served in list(self._served.items()):  # the file now holds another id
            if served.path == item.path and character_id != item.persona.id:
                del self._served[character_id]
        self._served[item.persona.id] = _Served(item.persona, item.path)
        self._versions[item.persona.id] = self._versions.get(item.persona.id, 0) + 1
        log.info("persona_loaded", character=item.persona.id, path=item.path, version=self._versions[item.persona.id])
