"""The conversation so far, shaped so the model does not copy itself. Pure.

A small model copies its own earlier replies: fed a dozen of them it answers with a thirteenth variant of the same
line ("I'm sorry, I can't carry them."). So only the character's last few replies stay as chat turns (``replies``,
per prompt profile), each at most once (an exact repeat shows only the newest), and what came before them is
folded into facts — what the player said about themselves or asked for, what the character gave or promised,
notable events (memory's extractive rules, :func:`npc_runtime.memory.summary.facts`) — never the character's words.
"""

from __future__ import annotations

from collections.abc import Sequence

from npc_runtime.dialogue.parts import HistoryEntry
from npc_runtime.memory.records import MemoryEntry
from npc_runtime.memory.summary import facts


def shape_history(history: Sequence[HistoryEntry], *, replies: int, partner_name: str) -> tuple[list[str], list[HistoryEntry]]:
    """``(facts of the older entries, the entries kept as chat turns)``: the kept part starts after the character's
    reply that comes ``replies + 1``-th from the end; repeated replies in it are shown once (the newest)."""
    said = [i for i, entry in enumerate(history) if entry.kind == "character"]
    cut = said[-replies - 1] + 1 if len(said) > replies else 0
    older, kept = history[:cut], list(history[cut:])
    earlier: list[str] = []
    for entry in older:
        for fact in facts(MemoryEntry(entry.kind, entry.text), partner_name=partner_name):
            if fact not in earlier:
                earlier.append(fact)
    return earlier, _without_repeats(kept)


def _without_repeats(entries: list[HistoryEntry]) -> list[HistoryEntry]:
    seen: set[str] = set()
    out: list[HistoryEntry] = []
    for entry in reversed(entries):
        key = " ".join(entry.text.casefold().split())
        if entry.kind == "character":
            if key in seen:
                continue
            seen.add(key)
        out.append(entry)
    return out[::-1]
