"""``npc ingest``: bring the knowledge store up to date with the knowledge folder (incremental)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from npc_runtime.errors import PersonaError
from npc_runtime.knowledge.base import KnowledgeBase, PersonaLike
from npc_runtime.knowledge.embed import MiniLMEmbedder
from npc_runtime.knowledge.errors import KnowledgeError, KnowledgeUnavailable
from npc_runtime.knowledge.ingest import IngestReport, ingest_folder
from npc_runtime.knowledge.store import KnowledgeStore
from npc_runtime.persona.loader import load_dir

__all__ = ["STORE_DIRNAME", "ingest_main"]

#: The local store lives in ``<data_dir>/chroma`` (what the server opens too).
STORE_DIRNAME = "chroma"


def ingest_main(*, root: Path, character: str | None, characters_dir: Path, data_dir: Path, chroma_url: str | None) -> int:
    """Ingest the scopes of every persona (of ``character`` only, when given) and ``world`` (unless
    the chosen character opts out of it); a progress bar on stderr, one summary line per scope on
    stdout. Returns 0, or 1 with a one-line message (unreachable store, unknown character)."""
    try:
        personas, errors = load_dir(characters_dir)
    except PersonaError as exc:
        print(f"npc ingest: {exc.message}", file=sys.stderr)
        return 1
    for error in errors:
        print(f"npc ingest: skipping a persona file: {error}", file=sys.stderr)
    if character is not None:
        if character not in personas:
            known = ", ".join(sorted(personas)) or "none"
            print(f"npc ingest: unknown character {character!r} (known: {known})", file=sys.stderr)
            return 1
        selected: list[PersonaLike] = [personas[character]]
    else:
        selected = list(personas.values())
    store = KnowledgeStore(url=chroma_url) if chroma_url else KnowledgeStore(path=Path(data_dir) / STORE_DIRNAME)
    try:
        reports = asyncio.run(_ingest(Path(root), selected, store, with_world=character is None))
    except KnowledgeUnavailable as exc:
        print(f"npc ingest: {exc.message}", file=sys.stderr)
        return 1
    except KnowledgeError as exc:
        print(f"npc ingest: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    for report in reports:
        print(report.summary())
    return 0


async def _ingest(root: Path, personas: Sequence[PersonaLike], store: KnowledgeStore, *,
                  with_world: bool) -> list[IngestReport]:
    base = KnowledgeBase(root, store, MiniLMEmbedder())  # the model loads only if something must be embedded
    try:
        await store.open()
        scopes = dict(scope for persona in personas for scope in base.scopes_for(persona))
        if with_world:
            scopes.setdefault("world", root / "world")
        reports = []
        for scope, folder in scopes.items():
            with tqdm(total=0, desc=scope, unit="chunk", file=sys.stderr, leave=False, disable=None) as bar:
                def progress(done: int, total: int, bar: tqdm = bar) -> None:
                    bar.total, bar.n = total, done
                    bar.refresh()

                reports.append(await ingest_folder(store, base.embedder, scope, folder, root=root, progress=progress))
        return reports
    finally:
        await base.aclose()
