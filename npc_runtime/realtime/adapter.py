"""The Realtime translation layer: one :class:`RealtimeAdapter` per ``/v1/realtime`` connection, over one native
:class:`~npc_runtime.session.Session` driven only through its public surface (``handle``, ``feed_audio``,
``outbox``, ``emit``, ``aclose``).

Client events become native client messages (``session.update`` → ``session.start`` / ``scene.update``; a user
``message`` item + ``response.create`` → ``input.text``; a ``system`` message → ``game.event``;
``input_audio_buffer.*`` → microphone frames and ``input.audio.*``; ``conversation.item.truncate`` →
``playback.mark``; ``response.cancel`` → ``response.cancel``), and the session's events become Realtime server
events (``response.text.delta`` → transcript deltas, ``response.audio`` + its frame → ``response.output_audio.delta``
at 24 kHz, ``response.action`` → a ``function_call`` output item, ``response.end`` → ``response.done``; visemes and
emotions as ``npc.visemes`` / ``npc.emotion``). The mapping is documented in docs/realtime.md.

Ordering: every event this adapter writes goes through the native session's ordered outbox (``Session.emit`` of a
:class:`~npc_runtime.session.Passthrough`) while a native session runs, so that what the adapter says and what the session says reach the client
in the order they happened; before a native session exists they go straight to :attr:`RealtimeAdapter.out`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from npc_runtime import protocol as p
from npc_runtime.access import OPEN, Identity
from npc_runtime.actions import Targets, usable_definitions
from npc_runtime.errors import NpcError
from npc_runtime.persona.schema import Persona
from npc_runtime.realtime import audio as rt_audio
from npc_runtime.realtime import events as ev
from npc_runtime.scene import BUILTIN_VERB_NAMES, Scene, VerbArg, VerbDef
from npc_runtime.session import Passthrough, Services, Session

log = structlog.get_logger(__name__)

#: Finished responses kept for ``conversation.item.truncate`` (by their message item).
RECENT_RESPONSES = 16
#: Native error codes that are the server's fault or retryable: ``server_error``; the rest are the client's.
_SERVER_CODES = frozenset({"internal", "busy", "not_ready", "llm_unavailable", "llm_failed", "llm_rejected", "invalid_grammar",
                           "asr_failed", "asr_unavailable", "tts_failed", "tts_unavailable", "memory_unavailable",
                           "audio_overflow", "start_timeout"})
#: Native codes with a Realtime name of their own.
_CODE_NAMES = {"no_response": "response_cancel_not_active"}
#: The GA event names that the beta API spelled differently (a client that sends ``OpenAI-Beta: realtime=v1`` gets
#: the beta names).
BETA_NAMES = {
    "response.output_audio.delta": "response.audio.delta", "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta", "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
_BETA_CONTENT = {"output_audio": "audio", "output_text": "text"}


class _Refused(Exception):
    """The native session could not start for this event; the client has been told why."""


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass(slots=True)
class _Response:
    """One native response as a Realtime response."""

    native_id: str
    id: str
    audio: bool
    output: list[dict[str, Any]] = field(default_factory=list)
    message: dict[str, Any] | None = None
    message_index: int = -1
    transcript: list[str] = field(default_factory=list)
    resampler: rt_audio.OutputResampler | None = None
    samples: int = 0  # 24 kHz samples sent
    cancelled_by_client: bool = False
    chunk: p.AudioChunkEvent | None = None  # the announced frame not yet received


@dataclass(slots=True)
class _Config:
    """The session configuration as the client set it (Realtime fields, with our defaults)."""

    character: str | None = None
    scene: Scene = field(default_factory=Scene)
    player: p.Player = field(default_factory=p.Player)
    seed: int | None = None
    brief: str | None = None
    text_only: bool = False
    max_tokens: int | None = None
    #: None: no turn detection (the client commits); else the silence that ends a turn (None: the persona's).
    vad: bool = True
    silence_ms: int | None = None
    vad_extra: dict[str, Any] = field(default_factory=dict)
    transcription: dict[str, Any] | None = None
    voice: Any = None
    instructions: str | None = None
    #: The client's own function tools, as verbs the character may use (besides the scene's).
    tool_verbs: tuple[VerbDef, ...] = ()

    def effective_scene(self) -> Scene:
        """The scene the character acts in: the client's scene, plus its tools as verbs (a scene verb of the same name
        wins)."""
        if not self.tool_verbs:
            return self.scene
        names = {v.name for v in self.scene.verbs}
        return self.scene.model_copy(update={"verbs": [*self.scene.verbs, *(v for v in self.tool_verbs if v.name not in names)]})

    def start_key(self) -> tuple[Any, ...]:
        """What a native session is started with (a change needs a new native session)."""
        return (self.character, self.player, self.seed, self.brief, self.text_only, self.max_tokens, self.vad, self.silence_ms)


class RealtimeAdapter:
    """One Realtime connection. The endpoint feeds it text frames (:meth:`on_frame`) and writes :attr:`out` to the
    socket in order; :meth:`aclose` ends the native session."""

    def __init__(self, services: Services, *, identity: Identity = OPEN, model: str | None = None, beta: bool = False,
                 on_session: Callable[[Session, bool], None] | None = None) -> None:
        self.services = services
        self.identity = identity
        self.beta = beta
        self.id = _id("sess")
        self.out: asyncio.Queue[str] = asyncio.Queue(maxsize=4096)
        self.config = _Config(character=model or None)
        self.native: Session | None = None
        self._pump: asyncio.Task[None] | None = None
        self._on_session = on_session
        self._started_key: tuple[Any, ...] | None = None
        self._ready: p.SessionReady | None = None
        self._used = False  # anything said or heard in the native session (then its settings are locked)
        self._event_ids = itertools.count(1)
        self._native_ids = itertools.count(1)
        self._refs: OrderedDict[str, str | None] = OrderedDict()  # native message id -> the client's event_id
        # conversation
        self._last_item: str | None = None
        self._pending_text: list[str] = []
        self._pending_events: list[str] = []
        self._next_audio: bool | None = None  # the output modality asked by response.create for the next response
        self._cancel_asked: set[str] = set()
        self._responses: dict[str, _Response] = {}  # native id -> running response
        self._by_item: OrderedDict[str, tuple[_Response, float]] = OrderedDict()  # message item id -> (response, audio ms)
        # voice in
        self._utterances: dict[str, str] = {}  # utterance id -> user item id
        self._stable: dict[str, str] = {}
        self._in_speech = False
        self._awaiting_voice = False  # an utterance was committed; its transcript (and response) is on its way
        self._unclaimed_voice = False  # a voice response started that no response.create has asked for yet

    # ------------------------------------------------------------------ lifecycle

    @property
    def start_requested(self) -> bool:
        """Whether the client has named a character (the connection is then no idle socket)."""
        return self.config.character is not None

    async def open(self) -> None:
        await self._send({"type": "session.created", "session": self._session_object()})

    async def aclose(self) -> None:
        await self._stop_native(drain=False)

    # ------------------------------------------------------------------ client → server

    async def on_frame(self, frame: str | bytes) -> None:
        """One frame from the client. Bad input gets an ``error`` event; the connection stays."""
        event_id = None
        try:
            event = ev.parse_client_event(frame)
            event_id = event.event_id
            await self._dispatch(event)
        except _Refused:
            pass
        except ev.RealtimeError as exc:
            await self._error(exc.message, code=exc.code, type=exc.type, param=exc.param, event_id=exc.event_id or event_id)
        except NpcError as exc:
            await self._error(exc.message, code=_CODE_NAMES.get(exc.code, exc.code), type=_error_type(exc.code),
                              event_id=event_id)

    async def _dispatch(self, event: ev.ClientEvent) -> None:
        if isinstance(event, ev.SessionUpdate):
            await self._session_update(event)
        elif isinstance(event, ev.AudioAppend):
            await self._append(event)
        elif isinstance(event, ev.AudioCommit):
            native = await self._require_native(event)
            if not self._in_speech:
                raise ev.RealtimeError("buffer has no speech to commit (server VAD found none in the audio appended)",
                                       code="input_audio_buffer_commit_empty", event_id=event.event_id)
            self._awaiting_voice = True
            await native.handle(p.AudioCommit(id=self._ref(event.event_id)))
        elif isinstance(event, ev.AudioClear):
            native = await self._require_native(event)
            await native.handle(p.AudioClear(id=self._ref(event.event_id)))
            self._in_speech = False
            await self._send({"type": "input_audio_buffer.cleared"})
        elif isinstance(event, ev.ItemCreate):
            await self._item_create(event)
        elif isinstance(event, ev.ItemTruncate):
            await self._truncate(event)
        elif isinstance(event, ev.ResponseCreate):
            await self._response_create(event)
        elif isinstance(event, ev.ResponseCancel):
            await self._response_cancel(event)

    async def _session_update(self, event: ev.SessionUpdate) -> None:
        s, c = event.session, self.config
        new = _Config(**{name: getattr(c, name) for name in c.__dataclass_fields__})
        if s.has("model") and s.model:
            new.character = s.model
        if s.npc is not None:
            n = s.npc
            if n.character is not None:
                new.character = n.character
            if n.scene is not None:
                new.scene = n.scene
            if n.player is not None:
                new.player = n.player
            if "seed" in n.model_fields_set:
                new.seed = n.seed
            if "brief" in n.model_fields_set:
                new.brief = n.brief
        modalities = s.output_modalities if s.output_modalities is not None else s.modalities
        if modalities is not None:
            new.text_only = "audio" not in modalities
        limit = s.max_output_tokens if s.has("max_output_tokens") else s.max_response_output_tokens
        if s.has("max_output_tokens") or s.has("max_response_output_tokens"):
            new.max_tokens = None if limit in (None, "inf") else max(8, min(1024, int(limit)))
        audio_in = s.audio.input if s.audio is not None else None
        for fmt, param in ((audio_in.format if audio_in else None, "session.audio.input.format"),
                           (s.audio.output.format if s.audio and s.audio.output else None, "session.audio.output.format"),
                           (s.input_audio_format, "session.input_audio_format"),
                           (s.output_audio_format, "session.output_audio_format")):
            _check_format(fmt, param, event.event_id)
        if s.has("audio", "input", "turn_detection") or s.has("turn_detection"):
            td = audio_in.turn_detection if s.has("audio", "input", "turn_detection") and audio_in else s.turn_detection
            self._apply_turn_detection(new, td, event.event_id)
        if s.has("audio", "input", "transcription") or s.has("input_audio_transcription"):
            tr = audio_in.transcription if s.has("audio", "input", "transcription") and audio_in else s.input_audio_transcription
            new.transcription = tr.model_dump(exclude_none=True) if tr is not None else None
        voice = s.audio.output.voice if s.audio and s.audio.output and s.audio.output.voice is not None else s.voice
        if voice is not None:
            new.voice = voice
        if s.instructions is not None:
            new.instructions = s.instructions
        if s.tools is not None:
            new.tool_verbs = verbs_of_tools(s.tools, event.event_id)
            _check_scene(new.effective_scene(), event.event_id)
        if new.character is not None:
            self._persona(new.character)  # unknown_character before anything changes
        if self.native is not None and new.start_key() != self._started_key and self._used:
            raise ev.RealtimeError(
                "the character, player, output modalities, max_output_tokens and turn detection cannot change once the "
                "conversation has started; open a new connection", code="session_locked", param="session",
                event_id=event.event_id)
        old_scene = c.effective_scene()
        self.config = new
        if new.character is not None and (self.native is None or new.start_key() != self._started_key):
            if not await self._start_native(event.event_id):
                self.config = c
                return
        elif self.native is not None and new.effective_scene() != old_scene:
            await self.native.handle(p.SceneUpdate(id=self._ref(event.event_id), scene=new.effective_scene()))
        await self._send({"type": "session.updated", "session": self._session_object()})

    @staticmethod
    def _apply_turn_detection(new: _Config, td: ev.TurnDetection | None, event_id: str | None) -> None:
        if td is None:
            new.vad, new.silence_ms, new.vad_extra = False, None, {}
            return
        if td.type not in ("server_vad", "semantic_vad"):
            raise ev.RealtimeError(f"turn_detection.type {td.type[:40]!r} is not supported (server_vad, semantic_vad)",
                                   code="invalid_value", param="session.audio.input.turn_detection.type", event_id=event_id)
        if td.create_response is False:
            raise ev.RealtimeError("turn_detection.create_response false is not supported: a finished utterance is always "
                                   "answered (set turn_detection null and commit instead)", code="unsupported_parameter",
                                   param="session.audio.input.turn_detection.create_response", event_id=event_id)
        new.vad = True
        if td.silence_duration_ms is not None:
            new.silence_ms = max(150, min(5000, td.silence_duration_ms))
        new.vad_extra = td.model_dump(exclude_none=True)

    async def _append(self, event: ev.AudioAppend) -> None:
        try:
            pcm = rt_audio.decode_append(event.audio) if event.audio else b""
        except rt_audio.AudioDecodeError as exc:
            code = "invalid_base64" if "base64" in str(exc) else "bad_audio"
            raise ev.RealtimeError(str(exc), code=code, param="audio", event_id=event.event_id) from None
        native = await self._require_native(event)
        if pcm == b"":
            return
        await self._flush_events(native)
        self._used = True
        for frame in rt_audio.frames(pcm, p.MAX_AUDIO_FRAME_BYTES):
            await native.feed_audio(frame)

    async def _item_create(self, event: ev.ItemCreate) -> None:
        item = event.item
        if item.type == "function_call_output":
            if item.call_id is None:
                raise ev.RealtimeError("function_call_output needs call_id", code="invalid_event", param="item.call_id",
                                       event_id=event.event_id)
            await self._add_item({"type": "function_call_output", "call_id": item.call_id, "output": item.output or ""}, item.id)
            return
        if item.type != "message" or item.role not in ("user", "system"):
            raise ev.RealtimeError(f"only user and system messages and function_call_output items can be created (not "
                                   f"{item.type} {item.role or ''})".strip(), code="unsupported_item", param="item",
                                   event_id=event.event_id)
        texts = []
        for i, part in enumerate(item.content):
            if part.type not in ("input_text", "text") or part.text is None:
                raise ev.RealtimeError(f"content part {part.type[:40]!r} is not supported: a message is input_text "
                                       "(send voice with input_audio_buffer.append)", code="unsupported_content",
                                       param=f"item.content.{i}.type", event_id=event.event_id)
            texts.append(part.text)
        text = " ".join(t.strip() for t in texts if t.strip())
        if not text:
            raise ev.RealtimeError("the message has no text", code="invalid_event", param="item.content", event_id=event.event_id)
        if len(text) > p.MAX_TEXT_CHARS:
            raise ev.RealtimeError(f"text of {len(text)} characters exceeds the limit of {p.MAX_TEXT_CHARS}",
                                   code="text_too_large", param="item.content", event_id=event.event_id)
        await self._require_native(event)
        (self._pending_text if item.role == "user" else self._pending_events).append(text)
        await self._add_item({"type": "message", "role": item.role, "content": [{"type": "input_text", "text": text}]}, item.id)

    async def _add_item(self, item: dict[str, Any], item_id: str | None) -> None:
        item = {"id": item_id or _id("item"), "object": "realtime.item", "status": "completed", **item}
        previous, self._last_item = self._last_item, item["id"]
        await self._send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        if not self.beta:
            await self._send({"type": "conversation.item.done", "previous_item_id": previous, "item": item})

    async def _flush_events(self, native: Session, *, react_last: bool = False) -> None:
        """Pending system messages (game events) to the character: perceived, and the last one reacted to when asked."""
        events, self._pending_events = self._pending_events, []
        for i, text in enumerate(events):
            await native.handle(p.GameEvent(id=self._ref(None), description=text, react=react_last and i == len(events) - 1))

    async def _response_create(self, event: ev.ResponseCreate) -> None:
        native = await self._require_native(event)
        params = event.response or ev.ResponseParams()
        if params.conversation == "none" or params.input:
            raise ev.RealtimeError("out-of-band responses (conversation none, input) are not supported", code="unsupported_parameter",
                                   param="response.conversation", event_id=event.event_id)
        modalities = params.output_modalities if params.output_modalities is not None else params.modalities
        audio = not self.config.text_only and (modalities is None or "audio" in modalities)
        self._used = True
        if self._pending_text:
            text, self._pending_text = " ".join(self._pending_text), []
            await self._flush_events(native)
            self._next_audio = audio
            await native.handle(p.TextInput(id=self._ref(event.event_id), text=text[: p.MAX_TEXT_CHARS]))
        elif self._pending_events:
            self._next_audio = audio
            await self._flush_events(native, react_last=True)
        elif params.instructions:
            self._next_audio = audio
            await native.handle(p.GameEvent(id=self._ref(event.event_id), description=params.instructions[: p.MAX_TEXT_CHARS],
                                            react=True))
        elif self._in_speech or self._awaiting_voice or self._unclaimed_voice:
            self._unclaimed_voice = False  # an utterance is answered on its own (it always is): this asks for that response
        else:
            # nothing new to answer (e.g. after function_call_output: the character has already spoken its line)
            rid = _id("resp")
            response = {"id": rid, "object": "realtime.response", "status": "in_progress", "output": [],
                        "output_modalities": ["audio"] if audio else ["text"], "conversation_id": self.id, "usage": None}
            await self._send({"type": "response.created", "response": response})
            await self._send({"type": "response.done", "response": {**response, "status": "completed",
                                                                     "usage": _usage(0)}})

    async def _response_cancel(self, event: ev.ResponseCancel) -> None:
        native = self.native
        running = [r for r in self._responses.values()]
        if native is None or not running:
            raise ev.RealtimeError("no response in progress to cancel", code="response_cancel_not_active", event_id=event.event_id)
        target = running[-1]
        if event.response_id is not None:
            found = [r for r in running if r.id == event.response_id]
            if not found:
                raise ev.RealtimeError(f"response {event.response_id[:60]!r} is not in progress", code="response_cancel_not_active",
                                       param="response_id", event_id=event.event_id)
            target = found[0]
        target.cancelled_by_client = True
        await native.handle(p.ResponseCancel(id=self._ref(event.event_id), response_id=target.native_id))

    async def _truncate(self, event: ev.ItemTruncate) -> None:
        native = await self._require_native(event)
        found = self._by_item.get(event.item_id)
        if found is None:
            raise ev.RealtimeError(f"no assistant audio item {event.item_id[:60]!r}", code="item_not_found", param="item_id",
                                   event_id=event.event_id)
        response, _ = found
        if event.content_index != 0:
            raise ev.RealtimeError("content_index must be 0 (the message's one audio part)", code="invalid_value",
                                   param="content_index", event_id=event.event_id)
        audio_ms = rt_audio.duration_ms(response.samples)
        if event.audio_end_ms > audio_ms + 1:
            raise ev.RealtimeError(f"audio_end_ms {event.audio_end_ms} is past the item's audio ({audio_ms:.0f} ms)",
                                   code="invalid_value", param="audio_end_ms", event_id=event.event_id)
        await native.handle(p.PlaybackMark(id=self._ref(event.event_id), response_id=response.native_id,
                                           played_ms=float(event.audio_end_ms), stopped=True))
        await self._send({"type": "conversation.item.truncated", "item_id": event.item_id, "content_index": 0,
                          "audio_end_ms": event.audio_end_ms})

    # ------------------------------------------------------------------ the native session

    async def _require_native(self, event: ev.ClientEvent) -> Session:
        if self.native is None:
            if self.config.character is None:
                raise ev.RealtimeError("no character: connect with ?model=<persona id> or send session.update with "
                                       "session.model (docs/realtime.md)", code="no_session", event_id=event.event_id)
            if not await self._start_native(event.event_id):
                raise _Refused  # the session's own error (unknown_character, not_ready, ...) has been sent
        assert self.native is not None
        return self.native

    def _persona(self, character: str) -> Persona:
        return self.services.personas.get(character)

    async def _start_native(self, event_id: str | None) -> bool:
        """(Re)start the native session with the current config. False when it did not start (its error was sent)."""
        c = self.config
        assert c.character is not None
        await self._stop_native(drain=True)
        listen = p.ListenOptions(end_silence_ms=c.silence_ms if c.vad else 5000, partials=True)
        start = p.SessionStart(
            id=self._ref(event_id), character=c.character, player=c.player, scene=c.effective_scene(),
            options=p.SessionOptions(text_only=c.text_only, max_tokens=c.max_tokens, seed=c.seed, brief=c.brief,
                                     audio_in=p.AudioInFormat(sample_rate=rt_audio.RATE), listen=listen))
        session = Session(self.services, identity=self.identity)
        self.native = session
        self._ready = None
        self._pump = asyncio.create_task(self._run_pump(session), name=f"realtime-pump-{self.id}")
        if self._on_session is not None:
            self._on_session(session, True)
        await session.handle(start)
        if not session.start_requested:  # refused (unknown character, forbidden, not ready, invalid scene): said already
            await self._stop_native(drain=True)
            return False
        self._started_key = c.start_key()
        self._used = False
        return True

    async def _stop_native(self, *, drain: bool) -> None:
        session, pump = self.native, self._pump
        if session is None:
            return
        if drain:
            await session.outbox.join()
        self.native, self._pump, self._started_key = None, None, None
        await session.aclose()
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        self._responses.clear()
        self._in_speech = False
        if self._on_session is not None:
            self._on_session(session, False)

    async def _run_pump(self, session: Session) -> None:
        """Translate the native session's outbox into Realtime events, in order."""
        while True:
            item = await session.outbox.get()
            try:
                if isinstance(item, Passthrough):
                    await self._write(item.payload)
                elif isinstance(item, bytes):
                    await self._on_audio(item)
                else:
                    await self._on_native(item)
            except Exception:
                log.exception("a native event could not be translated", event_type=str(getattr(item, "type", type(item).__name__)))
                await self._write(error_event("the server failed on an event (a bug: please report it)", code="internal",
                                               type="server_error"))
            finally:
                session.outbox.task_done()

    async def _on_native(self, e: Any) -> None:  # noqa: C901 - one branch per native event type
        if isinstance(e, p.SessionReady):
            self._ready = e
        elif isinstance(e, p.ResponseStart):
            audio = self._next_audio if self._next_audio is not None else not self.config.text_only
            self._next_audio = None
            if e.trigger == "voice":
                audio = not self.config.text_only
                self._awaiting_voice, self._unclaimed_voice = False, True
            started = _Response(native_id=e.response_id, id=f"resp_{e.response_id}", audio=audio and self._audio_out)
            self._responses[e.response_id] = started
            await self._write({"type": "response.created", "response": self._response_object(started, "in_progress")})
        elif isinstance(e, p.TextDelta):
            r = self._responses.get(e.response_id)
            if r is not None and e.text:
                item = await self._open_message(r)
                r.transcript.append(e.text)
                kind = "response.output_audio_transcript.delta" if r.audio else "response.output_text.delta"
                await self._write({"type": kind, "response_id": r.id, "item_id": item["id"], "output_index": r.message_index,
                                   "content_index": 0, "delta": e.text})
        elif isinstance(e, p.AudioChunkEvent):
            r = self._responses.get(e.response_id)
            if r is not None:
                r.chunk = e
        elif isinstance(e, p.ActionEvent):
            await self._on_action(e)
        elif isinstance(e, p.EmotionEvent):
            await self._write({"type": "npc.emotion", "response_id": f"resp_{e.response_id}", "emotion": e.emotion,
                               "text_offset": e.text_offset, "at_ms": e.at_ms})
        elif isinstance(e, p.ResponseEnd):
            await self._on_end(e)
        elif isinstance(e, p.ResponseInterrupted):
            await self._write({"type": "npc.response.interrupted", "response_id": f"resp_{e.response_id}",
                               "reason": "turn_detected"})
        elif isinstance(e, p.SpeechStarted):
            self._in_speech = True
            item_id = self._utterances.setdefault(e.utterance_id, _id("item"))
            await self._write({"type": "input_audio_buffer.speech_started", "audio_start_ms": int(e.at_ms), "item_id": item_id})
        elif isinstance(e, p.SpeechStopped):
            self._in_speech = False
            item_id = self._utterances.setdefault(e.utterance_id, _id("item"))
            await self._write({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": int(e.at_ms), "item_id": item_id})
            if e.discarded:
                await self._write({"type": "npc.speech_discarded", "item_id": item_id, "duration_ms": e.duration_ms})
                return
            self._awaiting_voice = True
            previous, self._last_item = self._last_item, item_id
            await self._write({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous})
            item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                    "content": [{"type": "input_audio", "transcript": None}]}
            await self._write({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        elif isinstance(e, p.TranscriptPartial):
            item_id = self._utterances.setdefault(e.utterance_id, _id("item"))
            before = self._stable.get(e.utterance_id, "")
            if self.config.transcription is not None and e.stable.startswith(before) and len(e.stable) > len(before):
                self._stable[e.utterance_id] = e.stable
                await self._write({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id,
                                   "content_index": 0, "delta": e.stable[len(before):]})
        elif isinstance(e, p.TranscriptFinal):
            item_id = self._utterances.pop(e.utterance_id, "") or _id("item")
            self._stable.pop(e.utterance_id, None)
            if e.backchannel or not e.text.strip():
                self._awaiting_voice = False  # no response follows
            if self.config.transcription is not None:
                seconds = round(e.timings.get("duration_ms", 0.0) / 1000.0, 3)
                await self._write({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                                   "content_index": 0, "transcript": e.text,
                                   "usage": {"type": "duration", "seconds": seconds}, "npc": {"backchannel": e.backchannel,
                                                                                              "timings": e.timings}})
            if not self.beta:
                item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                        "content": [{"type": "input_audio", "transcript": e.text}]}
                await self._write({"type": "conversation.item.done", "item": item})
        elif isinstance(e, p.ErrorEvent):
            event_id = self._refs.get(e.ref) if e.ref else None
            await self._write(error_event(e.message, code=_CODE_NAMES.get(e.code, e.code), type=_error_type(e.code, e.retryable),
                                           event_id=event_id))
        # scene.updated, game.event.accepted, pong, scene.converse.end: nothing to say in Realtime terms

    @property
    def _audio_out(self) -> bool:
        return self._ready is not None and self._ready.audio is not None

    async def _open_message(self, r: _Response) -> dict[str, Any]:
        if r.message is None:
            part = "output_audio" if r.audio else "output_text"
            r.message = {"id": _id("item"), "object": "realtime.item", "type": "message", "role": "assistant",
                         "status": "in_progress", "content": []}
            r.message_index = len(r.output)
            r.output.append(r.message)
            await self._write({"type": "response.output_item.added", "response_id": r.id, "output_index": r.message_index,
                               "item": r.message})
            empty = {"type": part, "transcript": ""} if r.audio else {"type": part, "text": ""}
            await self._write({"type": "response.content_part.added", "response_id": r.id, "item_id": r.message["id"],
                               "output_index": r.message_index, "content_index": 0, "part": empty})
        return r.message

    async def _on_audio(self, pcm: bytes) -> None:
        r = next((x for x in self._responses.values() if x.chunk is not None), None)
        if r is None or r.chunk is None:
            return
        chunk, r.chunk = r.chunk, None
        if not r.audio:
            return
        item = await self._open_message(r)
        if r.resampler is None:
            r.resampler = rt_audio.OutputResampler(chunk.sample_rate or (self._ready.audio.sample_rate if self._ready and self._ready.audio else rt_audio.RATE))
        out = r.resampler.feed(pcm)
        await self._audio_delta(r, item, out)
        await self._write({"type": "npc.visemes", "response_id": r.id, "item_id": item["id"], "output_index": r.message_index,
                           "content_index": 0, "start_ms": chunk.start_ms,
                           "visemes": [v.model_dump() for v in chunk.visemes]})

    async def _audio_delta(self, r: _Response, item: dict[str, Any], pcm: bytes) -> None:
        if not pcm:
            return
        r.samples += len(pcm) // 2
        await self._write({"type": "response.output_audio.delta", "response_id": r.id, "item_id": item["id"],
                           "output_index": r.message_index, "content_index": 0, "delta": rt_audio.encode(pcm)})

    async def _on_action(self, e: p.ActionEvent) -> None:
        r = self._responses.get(e.response_id)
        if r is None:
            return
        arguments = json.dumps(e.args, separators=(",", ":"))
        item = {"id": _id("item"), "object": "realtime.item", "type": "function_call", "status": "in_progress",
                "name": e.verb, "call_id": _id("call"), "arguments": ""}
        index = len(r.output)
        r.output.append(item)
        base = {"response_id": r.id, "item_id": item["id"], "output_index": index, "call_id": item["call_id"]}
        await self._write({"type": "response.output_item.added", "response_id": r.id, "output_index": index, "item": dict(item)})
        await self._write({"type": "response.function_call_arguments.delta", **base, "delta": arguments})
        await self._write({"type": "response.function_call_arguments.done", **base, "name": e.verb, "arguments": arguments})
        item.update(status="completed", arguments=arguments)
        await self._write({"type": "response.output_item.done", "response_id": r.id, "output_index": index, "item": dict(item)})
        await self._write({"type": "npc.action", "response_id": r.id, "item_id": item["id"], "call_id": item["call_id"],
                           "name": e.verb, "arguments": arguments, "text_offset": e.text_offset, "at_ms": e.at_ms})

    async def _on_end(self, e: p.ResponseEnd) -> None:
        r = self._responses.pop(e.response_id, None)
        if r is None:
            return
        status, reason = {"completed": ("completed", None), "failed": ("failed", None)}.get(e.status, ("cancelled", None))
        if e.status == "interrupted":
            reason = "client_cancelled" if r.cancelled_by_client else "turn_detected"
        elif e.status == "completed" and e.truncated:
            status, reason = "incomplete", "max_output_tokens"
        item = r.message
        if item is None and e.text:
            item = await self._open_message(r)
        if item is not None:
            if r.resampler is not None:
                await self._audio_delta(r, item, r.resampler.flush())
            text = "".join(r.transcript) or e.text
            if r.audio:
                await self._write({"type": "response.output_audio.done", "response_id": r.id, "item_id": item["id"],
                                   "output_index": r.message_index, "content_index": 0})
                await self._write({"type": "response.output_audio_transcript.done", "response_id": r.id, "item_id": item["id"],
                                   "output_index": r.message_index, "content_index": 0, "transcript": text})
                part = {"type": "output_audio", "transcript": text}
            else:
                await self._write({"type": "response.output_text.done", "response_id": r.id, "item_id": item["id"],
                                   "output_index": r.message_index, "content_index": 0, "text": text})
                part = {"type": "output_text", "text": text}
            await self._write({"type": "response.content_part.done", "response_id": r.id, "item_id": item["id"],
                               "output_index": r.message_index, "content_index": 0, "part": part})
            item.update(status="completed" if status == "completed" else "incomplete", content=[part])
            await self._write({"type": "response.output_item.done", "response_id": r.id, "output_index": r.message_index,
                               "item": item})
            self._last_item = item["id"]
            self._by_item[item["id"]] = (r, rt_audio.duration_ms(r.samples))
            while len(self._by_item) > RECENT_RESPONSES:
                self._by_item.popitem(last=False)
        done = self._response_object(r, status)
        done["status_details"] = {"type": status, "reason": reason,
                                  "error": {"type": "server_error", "code": e.error} if e.error else None}
        done["usage"] = _usage(int(e.timings.get("tokens", 0)))
        done["npc"] = {"native_response_id": e.response_id, "timings": e.timings, "actions": [a.model_dump() for a in e.actions],
                       "audio_ms": e.audio_ms, "heard_ms": e.heard_ms, "heard_text": e.heard_text,
                       "sources": [s.model_dump() for s in e.sources], "knowledge": e.knowledge}
        await self._write({"type": "response.done", "response": done})

    def _response_object(self, r: _Response, status: str) -> dict[str, Any]:
        return {"id": r.id, "object": "realtime.response", "status": status, "conversation_id": self.id,
                "output": [dict(x) for x in r.output], "output_modalities": ["audio"] if r.audio else ["text"],
                "status_details": None, "usage": None,
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": rt_audio.RATE}}} if r.audio else None}

    # ------------------------------------------------------------------ output

    def _ref(self, event_id: str | None) -> str:
        """A native message id for a client event (errors it causes are answered with its ``event_id``)."""
        ref = f"rt{next(self._native_ids)}"
        self._refs[ref] = event_id
        while len(self._refs) > 256:
            self._refs.popitem(last=False)
        return ref

    async def _send(self, event: dict[str, Any]) -> None:
        """An event the adapter makes: through the native outbox when a session runs (in order with its events)."""
        native = self.native
        if native is not None and self._pump is not None:
            await native.emit(Passthrough(event))  # in order with the session's events
        else:
            await self._write(event)

    async def _write(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if self.beta:
            kind = BETA_NAMES.get(kind, kind)
            if kind == "conversation.item.done":
                return
            event = _beta_content(event)
        frame = json.dumps({"type": kind, "event_id": f"event_{next(self._event_ids)}",
                            **{k: v for k, v in event.items() if k != "type"}}, ensure_ascii=False)
        await self.out.put(frame)

    async def _error(self, message: str, *, code: str, type: str = "invalid_request_error", param: str | None = None,
                     event_id: str | None = None) -> None:
        await self._send(error_event(message, code=code, type=type, param=param, event_id=event_id))

    # ------------------------------------------------------------------ the session object

    def _session_object(self) -> dict[str, Any]:
        c = self.config
        persona = None
        if c.character is not None:
            try:
                persona = self._persona(c.character)
            except NpcError:
                persona = None
        listen = self._ready.listen if self._ready is not None else None
        silence = c.silence_ms or (listen.end_silence_ms if listen else (persona.listen.end_silence_ms if persona else 500))
        turn_detection = ({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": silence,
                           "create_response": True, "interrupt_response": True, "idle_timeout_ms": None,
                           **{k: v for k, v in c.vad_extra.items() if k not in ("type", "silence_duration_ms")}}
                          if c.vad else None)
        fmt = {"type": "audio/pcm", "rate": rt_audio.RATE}
        return {
            "type": "realtime", "object": "realtime.session", "id": self.id, "model": c.character,
            "output_modalities": ["text"] if c.text_only else ["audio"],
            "instructions": c.instructions or "",
            "audio": {"input": {"format": fmt, "transcription": c.transcription, "noise_reduction": None,
                                "turn_detection": turn_detection},
                      "output": {"format": fmt, "voice": (persona.voice.voice if persona and persona.voice.voice else c.voice) or "persona",
                                 "speed": persona.voice.speed if persona else 1.0}},
            "tools": self._tools(persona), "tool_choice": "auto",
            "max_output_tokens": c.max_tokens if c.max_tokens is not None else "inf",
            "npc": {"character": {"id": persona.id, "name": persona.name} if persona else None,
                    "scene": c.scene.model_dump(exclude_none=True), "player": c.player.model_dump(exclude_none=True),
                    "actions": list(self._ready.actions) if self._ready is not None else None},
        }

    def _tools(self, persona: Persona | None) -> list[dict[str, Any]]:
        """Each verb the character may use in its scene, as a function tool whose arguments name the scene's entities."""
        if persona is None:
            return []
        scene = self.config.effective_scene().without(persona.id)
        targets = Targets.of(scene, persona.id)
        return [tool_of(verb, targets) for verb in usable_definitions(scene, persona.actions, self_id=persona.id)]


def tool_of(verb: VerbDef, targets: Targets) -> dict[str, Any]:
    """A verb as a Realtime function tool: one string property per argument, its choices as an ``enum``."""
    properties = {}
    for arg in verb.args:
        kind = f"one of the scene's {arg.type} ids" if arg.type not in (None, "any") else (
            "any id of the scene" if arg.type == "any" else "one of the listed words")
        properties[arg.name] = {"type": "string", "enum": list(targets.choices(arg)), "description": kind}
    return {"type": "function", "name": verb.name, "description": verb.description,
            "parameters": {"type": "object", "properties": properties, "required": [a.name for a in verb.args],
                           "additionalProperties": False}}


def verbs_of_tools(tools: list[ev.FunctionTool], event_id: str | None) -> tuple[VerbDef, ...]:
    """A client's function tools as verbs the character may use: the name is the verb, the description the line the
    model is shown, each parameter an argument — a string ``enum`` is its closed list of values, else ``x-npc-type``
    (``object``, ``location``, ``character``, ``any``; default ``any``) says which of the scene's entities it names.
    A built-in verb's name (``move``, ``grab``, ``give``) is the built-in (skipped). Raises :class:`RealtimeError`
    (``invalid_value``) for a tool that cannot be a verb."""
    verbs: list[VerbDef] = []
    for i, tool in enumerate(tools):
        param = f"session.tools.{i}"
        if tool.type != "function":
            raise ev.RealtimeError(f"tool type {str(tool.type)[:40]!r} is not supported: function tools only",
                                   code="unsupported_parameter", param=f"{param}.type", event_id=event_id)
        if tool.name in BUILTIN_VERB_NAMES:
            continue
        parameters = tool.parameters if isinstance(tool.parameters, dict) else {}
        properties = parameters.get("properties") or {}
        try:
            if not isinstance(properties, dict):
                raise ValueError("parameters.properties must be an object")
            args = []
            for name, spec in properties.items():
                spec = spec if isinstance(spec, dict) else {}
                if spec.get("enum"):
                    args.append(VerbArg(name=name, values=tuple(str(v) for v in spec["enum"])))
                else:
                    args.append(VerbArg(name=name, type=spec.get("x-npc-type", "any")))
            verbs.append(VerbDef(name=tool.name or "", description=(tool.description or tool.name or "")[:120], args=tuple(args)))
        except (ValidationError, ValueError) as exc:
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ev.RealtimeError(f"tool {str(tool.name)[:40]!r} cannot be a verb of the character: {detail}"[:300],
                                   code="invalid_value", param=param, event_id=event_id) from None
    return tuple(verbs)


def _check_scene(scene: Scene, event_id: str | None) -> None:
    """The scene with the tools' verbs must still be a valid scene (at most 32 verbs, no duplicate)."""
    try:
        Scene.model_validate(scene.model_dump())
    except ValidationError as exc:
        raise ev.RealtimeError(f"the scene with the tools is not valid: {exc.errors()[0]['msg']}"[:300], code="invalid_value",
                               param="session.tools", event_id=event_id) from None


def _check_format(fmt: ev.AudioFormat | str | None, param: str, event_id: str | None) -> None:
    if fmt is None:
        return
    if isinstance(fmt, str):
        ok = fmt == "pcm16"
        name = fmt
    else:
        ok = fmt.type in (None, "audio/pcm") and fmt.rate in (None, rt_audio.RATE)
        name = f"{fmt.type or 'audio/pcm'} at {fmt.rate or rt_audio.RATE} Hz"
    if not ok:
        raise ev.RealtimeError(f"audio format {name[:60]!r} is not supported: only PCM16 at 24 kHz (audio/pcm, rate 24000; "
                               "beta: pcm16)", code="unsupported_audio_format", param=param, event_id=event_id)


def _error_type(code: str, retryable: bool = False) -> str:
    return "server_error" if retryable or code in _SERVER_CODES else "invalid_request_error"


def error_event(message: str, *, code: str, type: str, param: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type, "code": code, "message": message, "param": param, "event_id": event_id}}


def _usage(output_tokens: int) -> dict[str, Any]:
    return {"total_tokens": output_tokens, "input_tokens": 0, "output_tokens": output_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0}}


def _beta_content(event: dict[str, Any]) -> dict[str, Any]:
    """GA content part types → beta (``output_audio`` → ``audio``, ``output_text`` → ``text``)."""
    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: fix(v) for k, v in value.items()}
            if isinstance(out.get("type"), str) and out["type"] in _BETA_CONTENT:
                out["type"] = _BETA_CONTENT[out["type"]]
            return out
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value
    return {k: fix(v) for k, v in event.items()}
