"""The dialogue stage: one turn from (persona, scene, history, utterance) to speech and actions.

:meth:`Dialogue.respond` is an async generator of :class:`SpeechDelta` and :class:`ActionOut`.
It builds the turn's prompt with the character's profile (:func:`~npc_runtime.dialogue.prompt.choose_profile`)
and its action grammar from the scene and the persona's verbs, validates the grammar with the backend, streams
the LLM, and splits tags out of the speech as tokens arrive. Past the reply's token cap the reply ends at the
next sentence end (:mod:`~npc_runtime.dialogue.ending`); speech is let go a clause at a time, and a clause that
talks like a model ends the reply with the persona's refusal (:mod:`~npc_runtime.dialogue.in_world`). Closing the generator early (interruption) stops the
LLM at its next token.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from npc_runtime.actions import declared
from npc_runtime.dialogue.ending import Ending, hard_limit
from npc_runtime.dialogue.grammar import build_action_grammar
from npc_runtime.dialogue.in_world import InWorld
from npc_runtime.dialogue.prompt import HistoryEntry, Profile, ProfileSetting, build_messages, choose_profile, engine_profile, prefix_key
from npc_runtime.dialogue.tags import ActionPiece, EmotionPiece, TagStreamParser, TextPiece
from npc_runtime.errors import SceneError
from npc_runtime.llm.base import LLM, ChatMessage, GenerationRequest
from npc_runtime.persona.schema import Persona
from npc_runtime.scene import Scene
from npc_runtime.timeline import Timeline

log = structlog.get_logger(__name__)

#: What a character's stable prompt prefix must leave of the model's context: the history window, memory, retrieved
#: facts, the player's line and the reply.
CONVERSATION_ROOM_TOKENS = 1536


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
    #: The reply talked like a model (:mod:`~npc_runtime.dialogue.in_world`): what it matched; it was cut there.
    broke_character: list[str] = field(default_factory=list)


def allowed_verbs(persona: Persona, scene: Scene | None = None) -> list[str]:
    """The verbs the character may use: the persona's, and those the scene declares (the game's own)."""
    return declared(scene, persona.actions)


class Dialogue:
    """The dialogue stage over one LLM backend. ``prompt_profile``: ``auto`` (each persona's, else the engine's:
    see :mod:`~npc_runtime.dialogue.prompt`) or one profile for every character."""

    def __init__(self, *, llm: LLM, prompt_profile: ProfileSetting = "auto") -> None:
        self.llm = llm
        self.prompt_profile = prompt_profile
        #: What ``auto`` falls back to for this engine.
        self.engine_profile: Profile = engine_profile(llm)

    def profile_for(self, persona: Persona) -> Profile:
        return choose_profile(self.prompt_profile, persona, engine=self.engine_profile)

    def _request(self, turn: TurnInput, verbs: Sequence[str], ending: Ending | None = None) -> GenerationRequest:
        persona, scene = turn.persona, turn.scene
        profile = self.profile_for(persona)
        messages, prefix_len = build_messages(
            persona, verbs, scene, turn.history, player_text=turn.player_text, player_name=turn.player_name,
            memory_summary=turn.memory_summary, facts=turn.facts, brief=turn.brief, profile=profile,
        )
        limit = turn.max_tokens or persona.llm.max_tokens
        return GenerationRequest(
            messages=messages,
            grammar=build_action_grammar(scene, verbs, self_id=persona.id, emotions=persona.emotions) if verbs or persona.emotions else None,
            max_tokens=hard_limit(limit) if ending is not None else limit,
            temperature=persona.llm.temperature,
            top_p=persona.llm.top_p,
            repeat_penalty=persona.llm.repeat_penalty,
            seed=turn.seed,
            prefix_messages=prefix_len,
            cache_key=prefix_key(persona, scene, profile),
            session_key=turn.session_key,
            admitted=_capping(turn.on_admitted, ending),
        )

    async def check_scene(self, persona: Persona, scene: Scene, *, player_name: str | None, max_scene_tokens: int) -> int:
        """Refuse a scene too costly for the prompt (:class:`~npc_runtime.errors.SceneError`, ``invalid_scene``, naming
        the limit): what the scene adds to the character's stable prompt prefix must fit ``max_scene_tokens``, and the
        prefix must leave :data:`CONVERSATION_ROOM_TOKENS` of the model's context for the conversation. Counted with the
        model's own tokenizer where the backend has one (the embedded engine), else bounded by bytes / 3. Returns the
        prefix's tokens. A prompt that is bounded this way (lines, facts, memory and history are bounded already) never
        holds the single engine thread for long (issue 15: one 16,632-token scene held it ~45 s)."""
        verbs = allowed_verbs(persona, scene)
        full = self._request(TurnInput(persona=persona, scene=scene, history=(), player_text=None, player_name=player_name), verbs)
        bare = self._request(TurnInput(persona=persona, scene=Scene(), history=(), player_text=None, player_name=player_name), verbs)
        prefix_tokens = await self._count(full.messages[: full.prefix_messages])
        scene_tokens = prefix_tokens - await self._count(bare.messages[: bare.prefix_messages])
        if scene_tokens > max_scene_tokens:
            raise SceneError(f"the scene costs {scene_tokens} prompt tokens; this server allows {max_scene_tokens} per session "
                             "(scene_max_tokens): fewer entities or shorter descriptions")
        context = getattr(self.llm, "context_tokens", None)
        if isinstance(context, int) and prefix_tokens + CONVERSATION_ROOM_TOKENS > context:
            raise SceneError(f"the character's prompt with this scene takes {prefix_tokens} tokens of the model's {context}-token "
                             f"context, leaving less than {CONVERSATION_ROOM_TOKENS} for the conversation: a smaller scene")
        return prefix_tokens

    async def _count(self, messages: Sequence[ChatMessage]) -> int:
        count = getattr(self.llm, "count_tokens", None)
        if count is not None:
            return int(await count(messages))
        return sum(-(-len(m.content.encode("utf-8")) // 3) + 4 for m in messages)  # English: 3.4-4 bytes a token

    async def prepare(self, persona: Persona, scene: Scene, *, player_name: str | None) -> None:
        """Warm the backend for this character and scene before anyone speaks: its prompt
        prefix is evaluated and cached, its grammar validated. Best-effort."""
        turn = TurnInput(persona=persona, scene=scene, history=(), player_text=None, player_name=player_name)
        request = self._request(turn, allowed_verbs(persona, scene))
        prefix = GenerationRequest(
            messages=request.messages[: request.prefix_messages], prefix_messages=request.prefix_messages,
            cache_key=request.cache_key, max_tokens=1,
        )
        if request.grammar is not None:
            await self.llm.validate_grammar(request.grammar)
        await self.llm.prefill(prefix)

    async def respond(self, turn: TurnInput, *, timeline: Timeline, stats: TurnStats) -> AsyncGenerator[SpeechDelta | ActionOut | EmotionOut, None]:
        """Stream one reply. Cancel-safe: closing it stops generation; what was yielded stands."""
        verbs = allowed_verbs(turn.persona, turn.scene)
        ending = Ending(turn.max_tokens or turn.persona.llm.max_tokens)
        request = self._request(turn, verbs, ending)
        if request.grammar is not None:
            await self.llm.validate_grammar(request.grammar)
        parser = TagStreamParser(turn.scene, verbs, self_id=turn.persona.id, emotions=turn.persona.emotions)
        guard = InWorld(turn.persona.refusal)
        timeline.mark("prompt_ready")
        stream = self.llm.stream(request)
        try:
            async for chunk in stream:
                timeline.mark("first_token")
                stats.chunks += 1
                for out in guard.feed(_speakable(parser.feed(ending.feed(chunk.text)))):
                    yield out
                if ending.stopped or guard.broke:
                    break  # past the cap at a sentence end, or out of character: the model stops here
                if chunk.finish_reason:
                    stats.finish_reason = chunk.finish_reason
            if ending.stopped:
                stats.finish_reason = "length"
            if not guard.broke:
                for out in guard.feed(_speakable([*parser.feed(ending.finish(stats.finish_reason)), *parser.close()])):
                    yield out
            for out in guard.finish():
                yield out
            if guard.broke:
                stats.broke_character = guard.claims
                log.info("reply.out_of_character", persona=turn.persona.id, claims=guard.claims)
        finally:
            close = getattr(stream, "aclose", None)  # every backend streams from an async generator
            if close is not None:
                await close()
            stats.dropped_tags = parser.dropped


def _capping(admitted: Callable[[], int | None] | None, ending: Ending | None) -> Callable[[], int | None] | None:
    """The turn's admission hook, its cap applied to the reply's ending: the model gets the cap plus the slack
    to finish the sentence in progress."""
    if admitted is None or ending is None:
        return admitted

    def on_admitted() -> int | None:
        cap = admitted()
        if cap is None:
            return None
        ending.soft = min(ending.soft, cap)
        return hard_limit(ending.soft)

    return on_admitted


def _speakable(pieces: Sequence[TextPiece | ActionPiece | EmotionPiece]) -> list[TextPiece | ActionPiece | EmotionPiece]:
    return [piece for piece in pieces if not isinstance(piece, TextPiece) or piece.text]
