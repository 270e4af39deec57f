"""The LLM interface every backend implements.

A backend turns a :class:`GenerationRequest` (chat messages, an optional GBNF grammar) into a
stream of :class:`LLMChunk`. ``stream()`` is an async generator; closing it early (``aclose()``,
or cancelling the task that iterates it) stops generation at the next token: backends that
run in a thread check a stop flag between tokens, HTTP backends close the response.

The first ``prefix_messages`` messages of a request are the stable prefix (the persona and
its few-shot examples): identical across turns of one character, so backends can reuse their
KV cache (llama.cpp saved state per ``cache_key``, vLLM automatic prefix caching).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]

#: Chat-template control markers of the common model families: ChatML / SmolLM2 / Qwen (``<|im_start|>``,
#: ``<|endoftext|>``), Llama 3 (``<|eot_id|>``, ``<|start_header_id|>``), Llama 2 / Mistral (``[INST]``, ``<<SYS>>``,
#: ``<s>``), and StarCoder-style special tokens (``<file_sep>``, ``<jupyter_code>``).
_MARKER = re.compile(r"<\|[^<>|\s]{1,48}\|>|</?s>|\[/?INST\]|<</?SYS>>|<[a-z]+(?:_[a-z]+)+>", re.IGNORECASE)
_JOINER = "\u2060"  # WORD JOINER: invisible, and no tokenizer has it inside a special token


def plain_text(text: str) -> str:
    """``text`` with every chat-template marker broken up by an invisible character, for a backend that applies
    the chat template itself (vLLM): what a player typed never reads as a control token there. The embedded engine
    needs none of this (it tokenizes message text with special tokens off)."""
    return _MARKER.sub(lambda m: m.group()[0] + _JOINER + m.group()[1:], text) if "<" in text or "[" in text else text


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    messages: Sequence[ChatMessage]
    grammar: str | None = None
    max_tokens: int = 96
    temperature: float = 0.7
    top_p: float = 0.9
    #: >1 discourages repeating tokens already in the context (llama.cpp ``repeat_penalty``,
    #: vLLM ``repetition_penalty``); 1.0 is off.
    repeat_penalty: float = 1.0
    seed: int | None = None
    prefix_messages: int = 0
    cache_key: str | None = None
    #: The conversation this request continues: the backend may keep its state between turns (llama.cpp
    #: saves the context per session, so a session that comes back after another one spoke is warm).
    session_key: str | None = None
    stop: tuple[str, ...] = field(default=())
    #: Called when the request gets its turn on the engine (after any wait in a queue); may return a lower
    #: ``max_tokens`` for a request that has waited too long (the latency budget). Not sent to a backend.
    admitted: Callable[[], int | None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class LLMChunk:
    """A piece of generated text. The last chunk of a stream has ``finish_reason`` set
    (``"stop"``: the model ended; ``"length"``: ``max_tokens`` cut it)."""

    text: str
    finish_reason: str | None = None


@runtime_checkable
class LLM(Protocol):
    name: str

    async def warm(self) -> None:
        """Load and warm the model; return when a request would be served at full speed."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[LLMChunk]:
        """Generate. Raises :class:`~npc_runtime.errors.LLMError` subclasses. Cancel-safe."""

    async def prefill(self, request: GenerationRequest) -> None:
        """Compute and cache the request's stable prefix (its first ``prefix_messages``) ahead of
        the first turn, so that turn starts warm. Best-effort; generates nothing."""

    async def validate_grammar(self, grammar: str) -> None:
        """Raise :class:`~npc_runtime.errors.GrammarError` when the backend would reject ``grammar``."""

    async def aclose(self) -> None:
        """Stop and release everything; idempotent."""
