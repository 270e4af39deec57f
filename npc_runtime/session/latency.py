"""The latency policy, as pure functions: when the filler plays, when a late reply is shortened, how long
retrieval may take, which stage missed the budget, what the prompt is given of the history.

Every time here is in ms on the response's timeline (0 = the player finished: the text arrived, or the voice
ended); ``budget_ms`` is the persona's time-to-first-audio target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from npc_runtime.dialogue.prompt import HistoryEntry

#: The filler plays when there is nothing to say yet at this share of the budget.
FILLER_AT = 0.75
#: A turn that waited for the model at least this share of the budget (behind other sessions' turns) may be shortened.
WAITED_SHARE = 0.25


def history_window(history: Sequence[HistoryEntry]) -> tuple[HistoryEntry, ...]:
    """The entries a turn's prompt is given: the whole conversation. The prompt shapes it
    (:func:`npc_runtime.dialogue.history.shape_history`: the last few replies as chat turns, older lines folded into
    facts, the cut moving in blocks counted from the conversation's start — so a turn's prompt extends the previous
    one's and the engine's saved context still matches; a window that slid here every turn broke that: issue 18)."""
    return tuple(history)


def filler_delay_ms(budget_ms: float, elapsed_ms: float) -> float:
    """How long from now until the filler point (0: it has passed)."""
    return max(0.0, FILLER_AT * budget_ms - elapsed_ms)


def late_reply_cap(cap: int | None, *, waited_ms: float, elapsed_ms: float, budget_ms: float) -> int | None:
    """The reply's token cap when the model takes the turn: ``cap`` (the persona's ``late_max_tokens``) for a turn
    that waited behind other sessions' turns (a quarter of the budget or more) and is past the filler point, so the
    player hears the answer sooner and the turns behind it wait less; else None. A turn that is late for another
    reason (a slow transcript) and did not wait is not cut: a shorter reply would not bring its first audio sooner."""
    if cap is None or waited_ms < WAITED_SHARE * budget_ms or elapsed_ms < FILLER_AT * budget_ms:
        return None
    return cap


def retrieval_budget_ms(configured_ms: float, left_ms: float) -> float | None:
    """How long knowledge retrieval may take with ``left_ms`` of the budget left; None: over budget already (slow
    recognition), answer without passages."""
    if left_ms <= 0:
        return None
    return min(configured_ms, max(20.0, 0.2 * left_ms))


def budget_cause(timings: Mapping[str, float], budget_ms: float, *, completed: bool, audio: bool) -> str | None:
    """None when the player got something (its first audio, or its first text without audio) within the budget, or
    the response did not complete; else the stage that took longest: asr, retrieval, queue (waiting for the model:
    other sessions' turns), llm (reading the prompt, the first clause), tts."""
    if not completed:
        return None
    first = timings.get("first_audio") if audio else timings.get("first_text")
    if first is not None and first <= budget_ms:
        return None
    asr = timings.get("transcript_final", 0.0)
    retrieved = timings.get("retrieval", asr)
    # the LLM's share runs until the first speakable clause is complete (or the first text, without audio)
    clause = timings.get("first_clause", timings.get("first_text", timings.get("first_token", retrieved)))
    admitted = timings.get("llm_start", retrieved)
    stages = {"asr": asr, "retrieval": retrieved - asr, "queue": admitted - retrieved, "llm": clause - admitted,
              "tts": (first - clause) if first is not None else 0.0}
    return max(stages, key=lambda k: stages[k])


def cap_chars(texts: Sequence[str], limit: int) -> list[str]:
    """The passages, best first, within ``limit`` characters in all (the last one cut at a word)."""
    out: list[str] = []
    left = limit
    for text in texts:
        if left <= 40:
            break
        if len(text) > left:
            text = text[:left].rsplit(" ", 1)[0] + "…"
        out.append(text)
        left -= len(text)
    return out


def retrieval_query(player_text: str, prior: Sequence[HistoryEntry]) -> str:
    """What to look up: the player's words; a short follow-up ("why?") with the line it follows."""
    if len(player_text.split()) >= 6:
        return player_text
    last = next((h.text for h in reversed(prior) if h.kind == "character"), "")
    return f"{last} {player_text}".strip()
