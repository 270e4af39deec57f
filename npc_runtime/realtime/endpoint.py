"""``/v1/realtime``: one OpenAI-Realtime-compatible connection on the server's port. The handshake has been through
the server's checks already (Origin, credential, connections per address: :meth:`npc_runtime.server.NpcServer._admit`;
the SDK's ``Authorization: Bearer <key>`` is a player token or an API key). Here: the capacity check, a read pump
(frames to the :class:`~npc_runtime.realtime.adapter.RealtimeAdapter`), a write pump (its ordered output to the
socket) and the start deadline (a connection that names no character in time is closed, as on ``/``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from npc_runtime.access import Identity
from npc_runtime.realtime.adapter import RealtimeAdapter, error_event
from npc_runtime.session import Services, Session

log = structlog.get_logger(__name__)

PATH = "/v1/realtime"


def is_realtime(request_path: str) -> bool:
    """Whether a WebSocket request's path (query included) is the Realtime endpoint."""
    return request_path.partition("?")[0].rstrip("/") == PATH


async def serve_realtime(ws: ServerConnection, services: Services, identity: Identity, *, sessions: set[Session],
                         start_timeout_s: float) -> None:
    """Serve one Realtime connection until the client goes away. ``sessions``: the server's open native sessions
    (the adapter's is added while it runs, so ``max_sessions`` counts it)."""
    assert ws.request is not None
    query = urllib.parse.parse_qs(ws.request.path.partition("?")[2])
    model = next(iter(query.get("model", [])), None)
    beta = ws.request.headers.get("OpenAI-Beta", "").replace(" ", "").lower().startswith("realtime=v1")
    metrics = services.metrics
    if len(sessions) >= services.max_sessions:
        log.warning("server full; realtime connection refused", sessions=len(sessions))
        if metrics is not None:
            metrics.refused.inc()
            metrics.error("busy")
        busy = error_event(f"the server is full ({services.max_sessions} sessions); retry shortly", code="busy", type="server_error")
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps({**busy, "event_id": "event_0"}))
            await ws.close(1013, "server full")
        return

    def track(session: Session, opened: bool) -> None:
        if opened:
            sessions.add(session)
            if metrics is not None:
                metrics.sessions.inc()
                metrics.sessions_active.inc()
        elif session in sessions:
            sessions.discard(session)
            if metrics is not None:
                metrics.sessions_active.dec()

    adapter = RealtimeAdapter(services, identity=identity, model=model, beta=beta, on_session=track)
    log.info("realtime connection opened", realtime_id=adapter.id, peer=str(ws.remote_address), beta=beta)
    try:
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(_write_pump(ws, adapter), name=f"realtime-write-{adapter.id}")
            deadline = tg.create_task(_start_deadline(ws, adapter, start_timeout_s), name=f"realtime-deadline-{adapter.id}")
            try:
                await adapter.open()
                await _read_pump(ws, adapter)
            finally:
                deadline.cancel()
                await adapter.aclose()
                writer.cancel()
    finally:
        log.info("realtime connection closed", realtime_id=adapter.id)


async def _read_pump(ws: ServerConnection, adapter: RealtimeAdapter) -> None:
    try:
        async for frame in ws:
            try:
                await adapter.on_frame(frame)
            except Exception:
                log.exception("handling a realtime event failed")
                await adapter.out.put(json.dumps({**error_event("the server failed on this event (a bug: please report it)",
                                                                 code="internal", type="server_error"), "event_id": "event_internal"}))
    except ConnectionClosed:
        pass


async def _write_pump(ws: ServerConnection, adapter: RealtimeAdapter) -> None:
    try:
        while True:
            await ws.send(await adapter.out.get())
    except ConnectionClosed:
        pass


async def _start_deadline(ws: ServerConnection, adapter: RealtimeAdapter, timeout_s: float) -> None:
    """Close a connection that has named no character (``?model=``, ``session.update``) within the limit."""
    await asyncio.sleep(timeout_s)
    if adapter.start_requested:
        return
    log.warning("realtime connection closed: no character in time", timeout_s=timeout_s)
    await adapter.out.put(json.dumps({**error_event(f"no character named within {timeout_s:g} s (?model= or session.update)",
                                                     code="start_timeout", type="invalid_request_error"), "event_id": "event_timeout"}))
    await asyncio.sleep(0.05)
    await ws.close(1008, "no session in time")
