"""Conversation memory per (partner, character), kept across server restarts: in SQLite (one server,
:class:`MemoryStore`, the default) or PostgreSQL (shared by several servers: ``memory.postgres.PostgresMemoryStore``,
imported only when used); both are a :class:`Memory`, with the same behaviour.

``partner`` is the player id, or, in an NPC-to-NPC conversation, the other character's id: what
a character hears goes into *its* memory only, under the speaker as partner. :meth:`MemoryStore.recall`
gives the recent entries verbatim and a rolling summary of the older ones (a session turns both into
fact lines with :func:`remembered`: the character's earlier words never reach its prompt); :meth:`MemoryStore.append`
stores a turn's entries and folds those beyond ``keep_recent`` into the summary with a
:class:`Summarizer` (:class:`ExtractiveSummarizer` by default: deterministic, no model).

This package sits below :mod:`npc_runtime.dialogue` and never imports it: :class:`MemoryEntry`
mirrors ``dialogue.prompt.HistoryEntry`` plus a time.
"""

from __future__ import annotations

from npc_runtime.memory.base import Memory
from npc_runtime.memory.records import KINDS, MemoryEntry, Recall, Summarizer
from npc_runtime.memory.store import MemoryStore
from npc_runtime.memory.summary import ExtractiveSummarizer, remembered, statements

__all__ = ["KINDS", "ExtractiveSummarizer", "Memory", "MemoryEntry", "MemoryStore", "Recall", "Summarizer", "remembered", "statements"]
