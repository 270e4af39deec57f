"""A minimal Realtime client (JSON events over a WebSocket) for the project's own tools: ``npc bench --protocol
realtime``. Games and tests use the official SDKs; this one exists so that the bench needs nothing beyond the runtime's
own dependencies. The Realtime counterpart of :mod:`npc_runtime.client` (the only other module here that dials)."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

__all__ = ["RealtimeClient", "WebSocketException", "realtime_url"]


def realtime_url(url: str, character: str) -> str:
    """``ws://host:port`` (the native URL) → ``ws://host:port/v1/realtime?model=<character>``."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/v1/realtime", urllib.parse.urlencode({"model": character}), ""))


class RealtimeClient:
    """Send and receive Realtime events as dicts."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, *, open_timeout: float = 30.0, token: str | None = None) -> AsyncIterator[RealtimeClient]:
        """``token``: a player token or an API key (``Authorization: Bearer``); default ``NPC_API_KEY``, if set."""
        token = token if token is not None else os.environ.get("NPC_API_KEY") or None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with connect(url, open_timeout=open_timeout, max_size=None, additional_headers=headers) as ws:
            yield cls(ws)

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def recv(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(await self.ws.recv())
        return data
