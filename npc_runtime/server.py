"""The WebSocket server: one :class:`~npc_runtime.session.Session` per connection, plus on the same
port ``GET /healthz`` (live: 200 while the process serves), ``GET /readyz`` (200 once the models are
warm, 503 before), ``GET /metrics`` (Prometheus) and ``GET /demo`` (the browser demo: the static files
of ``clients/web/``, loopback clients only). Over ``max_sessions`` open sessions, a new connection gets a ``busy``
error (fatal, retryable) and is closed.

The handshake (:meth:`NpcServer._admit`) checks the browser's Origin, the credential (:mod:`npc_runtime.access`) and
the connections per address. Each connection then has a read pump (the handler itself: parse, hand to the session),
and a write pump (drain the session's ordered outbox into the socket) and the ``session.start`` deadline, both tasks
of a TaskGroup; when the client goes away the session is closed and every task it owned is awaited.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from npc_runtime import protocol as p
from npc_runtime.access import OPEN, Access, AccessDenied, Identity, is_loopback_host
from npc_runtime.errors import NpcError, ProtocolError
from npc_runtime.metrics import CONTENT_TYPE
from npc_runtime.realtime.endpoint import is_realtime, serve_realtime
from npc_runtime.session import Services, Session

log = structlog.get_logger(__name__)

#: Frames above this are refused by websockets itself (close code 1009). Frames between
#: :data:`~npc_runtime.protocol.MAX_MESSAGE_BYTES` and this get a ``message_too_large`` error
#: event and the connection stays up.
HARD_MAX_FRAME_BYTES = 1024 * 1024

#: The browser demo's static files, served at ``/demo`` (``clients/web/`` of a source checkout).
DEMO_DIR = Path(__file__).resolve().parents[1] / "clients" / "web"
DEMO_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png", ".wasm": "application/wasm",
}


def demo_file(path: str, root: Path = DEMO_DIR) -> Path | None:
    """The file under ``root`` that the request path ``/demo/`` or ``/demo/<file>`` names, or ``None``
    (not a demo path, not a known file type, or outside ``root``: ``..``, hidden names, links out)."""
    if path == "/demo/":
        path = "/demo/index.html"
    if not path.startswith("/demo/"):
        return None
    parts = urllib.parse.unquote(path[len("/demo/"):]).split("/")
    if any(not part or part.startswith(".") or "\\" in part or "\0" in part for part in parts):
        return None
    candidate = root.joinpath(*parts)
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(root.resolve()) or not resolved.is_file() or resolved.suffix not in DEMO_TYPES:
        return None
    return resolved


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Limits per connection and per address (docs/security.md). ``start_timeout_s``: a connection that has not
    sent ``session.start`` by then gets a ``start_timeout`` error and is closed (1008). ``max_per_address``: open
    WebSocket connections per client address (0: no limit; a new one past it is refused with HTTP 429);
    ``limit_loopback``: whether loopback clients count (off by default: local tools, tests and a reverse proxy on the
    same box connect from loopback)."""

    start_timeout_s: float = 10.0
    max_per_address: int = 16
    limit_loopback: bool = False


