"""A real server on 127.0.0.1:0 around given services, and the shipped personas — shared by the tests
that build their own :class:`~npc_runtime.session.Services` (a scripted or a real engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

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


@pytest_asyncio.fixture(loop_scope="session")
async def personas() -> AsyncIterator[PersonaRegistry]:
    """The shipped personas (import this fixture into a test module to use it)."""
    async with registry() as loaded:
        yield loaded
