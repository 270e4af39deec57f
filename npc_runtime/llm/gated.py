"""An LLM behind a :class:`~npc_runtime.gate.Gate`: generations and prefills take a slot (first come,
first served); when too many turns already wait, the next one fails at once with ``busy``. A request's
``admitted`` callback runs when its turn comes (the latency budget may shorten a reply that waited)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from npc_runtime.gate import Gate
from npc_runtime.llm.base import LLM, GenerationRequest, LLMChunk


class GatedLLM:
    def __init__(self, llm: LLM, gate: Gate) -> None:
        self.inner, self.gate = llm, gate
        self.name = llm.name

    async def warm(self) -> None:
        await self.inner.warm()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[LLMChunk]:
        async with self.gate.slot():
            if request.admitted is not None:
                cap = request.admitted()
                if cap is not None and cap < request.max_tokens:
                    request = dataclasses.replace(request, max_tokens=cap)
            stream = self.inner.stream(request)
            try:
                async for chunk in stream:
                    yield chunk
            finally:
                await stream.aclose()  # type: ignore[attr-defined]

    async def prefill(self, request: GenerationRequest) -> None:
        """Best-effort warm-up: skipped when the engine is busy, so it never waits in (or takes) a place in
        the line that a player's turn needs — a burst of new sessions must not make their turns ``busy``."""
        if self.gate.busy:
            return
        async with self.gate.slot():
            await self.inner.prefill(request)

    async def validate_grammar(self, grammar: str) -> None:
        await self.inner.validate_grammar(grammar)

    async def aclose(self) -> None:
        await self.inner.aclose()
