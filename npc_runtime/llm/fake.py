"""A scripted LLM for session-logic tests. It never stands in for a test that claims the
real engine works: it ignores the grammar and streams whatever it was given."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence

from npc_runtime.errors import GrammarError, LLMUnavailable
from npc_runtime.llm.base import GenerationRequest, LLMChunk

_WORD = re.compile(r"\S+\s*|\s+")


class FakeLLM:
    """Streams scripted replies word by word.

    ``replies``: a list used in turn (the last one repeats) or a callable ``request -> str``.
    ``token_delay``: seconds slept (``asyncio.sleep``) before each word, so cancellation and
    interruption are testable. ``fail_with``: raised by ``stream()`` instead of replying.
    ``max_tokens`` cuts the reply after that many words (``finish_reason="length"``).
    Every request is kept in ``requests``; ``stopped_early`` counts streams closed before
    their end. Cancel-safe: cancellation lands in ``asyncio.sleep``.
    """

    name = "fake"

    def __init__(self, replies: Sequence[str] | Callable[[GenerationRequest], str] = ("Hello.",), *,
                 token_delay: float = 0.0, fail_with: BaseException | None = None) -> None:
        self._replies = replies if callable(replies) else list(replies)
        self.token_delay = token_delay
        self.fail_with = fail_with
        self.requests: list[GenerationRequest] = []
        self.grammars: list[str] = []
        self.prefills: list[GenerationRequest] = []
        self.stopped_early = 0
        self.warmed = False
        self.closed = False

    def _next_reply(self, request: GenerationRequest) -> str:
        if callable(self._replies):
            return self._replies(request)
        if not self._replies:
            return ""
        index = min(len(self.requests) - 1, len(self._replies) - 1)
        return self._replies[index]

    async def warm(self) -> None:
        self.warmed = True

    async def prefill(self, request: GenerationRequest) -> None:
        self.prefills.append(request)

    async def validate_grammar(self, grammar: str) -> None:
        """A sanity check only: non-empty and defines ``root``."""
        self.grammars.append(grammar)
        if not re.search(r"^root\s*::=", grammar, flags=re.MULTILINE):
            raise GrammarError("invalid grammar: no root rule")

    async def stream(self, request: GenerationRequest) -> AsyncIterator[LLMChunk]:
        if self.closed:
            raise LLMUnavailable("the fake LLM is closed")
        self.requests.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        words = _WORD.findall(self._next_reply(request))
        finish = "length" if len(words) > request.max_tokens else "stop"
        words = words[: request.max_tokens]
        done = False
        try:
            for i, word in enumerate(words):
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                yield LLMChunk(word, finish if i == len(words) - 1 else None)
            if not words:
                yield LLMChunk("", finish)
            done = True
        finally:
            if not done:
                self.stopped_early += 1

    async def aclose(self) -> None:
        self.closed = True
