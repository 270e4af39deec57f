"""What a session needs from the runtime (:class:`Services`, built by :mod:`npc_runtime.wiring`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from npc_runtime.asr.base import ASR, VAD
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.errors import NpcError
from npc_runtime.metrics import Metrics
from npc_runtime.persona.schema import Persona
from npc_runtime.tts.base import TTS
from npc_runtime.tts.filler import FillerCache

if TYPE_CHECKING:
    from npc_runtime.knowledge.base import KnowledgeBase
    from npc_runtime.memory import Memory


class PersonaSource(Protocol):
    def get(self, character_id: str) -> Persona: ...


@dataclass(slots=True)
class Services:
    """What a session needs from the runtime (built by :mod:`npc_runtime.wiring`)."""

    personas: PersonaSource
    dialogue: Dialogue
    tts: TTS | None = None
    #: The voice of a persona (engine per persona voice settings); overrides ``tts`` when set.
    voices: Callable[[Persona], TTS | None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    #: One line per engine on how it runs (e.g. which llama.cpp kernels, and why), shown by ``/readyz``.
    engine_status: list[str] = field(default_factory=list)
    ready_timeout: float = 120.0
    #: Why the server cannot become ready now (something it waits for is down, e.g. the LLM server cannot be
    #: reached; a line for the client): while set, session.start gets ``not_ready`` at once instead of waiting.
    unready_reason: str | None = None
    #: Speech recognition and voice activity detection; voice input is off without both.
    asr: ASR | None = None
    vad: VAD | None = None
    #: A second recogniser for partial transcripts (default: ``asr``), so finals never wait behind them.
    asr_partial: ASR | None = None
    #: Per-character knowledge (RAG) and per-player memory; each is off when None.
    knowledge: "KnowledgeBase | None" = None
    memory: "Memory | None" = None
    retrieval_k: int = 3
    retrieval_budget_ms: float = 150.0
    metrics: Metrics | None = None
    #: Time-to-first-audio target (ms) when the persona sets none, and the pre-synthesized fillers.
    budget_ms: float = 1500.0
    fillers: FillerCache | None = None
    facts_max_chars: int = 600
    #: Open sessions at most (the server refuses more with ``busy``).
    max_sessions: int = 64
    #: Utterances allowed to wait for the final recogniser (all sessions); more are refused with ``busy``.
    asr_max_waiting: int = 4
    #: What a session's scene may add to the prompt, in tokens (a larger one is refused with ``invalid_scene``).
    scene_max_tokens: int = 1024


async def wait_ready(services: Services) -> None:
    """Wait until the models are warm (at most ``ready_timeout``). ``not_ready`` (retryable) when the time is
    up, and at once while ``unready_reason`` says something the server waits for is down."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + services.ready_timeout
    while not services.ready.is_set():
        if services.unready_reason:
            raise NpcError(f"the server is not ready: {services.unready_reason}; retry shortly", code="not_ready", retryable=True)
        left = deadline - loop.time()
        if left <= 0:
            raise NpcError("the models are still loading; retry shortly", code="not_ready", retryable=True)
        try:
            await asyncio.wait_for(services.ready.wait(), min(left, 0.25))  # a short wait: unready_reason may be set meanwhile
        except TimeoutError:
            pass
