"""A real server on 127.0.0.1:0 around given services, and the shipped personas — shared by the tests
that build their own :class:`~npc_runtime.session.Services` (a scripted or a real engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest_asyncio

from npc_runtime.persona.registry import PersonaRegistry
from npc_runtime.server import NpcServer
from npc_runtime.session import Services

CHARACTERS = Path(__file__).resolve().parents[1] / "characters"


@asynccontextmanager
async def registry(poll_interval: float = 5.0) -> AsyncIterator[PersonaRegistry]:
    """The personas in characters/, watched; closed on exit."""
    personas = PersonaRegistry(CHARACTERS, poll_interval=poll_interval)
    await personas.start()
    try:
        yield personas
    finally:
        await personas.aclose()


@asynccontextmanager
async def serving(services: Services) -> AsyncIterator[NpcServer]:
    """A server for ``services``, marked ready, on a free loopback port; closed on exit."""
    services.ready.set()
    server = NpcServer(services, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


class Recording:
    """An engine that keeps the requests it is given (what the model saw) and passes them on to ``engine``: a test of a
    real model can check what the model was given, where its words (which vary with the model, the CPU and its kernels)
    must not be asserted."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.requests: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def stream(self, request: Any) -> Any:
        self.requests.append(request)
        return self.engine.stream(request)

    def prompt(self, index: int = -1) -> str:
        """Every message of one request, joined."""
        return "\n".join(m.content for m in self.requests[index].messages)


@pytest_asyncio.fixture(loop_scope="session")
async def personas() -> AsyncIterator[PersonaRegistry]:
    """The shipped personas (import this fixture into a test module to use it)."""
    async with registry() as loaded:
        yield loaded
