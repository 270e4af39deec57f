"""The conversation so far, shaped so the model does not copy itself and the engine's cached context stays valid.
Pure.

A small model copies its own earlier replies: fed a dozen of them it answers with a thirteenth variant of the same
line ("I'm sorry, I can't carry them."). So only the character's last few replies stay as chat turns (``replies``,
per prompt profile), each at most once (an exact repeat shows only the newest), and what came before them is
folded into facts — what the player said about themselves or asked for, what the character gave or promised,
notable events (memory's extractive rules, :func:`npc_runtime.memory.summary.facts`) — never the character's words.

**The window slides in blocks.** A window that moved by one turn every turn changed the prompt right after the
persona prefix on every turn (the oldest chat turn left, its facts joined the "earlier" lines), so the engine
re-read the whole history each turn instead of only the new lines (issue 18). The cut now moves ``block`` replies
at a time, counted from the start of the conversation: between two moves a turn's prompt is the previous turn's
prompt plus the new lines (the engine's saved context matches it), and the kept part holds ``replies`` to
``replies + block - 1`` of the character's replies. The facts come from the ``facts_replies`` replies before the cut
(that window moves with the cut). The cut counts replies from the first entry it is
given: it is stable only when it is given the whole conversation (a caller that passes a sliding slice gets the old,
every-turn slide).
"""

from __future__ import annotations

from collections.abc import Sequence

from npc_runtime.dialogue.parts import HistoryEntry
from npc_runtime.memory.records import MemoryEntry
from npc_runtime.memory.summary import facts

#: The kept part moves this many replies at a time (it holds ``replies`` to ``replies + BLOCK - 1`` replies).
BLOCK = 3
#: The earlier facts come from this many replies before the cut.
FACTS_REPLIES = 6
#: Bounds for a conversation of many entries and few replies (events, other characters' lines): the kept part keeps
#: at most this many entries, the earlier lines at most this many facts (the newest).
MAX_KEPT_ENTRIES = 24
MAX_FACTS = 16


def history_cut(history: Sequence[HistoryEntry], *, replies: int, block: int = BLOCK,
                facts_replies: int = FACTS_REPLIES) -> tuple[int, int]:
    """``(start, cut)``: the facts come from ``history[start:cut]``, the chat turns are ``history[cut:]``. Both move
    only when the number of the character's replies crosses ``replies + k * block``."""
    said = [i for i, entry in enumerate(history) if entry.kind == "character"]
    folded = block * ((len(said) - replies) // block) if len(said) > replies else 0
    cut = said[folded - 1] + 1 if folded else 0
    first = max(0, folded - facts_replies)
    start = said[first - 1] + 1 if first else 0
    return start, max(cut, len(history) - MAX_KEPT_ENTRIES)


def shape_history(history: Sequence[HistoryEntry], *, replies: int, partner_name: str, block: int = BLOCK,
                  facts_replies: int = FACTS_REPLIES) -> tuple[list[str], list[HistoryEntry]]:
    """``(facts of the older entries, the entries kept as chat turns)``: see the module docstring for the cut;
    repeated replies in the kept part are shown once (the newest)."""
    start, cut = history_cut(history, replies=replies, block=block, facts_replies=facts_replies)
    older, kept = history[start:cut], list(history[cut:])
    earlier: list[str] = []
    for entry in older:
        for fact in facts(MemoryEntry(entry.kind, entry.text), partner_name=partner_name):
            if fact not in earlier:
                earlier.append(fact)
    return earlier[-MAX_FACTS:], _without_repeats(kept)


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
