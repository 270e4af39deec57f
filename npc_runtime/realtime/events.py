"""The OpenAI Realtime API's client events, as far as this endpoint reads them: pydantic models, and
:func:`parse_client_event`, which turns a text frame into one of them or raises :class:`RealtimeError` with the
standard error shape's ``type`` and ``code``. Sans-I/O.

Both generations of the API are read: the GA shapes (``session.audio.input.turn_detection``, ``output_modalities``,
``audio/pcm`` formats) and the beta ones where they differ (``turn_detection``, ``input_audio_transcription``,
``modalities``, ``input_audio_format: "pcm16"``, ``max_response_output_tokens``). Fields this endpoint does not use
are accepted and ignored (clients send many); fields it uses are type-checked. The NPC extension lives in
``session.npc`` (docs/realtime.md).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from npc_runtime.protocol import Player
from npc_runtime.scene import Scene

#: Largest text frame read (bytes): an ``input_audio_buffer.append`` of ~16 s of 24 kHz audio in base64. Larger
#: frames are refused by the WebSocket layer (close 1009).
MAX_FRAME_BYTES = 1024 * 1024

#: Client events this endpoint acts on.
SUPPORTED = ("session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
             "conversation.item.create", "conversation.item.truncate", "response.create", "response.cancel")
#: Client events of the API this endpoint knows but does not support (answered with ``unsupported_event``).
UNSUPPORTED = ("conversation.item.delete", "conversation.item.retrieve", "output_audio_buffer.clear",
               "transcription_session.update")


class RealtimeError(Exception):
    """A client event that cannot be acted on: the ``error`` event's ``type``, ``code``, ``message``, ``param``."""

    def __init__(self, message: str, *, code: str, type: str = "invalid_request_error", param: str | None = None,
                 event_id: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.type, self.param, self.event_id = message, code, type, param, event_id


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class AudioFormat(_Lenient):
    """GA: ``{"type": "audio/pcm", "rate": 24000}``."""

    type: str | None = None
    rate: int | None = None


class TurnDetection(_Lenient):
    type: str = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    eagerness: str | None = None
    idle_timeout_ms: int | None = None


class Transcription(_Lenient):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class AudioInput(_Lenient):
    format: AudioFormat | str | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: Any = None


class AudioOutput(_Lenient):
    format: AudioFormat | str | None = None
    voice: Any = None
    speed: float | None = None


class AudioConfig(_Lenient):
    input: AudioInput | None = None
    output: AudioOutput | None = None


class FunctionTool(_Lenient):
    type: str = "function"
    name: str | None = None
    description: str | None = None
    parameters: Any = None


class NpcExtension(BaseModel):
    """``session.npc``: what a Realtime session does not have words for."""

    model_config = ConfigDict(extra="forbid")
    character: str | None = Field(default=None, description="The persona id (else session.model, else ?model=).")
    scene: Scene | None = Field(default=None, description="The scene, as in session.start (objects, locations, characters, verbs).")
    player: Player | None = Field(default=None, description="The player {id, name}; without an id, anonymous (nothing remembered).")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    brief: str | None = Field(default=None, max_length=2000, description="Extra instructions for this session (options.brief).")


class SessionConfig(_Lenient):
    type: str | None = None
    model: str | None = None
    instructions: str | None = None
    output_modalities: list[Literal["text", "audio"]] | None = None
    modalities: list[Literal["text", "audio"]] | None = None  # beta
    audio: AudioConfig | None = None
    voice: Any = None  # beta
    input_audio_format: str | None = None  # beta
    output_audio_format: str | None = None  # beta
    input_audio_transcription: Transcription | None = None  # beta
    turn_detection: TurnDetection | None = None  # beta
    tools: list[FunctionTool] | None = None
    tool_choice: Any = None
    max_output_tokens: int | Literal["inf"] | None = None
    max_response_output_tokens: int | Literal["inf"] | None = None  # beta
    npc: NpcExtension | None = None

    def has(self, *path: str) -> bool:
        """Whether the client sent this field (``None`` included: a ``null`` turns a feature off)."""
        node: Any = self
        for name in path:
            if not isinstance(node, BaseModel) or name not in node.model_fields_set:
                return False
            node = getattr(node, name)
        return True


class _Event(_Lenient):
    type: str
    event_id: str | None = None


class SessionUpdate(_Event):
    type: Literal["session.update"]
    session: SessionConfig


class AudioAppend(_Event):
    type: Literal["input_audio_buffer.append"]
    audio: str


class AudioCommit(_Event):
    type: Literal["input_audio_buffer.commit"]


class AudioClear(_Event):
    type: Literal["input_audio_buffer.clear"]


class ContentPart(_Lenient):
    type: str
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None


class Item(_Lenient):
    id: str | None = None
    type: Literal["message", "function_call", "function_call_output"]
    role: Literal["user", "assistant", "system"] | None = None
    content: list[ContentPart] = Field(default_factory=list)
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class ItemCreate(_Event):
    type: Literal["conversation.item.create"]
    item: Item
    previous_item_id: str | None = None


class ItemTruncate(_Event):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


class ResponseParams(_Lenient):
    output_modalities: list[Literal["text", "audio"]] | None = None
    modalities: list[Literal["text", "audio"]] | None = None  # beta
    instructions: str | None = None
    conversation: str | None = None
    input: list[Any] | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    max_response_output_tokens: int | Literal["inf"] | None = None  # beta
    metadata: dict[str, Any] | None = None


class ResponseCreate(_Event):
    type: Literal["response.create"]
    response: ResponseParams | None = None


class ResponseCancel(_Event):
    type: Literal["response.cancel"]
    response_id: str | None = None


ClientEvent = SessionUpdate | AudioAppend | AudioCommit | AudioClear | ItemCreate | ItemTruncate | ResponseCreate | ResponseCancel
_MODELS: dict[str, type[_Event]] = {
    "session.update": SessionUpdate, "input_audio_buffer.append": AudioAppend, "input_audio_buffer.commit": AudioCommit,
    "input_audio_buffer.clear": AudioClear, "conversation.item.create": ItemCreate,
    "conversation.item.truncate": ItemTruncate, "response.create": ResponseCreate, "response.cancel": ResponseCancel,
}


def event_id_of(data: Any) -> str | None:
    """The client's ``event_id`` when it is a short string (echoed in ``error.event_id``)."""
    value = data.get("event_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and len(value) <= 128 and value.isprintable() else None


def parse_client_event(frame: str | bytes) -> ClientEvent:
    """One client text frame → its event, or :class:`RealtimeError` (``invalid_json``, ``invalid_event``,
    ``unknown_event_type``, ``unsupported_event``)."""
    if isinstance(frame, bytes):
        raise RealtimeError("binary frames are not part of the Realtime API: send audio as input_audio_buffer.append "
                            "(base64 PCM16)", code="binary_frame")
    try:
        data = json.loads(frame, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise RealtimeError("the frame is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise RealtimeError("an event must be a JSON object", code="invalid_event")
    event_id = event_id_of(data)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise RealtimeError("an event needs a string type", code="invalid_event", param="type", event_id=event_id)
    if kind in UNSUPPORTED:
        raise RealtimeError(f"{_short(kind)} is not supported by this server (docs/realtime.md)", code="unsupported_event",
                            param="type", event_id=event_id)
    model = _MODELS.get(kind)
    if model is None:
        raise RealtimeError(f"unknown event type {_short(kind)!r}; supported: {', '.join(SUPPORTED)}",
                            code="unknown_event_type", param="type", event_id=event_id)
    try:
        return model.model_validate(data)  # type: ignore[return-value]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(event)"
        raise RealtimeError(f"invalid {kind}: {where}: {first['msg']}"[:400], code="invalid_event", param=where[:200],
                            event_id=event_id) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _short(text: str) -> str:
    text = text[:60]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
