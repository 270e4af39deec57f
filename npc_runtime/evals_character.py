"""The conversation-quality eval: cases over the shipped characters (``tests/data/character_eval.jsonl``),
each run as one turn on a real engine and scored by rule checks. Used by ``scripts/eval_character.py``.

A case (one JSON object a line, :class:`CharacterCase`) gives a character, a scene, what the character
remembers of the player (``memory``: lines in the shape memory's summary has), the passages retrieval
hands over (``facts``), earlier turns (``history``), then this turn: what the player says (``say``)
and/or a game event the character reacts to (``event``), and what is expected (:class:`Expect`).

The rule checks are pure functions of the reply; a check the case does not ask for scores ``None``:

=============  ==========================================================================================
``valid``      every emitted action is valid in the scene and no tag was dropped (always; 100% by the grammar)
``action``     every ``must`` action appears and nothing outside ``must + allow`` (when ``must`` is given)
``no_ai``      the reply never talks like a model: :data:`AI_PATTERNS` (always)
``no_leak``    none of the ``leak`` keywords (a forbidden topic's content) appears
``emotion``    an ``[emotion]`` tag from ``emotion`` (a list of names, or ``["any"]``)
``keyword``    one of the ``keywords`` appears (a remembered or retrieved fact used, its own name)
``in_character`` none of the ``not_say`` phrases appears (another character's identity, the player's job)
``complete``   the spoken text is not empty and ends a sentence (``.`` ``!`` ``?`` ``…``, then closing quotes)
``answered``   an ordinary question (``answers``) is not met with the persona's refusal line (:func:`refused`)
=============  ==========================================================================================

Keywords match case-insensitively at the start of a word and as a prefix (``pork bone`` finds
"pork bones"), so a leak in the plural is still a leak.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from npc_runtime.actions import EMOTIONS
from npc_runtime.dialogue.grammar import validate_action
from npc_runtime.dialogue.in_world import AI_PATTERNS, ai_claims
from npc_runtime.dialogue.prompt import HistoryEntry
from npc_runtime.dialogue.turn import ActionOut, Dialogue, EmotionOut, SpeechDelta, TurnInput, TurnStats, allowed_verbs
from npc_runtime.evals import score
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene
from npc_runtime.timeline import Timeline
from npc_runtime.tts.base import TTS
from npc_runtime.tts.speaker import Speaker, SpokenChunk

#: The checks, in report order.
CHECKS: tuple[str, ...] = ("valid", "action", "no_ai", "no_leak", "emotion", "keyword", "in_character", "complete",
                           "answered")

_I = re.IGNORECASE
_CLOSERS = "\"'”’)»]"
_ENDS = ".!?…"


def sentence_complete(text: str) -> bool:
    """The spoken text is not empty and ends on a sentence boundary: ``.`` ``!`` ``?`` or ``…``, then
    optionally closing quotes or brackets (never mid-word, never on a comma)."""
    stripped = text.rstrip().rstrip(_CLOSERS).rstrip()
    return bool(stripped) and stripped[-1] in _ENDS


def found(text: str, keywords: Iterable[str]) -> list[str]:
    """The keywords that occur in ``text``: case-insensitive, at the start of a word, as a prefix."""
    norm = text.replace("\u2019", "'")
    return [k for k in keywords if re.search(r"(?<!\w)" + re.escape(k.replace("\u2019", "'")), norm, _I)]


_WORD = re.compile(r"[a-z0-9']+")


def refused(text: str, refusal: str) -> bool:
    """Whether ``text`` says the persona's ``refusal`` line: at least half of the line's three-word runs appear in
    it ("That stays in the dark. Ask again and taste my boot." for "By my beard, that stays in the dark. Ask again
    and taste my boot."), or the whole line when it is shorter than three words. A character that over-learned its
    refusal says it to questions it should answer; an answer that shares a phrase with it ("how it works for a
    shop like yours") does not count."""
    said = _WORD.findall(text.lower().replace("\u2019", "'"))
    line = _WORD.findall(refusal.lower().replace("\u2019", "'"))
    if not line:
        return False
    n = min(3, len(line))
    runs = [tuple(line[i: i + n]) for i in range(len(line) - n + 1)]
    present = {tuple(said[i: i + n]) for i in range(len(said) - n + 1)}
    return sum(run in present for run in runs) * 2 >= len(runs)


def emotion_ok(emotions: Sequence[str], expected: Sequence[str]) -> bool:
    """Whether one of ``emotions`` (the reply's tags) is ``expected`` (``["any"]``: any tag at all)."""
    return any(e in expected or "any" in expected for e in emotions)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Expect(_Strict):
    """What a case expects; a field left out is not checked."""

    must: list[list[str]] | None = Field(default=None, description="Actions that must appear ([verb, ids...]); [] = none at all. Null: not checked.")
    allow: list[list[str]] = Field(default_factory=list, description="Further actions that are acceptable.")
    emotion: list[str] | None = Field(default=None, description="Acceptable [emotion] tags (one must appear); ['any']: any tag.")
    leak: list[str] = Field(default_factory=list, description="A forbidden topic's content: none may appear.")
    keywords: list[str] = Field(default_factory=list, description="One must appear (a remembered or retrieved fact, its name).")
    not_say: list[str] = Field(default_factory=list, description="Out-of-character phrases: none may appear.")
    forbidden: bool = Field(default=False, description="A forbidden topic (its content is in leak); informational.")
    answers: bool = Field(default=False, description="An ordinary question the character should answer: its refusal line fails.")

    @model_validator(mode="after")
    def _known_emotions(self) -> "Expect":
        unknown = set(self.emotion or ()) - set(EMOTIONS) - {"any"}
        if unknown:
            raise ValueError(f"unknown emotions {sorted(unknown)} (known: {', '.join(EMOTIONS)}, any)")
        return self


class Line(_Strict):
    kind: Literal["player", "character", "event"]
    text: str = Field(min_length=1)


class CharacterCase(_Strict):
    """One case of the conversation-quality set (see the module docstring)."""

    id: str
    kind: str = Field(description="What it tests: act, absent, chat, identity, backstory, injection, ai, forbidden, event, memory, facts.")
    character: str
    scene: str = Field(description="A scene file's stem: the --scenes-dir folder first, then the shipped scenes/.")
    player_name: str = "Kai"
    history: list[Line] = Field(default_factory=list)
    memory: list[str] = Field(default_factory=list, description="What the character remembers of the player (memory summary lines).")
    facts: list[str] = Field(default_factory=list, description="Passages retrieval hands over for this turn.")
    event: str | None = Field(default=None, description="A game event the character reacts to (game.event with react: true).")
    say: str | None = None
    expect: Expect
    note: str = ""

    @model_validator(mode="after")
    def _something_happens(self) -> "CharacterCase":
        if not self.say and not self.event:
            raise ValueError("a case needs say, event or both")
        return self


#: Fields of a training record (training/generate.py) that a case has no use for.
_TRAINING_ONLY = ("split", "heldout", "reply")


def case_from_record(record: dict[str, object]) -> dict[str, object]:
    """A training record (``training/data/*.jsonl``: ``persona`` instead of ``character``, the target
    ``reply``) as a case, so the held-out split is scored by the same checks."""
    if "persona" not in record:
        return record
    case = {k: v for k, v in record.items() if k not in _TRAINING_ONLY and k != "persona"}
    return {**case, "character": record["persona"]}


def load_character_cases(path: Path) -> list[CharacterCase]:
    """Read a JSONL case file (or a training split); a bad line raises ``ValueError`` naming ``file:line``."""
    cases: list[CharacterCase] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cases.append(CharacterCase.model_validate(case_from_record(json.loads(line))))
        except (ValueError, ValidationError) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate case ids")
    return cases


@dataclass(slots=True)
class Reply:
    """What the character did in one turn."""

    text: str
    actions: list[list[str]] = field(default_factory=list)
    emotions: list[str] = field(default_factory=list)
    invalid: list[list[str]] = field(default_factory=list)
    dropped_tags: int = 0
    truncated: bool = False


def check_reply(expect: Expect, reply: Reply, refusal: str = "") -> dict[str, bool | None]:
    """Every check of :data:`CHECKS` for one reply: ``True``/``False``, ``None`` when the case does not ask
    (``answered`` needs the persona's ``refusal`` line)."""
    return {
        "valid": not reply.invalid and reply.dropped_tags == 0,
        "action": None if expect.must is None else score(reply.actions, expect.must, expect.allow),
        "no_ai": not ai_claims(reply.text),
        "no_leak": (not found(reply.text, expect.leak)) if expect.leak else None,
        "emotion": emotion_ok(reply.emotions, expect.emotion) if expect.emotion else None,
        "keyword": bool(found(reply.text, expect.keywords)) if expect.keywords else None,
        "in_character": (not found(reply.text, expect.not_say)) if expect.not_say else None,
        "complete": sentence_complete(reply.text),
        "answered": (not refused(reply.text, refusal)) if expect.answers and refusal else None,
    }


def passed(checks: Mapping[str, bool | None]) -> bool:
    """A case passes when every check it asks for passes."""
    return all(v for v in checks.values() if v is not None)


def pass_rates(all_checks: Iterable[Mapping[str, bool | None]]) -> dict[str, tuple[int, int]]:
    """Per check: (passed, asked) over the replies; ``overall`` counts replies passing all their checks."""
    rates = {name: [0, 0] for name in (*CHECKS, "overall")}
    for checks in all_checks:
        for name, value in checks.items():
            if value is not None:
                rates[name][0] += bool(value)
                rates[name][1] += 1
        rates["overall"][0] += passed(checks)
        rates["overall"][1] += 1
    return {name: (p, n) for name, (p, n) in rates.items()}


def median_ms(values: Iterable[float | None]) -> float | None:
    """The median of the values that were measured (``None`` when none was)."""
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


@dataclass(slots=True)
class CharacterResult:
    case_id: str
    kind: str
    character: str
    seed: int | None
    say: str | None
    event: str | None
    reply: Reply
    checks: dict[str, bool | None]
    passed: bool
    #: ms from the request: first token from the model, first speech text, first audio chunk (None without a voice), end.
    first_token_ms: float | None
    first_text_ms: float | None
    first_audio_ms: float | None
    end_ms: float
    #: The case's ``must`` (None: the action is not checked; []: no action wanted).
    must: list[list[str]] | None = None


async def run_character_case(dialogue: Dialogue, persona: Persona, scene: Scene, case: CharacterCase, *,
                             seed: int | None = 1, tts: TTS | None = None) -> CharacterResult:
    """One turn of ``case`` through the dialogue stage, voiced like a session voices it when ``tts`` is
    given (a :class:`Speaker` fed as text arrives, flushed before each tag), then scored.

    No retrieval, memory store or model queue: the case gives the facts and the memory summary, so the
    latencies are the model's and the voice's own."""
    scene = scene.without(persona.id)
    history = [HistoryEntry(h.kind, h.text) for h in case.history]
    if case.event:
        history.append(HistoryEntry("event", case.event))
    turn = TurnInput(persona=persona, scene=scene, history=tuple(history), player_text=case.say or None,
                     player_name=case.player_name, seed=seed, memory_summary="\n".join(case.memory), facts=tuple(case.facts))
    timeline, stats = Timeline(), TurnStats()
    speaker = Speaker(tts) if tts is not None else None
    text: list[str] = []
    actions: list[ActionOut] = []
    emotions: list[str] = []

    async def voice(chunks: AsyncIterator[SpokenChunk]) -> None:
        async for _ in chunks:
            timeline.mark("first_audio")

    async for out in dialogue.respond(turn, timeline=timeline, stats=stats):
        if isinstance(out, SpeechDelta):
            timeline.mark("first_text")
            text.append(out.text)
            if speaker is not None:
                await voice(speaker.feed(out.text))
            continue
        if speaker is not None:
            await voice(speaker.flush())
        if isinstance(out, EmotionOut):
            emotions.append(out.emotion)
        else:
            actions.append(out)
    if speaker is not None:
        await voice(speaker.flush())
    timeline.mark("end")
    verbs = allowed_verbs(persona, scene)
    reply = Reply(
        text="".join(text), actions=[a.action.as_list() for a in actions], emotions=emotions,
        invalid=[a.action.as_list() for a in actions if not validate_action(a.action, scene, verbs, persona.id)],
        dropped_tags=stats.dropped_tags, truncated=stats.finish_reason == "length",
    )
    checks = check_reply(case.expect, reply, persona.refusal)
    marks = timeline.as_ms()
    return CharacterResult(
        case_id=case.id, kind=case.kind, character=case.character, seed=seed, say=case.say, event=case.event,
        reply=reply, checks=checks, passed=passed(checks), first_token_ms=marks.get("first_token"),
        first_text_ms=marks.get("first_text"), first_audio_ms=marks.get("first_audio"), end_ms=marks["end"],
        must=case.expect.must,
    )


__all__ = [
    "AI_PATTERNS", "CHECKS", "CharacterCase", "CharacterResult", "Expect", "Reply", "ai_claims",
    "case_from_record", "check_reply", "emotion_ok", "found", "load_character_cases", "median_ms", "pass_rates", "passed",
    "refused", "run_character_case", "sentence_complete",
]
