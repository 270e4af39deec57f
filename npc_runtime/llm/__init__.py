"""LLM engines behind one interface (see :mod:`npc_runtime.llm.base`)."""

from npc_runtime.llm.base import LLM, ChatMessage, GenerationRequest, LLMChunk

__all__ = ["LLM", "ChatMessage", "GenerationRequest", "LLMChunk"]