class NpcServer:
    """Serves the protocol on ``host:port`` (port 0 picks a free one; see :attr:`port`). ``access``: who may connect
    (:mod:`npc_runtime.access`; default: open, for loopback); ``limits``: :class:`ConnectionLimits`."""

    def __init__(self, services: Services, *, host: str = "127.0.0.1", port: int = 8765, access: Access | None = None,
                 limits: ConnectionLimits | None = None) -> None:
        self.services = services
        self.host, self._port = host, port
        self.access = access or Access()
        self.limits = limits or ConnectionLimits()
        self._server: Server | None = None
        self.sessions: set[Session] = set()
        #: Open WebSocket connections per client address, and each handshake's identity (until its handler takes it).
        self._per_address: collections.Counter[str] = collections.Counter()
        self._identities: dict[ServerConnection, Identity] = {}
        #: Set by :meth:`drain`: ``/readyz`` says 503 and new WebSocket connections are refused.
        self.draining = False

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]  # type: ignore[no-any-return]

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.host, self._port,
            process_request=self._process_request,
            max_size=HARD_MAX_FRAME_BYTES,
            ping_interval=20, ping_timeout=20,
        )
        log.info("listening", url=self.url)

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Graceful shutdown behind a load balancer (SIGTERM in ``npc serve``; docs/deploy.md): ``/readyz`` turns 503
        and the listening socket closes (new connections go to another server), the responses running now finish
        (``timeout_s`` at most: the rest are cut), then every connection is closed with 1001 (going away), so that its
        client reconnects through the balancer. :meth:`aclose` after it."""
        self.draining = True
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        log.info("draining", sessions=len(self.sessions), timeout_s=timeout_s)
        self._server.close(close_connections=False)  # stop accepting; open connections go on
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and any(s.responding or not s.outbox.empty() for s in self.sessions):  # noqa: ASYNC110 - no one event spans the sessions
            await asyncio.sleep(0.05)
        cut = sum(s.responding for s in self.sessions)
        # what was said reaches memory before the close, so the server the player reconnects to has all of it
        await asyncio.gather(*(s.save() for s in list(self.sessions)), return_exceptions=True)
        log.info("drained; closing connections (1001)", sessions=len(self.sessions), responses_cut=cut)
        await asyncio.gather(*(ws.close(1001, "server shutting down") for ws in list(self._server.connections)),
                             return_exceptions=True)
        await self._server.wait_closed()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            details = "".join(f"{line}\n" for line in self.services.engine_status)
            if self.draining:
                return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining\n" + details)
            if self.services.ready.is_set():
                return connection.respond(http.HTTPStatus.OK, "ready\n" + details)
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "warming up\n" + details)
        if path == "/metrics" and self.services.metrics is not None:
            if (refused := self._refuse_http(connection, request, query)) is not None:
                return refused
            response = connection.respond(http.HTTPStatus.OK, "")
            response.body = self.services.metrics.render()
            for name, value in (("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(response.body)))):
                del response.headers[name]  # Headers is a multi-dict: replace, do not add
                response.headers[name] = value
            return response
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if path == "/demo" or path.startswith("/demo/"):
                if not is_loopback_host(_peer(connection)):  # static files: publish them with your own web server
                    return self._refusal(connection, http.HTTPStatus.FORBIDDEN, "forbidden", "the demo is served to loopback clients only")
                return self._demo(connection, request.path)
            return connection.respond(http.HTTPStatus.NOT_FOUND,
                                      "npc_runtime: connect with a WebSocket; GET /healthz, /readyz, /metrics, /demo\n")
        return self._admit(connection, request, query)

    def _admit(self, connection: ServerConnection, request: Request, query: str) -> Response | None:
        """A WebSocket handshake: its Origin, its credential, its address's share. None lets it in."""
        headers = request.headers
        if self.draining:  # shutting down: a balancer retries the handshake on another server
            response = self._refusal(connection, http.HTTPStatus.SERVICE_UNAVAILABLE, "draining",
                                     "this server is shutting down; connect again (through the balancer) to another one")
            response.headers["Retry-After"] = "1"
            return response
        if not self.access.origin_allowed(headers.get("Origin"), headers.get("Host")):
            log.warning("connection refused: origin not allowed", origin=headers.get("Origin", "")[:200])
            return self._refusal(connection, http.HTTPStatus.FORBIDDEN, "origin_not_allowed",
                                 "this page's origin may not connect (the server's --allow-origin list)")
        try:
            identity = self.access.authenticate(headers, query)
        except AccessDenied as exc:
            log.warning("connection refused: not authenticated", reason=exc.message, peer=_peer(connection))
            return self._refusal(connection, http.HTTPStatus.UNAUTHORIZED, exc.code, exc.message)
        address = _peer(connection)
        limit = self.limits.max_per_address
        if limit and (self.limits.limit_loopback or not is_loopback_host(address)) and self._per_address[address] >= limit:
            log.warning("connection refused: too many from one address", peer=address, open=self._per_address[address])
            if self.services.metrics is not None:
                self.services.metrics.refused.inc()
            response = self._refusal(connection, http.HTTPStatus.TOO_MANY_REQUESTS, "too_many_connections",
                                     f"at most {limit} connections per address")
            response.headers["Retry-After"] = "5"
            return response
        self._identities[connection] = identity
        return None

    def _refuse_http(self, connection: ServerConnection, request: Request, query: str) -> Response | None:
        """``/metrics``: loopback clients, or any client with a valid credential when auth is on."""
        if is_loopback_host(_peer(connection)):
            return None
        if not self.access.enabled:
            return self._refusal(connection, http.HTTPStatus.FORBIDDEN, "forbidden", "loopback only while auth is off")
        try:
            self.access.authenticate(request.headers, query)
        except AccessDenied as exc:
            return self._refusal(connection, http.HTTPStatus.UNAUTHORIZED, exc.code, exc.message)
        return None

    @staticmethod
    def _refusal(connection: ServerConnection, status: http.HTTPStatus, code: str, message: str) -> Response:
        """An HTTP refusal whose body is an ``error`` event (what a WebSocket client would have been told)."""
        event = p.ErrorEvent(code=code, message=message, retryable=status in (http.HTTPStatus.TOO_MANY_REQUESTS, http.HTTPStatus.SERVICE_UNAVAILABLE), fatal=True)
        response = connection.respond(status, p.encode_event(event) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    @staticmethod
    def _demo(connection: ServerConnection, target: str) -> Response:
        """A static file of the browser demo (small files, read whole), or 404. ``/demo`` redirects to
        ``/demo/`` (query kept) so that the page's relative URLs resolve under ``/demo/``."""
        path, sep, query = target.partition("?")
        if path == "/demo":
            response = connection.respond(http.HTTPStatus.FOUND, "")
            response.headers["Location"] = "/demo/" + sep + query
            return response
        file = demo_file(path)
        if file is None:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "npc_runtime: no such demo file\n")
        response = connection.respond(http.HTTPStatus.OK, "")
        response.body = file.read_bytes()
        headers = (("Content-Type", DEMO_TYPES[file.suffix]), ("Content-Length", str(len(response.body))),
                   ("Cache-Control", "no-cache"))
        for name, value in headers:
            if name in response.headers:
                del response.headers[name]  # a multi-dict: replace, do not add
            response.headers[name] = value
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        structlog.contextvars.clear_contextvars()
        identity = self._identities.pop(ws, OPEN)
        address = _peer(ws)
        self._per_address[address] += 1
        try:
            if ws.request is not None and is_realtime(ws.request.path):  # the OpenAI-Realtime-compatible endpoint
                await serve_realtime(ws, self.services, identity, sessions=self.sessions,
                                     start_timeout_s=self.limits.start_timeout_s)
                return
            await self._serve_connection(ws, identity)
        finally:
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    async def _serve_connection(self, ws: ServerConnection, identity: Identity) -> None:
        metrics = self.services.metrics
        if len(self.sessions) >= self.services.max_sessions:
            log.warning("server full; connection refused", sessions=len(self.sessions))
            if metrics is not None:
                metrics.refused.inc()
                metrics.error("busy")
            busy = p.ErrorEvent(code="busy", message=f"the server is full ({self.services.max_sessions} sessions); retry shortly",
                                retryable=True, fatal=True)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(p.encode_event(busy))
                await ws.close(1013, "server full")
            return
        session = Session(self.services, identity=identity)
        self.sessions.add(session)
        if metrics is not None:
            metrics.sessions.inc()
            metrics.sessions_active.inc()
        log.info("connection opened", session_id=session.id, peer=str(ws.remote_address))
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._write_pump(ws, session), name=f"write-{session.id}")
                deadline = tg.create_task(self._start_deadline(ws, session), name=f"start-deadline-{session.id}")
                try:
                    await self._read_pump(ws, session)
                finally:
                    deadline.cancel()
                    await session.aclose()
                    writer.cancel()
        finally:
            self.sessions.discard(session)
            if metrics is not None:
                metrics.sessions_active.dec()
            log.info("connection closed", session_id=session.id)

    async def _start_deadline(self, ws: ServerConnection, session: Session) -> None:
        """Close a connection that has not sent ``session.start`` within the limit (an idle socket holds a session
        slot: 64 of them would lock every player out)."""
        await asyncio.sleep(self.limits.start_timeout_s)
        if session.start_requested:
            return
        log.warning("connection closed: no session.start in time", timeout_s=self.limits.start_timeout_s)
        await session.emit(p.ErrorEvent(code="start_timeout", fatal=True, retryable=True,
                                        message=f"no session.start within {self.limits.start_timeout_s:g} s"))
        await asyncio.sleep(0.05)  # let the write pump send it
        await ws.close(1008, "no session.start in time")

    async def _read_pump(self, ws: ServerConnection, session: Session) -> None:
        try:
            async for frame in ws:
                await self._on_frame(frame, session)
        except ConnectionClosed:
            pass

    @staticmethod
    async def _on_frame(frame: str | bytes, session: Session) -> None:
        """One frame from the client. Bad input gets an ``error`` event with its code; a bug while handling a frame
        gets an ``internal`` one (and an error log with the traceback) instead of taking the connection down (1011)."""
        kind, ref = "binary", None
        try:
            if isinstance(frame, bytes):
                await session.feed_audio(frame)
                return
            try:
                msg = p.parse_client_message(frame)
            except ProtocolError as exc:
                await session.send_error(exc, p.message_ref(frame))
                return
            kind, ref = msg.type, msg.id
            await session.handle(msg)
        except Exception:
            log.exception("handling a client message failed", message_type=kind)
            await session.send_error(NpcError("the server failed on this message (a bug: please report it)"), ref)

    @staticmethod
    async def _write_pump(ws: ServerConnection, session: Session) -> None:
        """Drain the session's outbox into the socket, in order. An event that cannot be encoded (a bug, e.g. a lone
        surrogate in a string) is logged and sent as an ``internal`` error instead: the pump never dies on one event."""
        try:
            while True:
                item: Any = await session.outbox.get()
                if isinstance(item, bytes):
                    await ws.send(item)
                    continue
                try:
                    frame = p.encode_event(item)
                except Exception:
                    log.exception("an event could not be encoded", event_type=str(getattr(item, "type", type(item).__name__)))
                    response_id = getattr(item, "response_id", None)
                    if session.services.metrics is not None:
                        session.services.metrics.error("internal")
                    frame = p.encode_event(p.ErrorEvent(
                        code="internal", message="the server could not encode an event (a bug: please report it)",
                        response_id=response_id if isinstance(response_id, str) and response_id.isascii() else None))
                await ws.send(frame)
        except ConnectionClosed:
            pass


def _peer(connection: ServerConnection) -> str:
    """The client's address (the proxy's, behind a reverse proxy)."""
    address = connection.remote_address
    return str(address[0]) if isinstance(address, tuple) and address else str(address)
