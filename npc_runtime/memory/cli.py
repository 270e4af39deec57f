"""``npc memory show|forget``: what characters remember of a partner, and forgetting it."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Literal

from npc_runtime.errors import NpcError
from npc_runtime.memory.base import Memory
from npc_runtime.memory.records import MemoryEntry
from npc_runtime.memory.store import MemoryStore


def memory_main(action: Literal["show", "forget"], partner: str, character: str | None, *, path: Path | None = None,
                url: str | None = None, all_entries: bool = False) -> int:
    """Run one memory command on the SQLite database at ``path``, or the PostgreSQL database at ``url``; return
    the exit status.

    ``show`` prints, per character, the summary and the recent entries (every entry with
    ``all_entries``); ``forget`` deletes the partner's memory (of ``character`` only, when given).
    A database that cannot be opened or reached is a one-line error and status 1. A missing SQLite file is
    nothing remembered: it is not created."""
    if action not in ("show", "forget"):
        raise ValueError(f"unknown memory action {action!r}")
    if (path is None) == (url is None):
        raise ValueError("give the SQLite path or the PostgreSQL URL")
    try:
        return asyncio.run(_memory(action, partner, character, None if path is None else Path(path), url,
                                   all_entries=all_entries))
    except NpcError as exc:
        print(f"npc memory: {exc.message}", file=sys.stderr)
        return 1


async def _memory(action: str, partner: str, character: str | None, path: Path | None, url: str | None, *,
                  all_entries: bool) -> int:
    store: Memory
    if url is not None:
        from npc_runtime.memory.postgres import PostgresMemoryStore  # noqa: PLC0415 - asyncpg only for a PostgreSQL URL

        store = PostgresMemoryStore(url, pool_size=1, write_attempts=1)
    else:
        assert path is not None
        if not path.exists():
            print(f"nothing remembered for {partner}" if action == "show" else f"forgot 0 entries of {partner}")
            return 0
        store = MemoryStore(path)
    await store.open()
    try:
        pairs = await store.partners(character, partner=partner)
        if action == "forget":
            await store.forget(partner, character)
            entries = sum(n for _, _, n in pairs)
            whom = f" by {character}" if character else ""
            print(f"forgot {entries} {'entry' if entries == 1 else 'entries'} of {partner}{whom}")
            return 0
        if not pairs:
            print(f"nothing remembered for {partner}")
            return 0
        for i, (_, char, _) in enumerate(pairs):
            if i:
                print()
            await _show_pair(store, partner, char, all_entries=all_entries)
        return 0
    finally:
        await store.aclose()


async def _show_pair(store: Memory, partner: str, character: str, *, all_entries: bool) -> None:
    recall = await store.recall(partner, character)
    shown = await store.history(partner, character) if all_entries else recall.recent
    print(f"{character} remembers {partner}: {recall.total} {'entry' if recall.total == 1 else 'entries'}")
    if recall.summary:
        print("  summary:")
        for line in recall.summary.splitlines():
            print(f"    {line}")
    hidden = recall.total - len(shown)
    if hidden > 0:
        print(f"  ({hidden} older {'entry' if hidden == 1 else 'entries'} not shown)")
    for entry in shown:
        print(f"  {_when(entry.at)}  {_line(entry, character)}")


def _line(entry: MemoryEntry, character: str) -> str:
    if entry.kind == "player":
        return f"player> {entry.text}"
    if entry.kind == "character":
        return f"{character}> {entry.text}"
    return f"(event) {entry.text}"


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
