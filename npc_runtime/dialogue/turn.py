"""The dialogue stage: one turn from (persona, scene, history, utterance) to speech and actions.

:meth:`Dialogue.respond` is an async generator of :class:`SpeechDelta` and :class:`ActionOut`.
It builds the turn's action grammar from the scene and the persona's verbs, validates it with
the backend, streams the LLM, and splits tags out of the speech as tokens arrive. Closing the
generator early (interruption) stops the LLM at its next token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import structlog

from npc_runtime.dialogue.grammar import build_action_grammar
from npc_runtime.dialogue.prompt import HistoryEntry, build_messages, prefix_key
from npc_runtime.dialogue.tags import ActionPiece, EmotionPiece, TagStreamParser, TextPiece
from npc_runtime.llm.base import LLM, GenerationRequest
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene
from npc_runtime.timeline import Timeline

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TurnInput:
    persona: Persona
    scene: Scene
    history: Sequence[HistoryEntry]
    player_text: str | None
    player_name: str | None = None
    max_tokens: int | None = None
    seed: int | None = None
    #: What the character remembers about this player from earlier sessions (memory's summary).
    memory_summary: str = ""
    #: Knowledge passages retrieved for this turn, best first.
    facts: Sequence[str] = ()
    #: Session-specific instructions (a simulation's role brief).
    brief: str = ""
    #: The conversation's id, so the backend can keep its state between this session's turns.
    session_key: str | None = None
    #: Called when the generation gets its turn on the model; may return a lower max_tokens (see GenerationRequest).
    on_admitted: Callable[[], int | None] | None = None


#: What :meth:`Dialogue.respond` yields: the tag parser's pieces (speech text never empty).
SpeechDelta = TextPiece
ActionOut = ActionPiece
EmotionOut = EmotionPiece


@dataclass(slots=True)
class TurnStats:
    """Filled in while the turn runs; complete when the generator ends."""

    chunks: int = 0
    finish_reason: str | None = None
    dropped_tags: int = 0


def allowed_verbs(persona: Persona) -> list[str]:
    return list(persona.actions)


class Dialogue:
    """The dialogue stage over one LLM backend."""

    def __init__(self, *, llm: LLM) -> None:
        self.llm = llm

    def _request(self, turn: TurnInput, verbs: Sequence[str]) -> GenerationRequest:
        persona, scene = turn.persona, turn.scene
        messages, prefix_len = build_messages(
            persona, verbs, scene, turn.history, player_text=turn.player_text, player_name=turn.player_name,
            memory_summary=turn.memory_summary, facts=turn.facts, brief=turn.brief,
        )
        return GenerationRequest(
            messages=messages,
            grammar=build_action_grammar(scene, verbs, self_id=persona.id, emotions=persona.emotions) if verbs or persona.emotions else None,
            max_tokens=turn.max_tokens or persona.llm.max_tokens,
            temperature=persona.llm.temperature,
            top_p=persona.llm.top_p,
            repeat_penalty=persona.llm.repeat_penalty,
            seed=turn.seed,
            prefix_messages=prefix_len,
            cache_key=prefix_key(persona, scene),
            session_key=turn.session_key,
            admitted=turn.on_admitted,
        )

    async def prepare(self, persona: Persona, scene: Scene, *, player_name: str | None) -> None:
        """Warm the backend for this character and scene before anyone speaks: its prompt
        prefix is evaluated and cached, its grammar validated. Best-effort."""
        turn = TurnInput(persona=persona, scene=scene, history=(), player_text=None, player_name=player_name)
        request = self._request(turn, allowed_verbs(persona))
        prefix = GenerationRequest(
            messages=request.messages[: request.prefix_messages], prefix_messages=request.prefix_messages,
            cache_key=request.cache_key, max_tokens=1,
        )
        if request.grammar is not None:
            await self.llm.validate_grammar(request.grammar)
        await self.llm.prefill(prefix)

    async def respond(self, turn: TurnInput, *, timeline: Timeline, stats: TurnStats) -> AsyncIterator[SpeechDelta | ActionOut | EmotionOut]:
        """Stream one reply. Cancel-safe: closing it stops generation; what was yielded stands."""
        verbs = allowed_verbs(turn.persona)
        request = self._request(turn, verbs)
        if request.grammar is not None:
            await self.llm.validate_grammar(request.grammar)
        parser = TagStreamParser(turn.scene, verbs, self_id=turn.persona.id, emotions=turn.persona.emotions)
        timeline.mark("prompt_ready")
        stream = self.llm.stream(request)
        try:
            async for chunk in stream:
                timeline.mark("first_token")
                stats.chunks += 1
                if chunk.finish_reason:
                    stats.finish_reason = chunk.finish_reason
                for out in _speakable(parser.feed(chunk.text)):
                    yield out
            for out in _speakable(parser.close()):
                yield out
        finally:
            await stream.aclose()
            stats.dropped_tags = parser.dropped


def _speakable(pieces: Sequence[TextPiece | ActionPiece | EmotionPiece]) -> list[TextPiece | ActionPiece | EmotionPiece]:
    return [piece for piece in pieces if not isinstance(piece, TextPiece) or piece.text]
