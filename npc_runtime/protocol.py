"""Protocol v1: every message on the wire, as pydantic models. Sans-I/O.

Client → server messages and server → client events are JSON objects in text frames,
discriminated by ``type``. Binary frames carry PCM16 audio: from the server, the reply's speech
(each frame announced by the ``response.audio`` event just before it); from the client, the
player's microphone (mono PCM16 at the rate declared in ``session.start``; no announcement).
Every server event carries
``response_id``: the id of the response (turn) it belongs to, or ``null`` for session-level
events, so a client can drop stale events after an interruption.

:func:`parse_client_message` turns a text frame into a typed message or raises
:class:`~npc_runtime.errors.ProtocolError` with a stable code; :func:`encode_event` turns a
server event into a text frame. Nothing here touches a socket.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from npc_runtime import PROTOCOL_VERSION
from npc_runtime.errors import ProtocolError
from npc_runtime.scene import EntityId, Scene, VerbName

#: Largest text frame the server accepts (bytes). Larger frames get ``message_too_large``.
MAX_MESSAGE_BYTES = 64 * 1024
#: Longest player utterance / game event description (characters): ``text_too_large``.
MAX_TEXT_CHARS = 2000
#: Largest binary (microphone audio) frame from a client: ``audio_frame_too_large``.
MAX_AUDIO_FRAME_BYTES = 64 * 1024
#: Deepest nesting of arrays and objects in a client message (the deepest valid one, a ``session.start`` with a
#: scene, needs 4). Deeper frames get ``invalid_message`` before they are parsed, so without ``ref``.
MAX_DEPTH = 32
#: Longest client message id (``ref`` echoes only ids that are strings this long at most).
MAX_ID_CHARS = 64


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- client → server


#: What started a response; how it ended; the visemes and emotions the events carry.
Trigger = Literal["text", "voice", "game_event", "converse"]
ResponseStatus = Literal["completed", "interrupted", "failed"]
Viseme = Literal["sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou"]
Emotion = Literal["neutral", "joy", "anger", "sadness", "fear", "surprise", "disgust"]


class Player(_Msg):
    id: EntityId | None = Field(default=None, description="Stable player id (memory is kept per player and character). Left out: an "
                                                       "anonymous player, remembered by no one. With auth on it comes from the player token (this field is ignored).")
    name: str | None = Field(default=None, max_length=80, description="How the character should call the player.")


class AudioInFormat(_Msg):
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    sample_rate: int = Field(default=16000, ge=8000, le=48000, description="Samples per second of the microphone audio the client sends (resampled to 16 kHz by the server).")
    channels: Literal[1] = 1


class ListenOptions(_Msg):
    end_silence_ms: int | None = Field(default=None, ge=150, le=5000, description="Silence that ends the player's turn; default: the persona's.")
    barge_in_ms: int | None = Field(default=None, ge=0, le=5000, description="Speech over the character shorter than this is a backchannel ('uh-huh') and does not interrupt; default: the persona's.")
    partials: bool = Field(default=True, description="Send transcript.partial events while the player speaks.")


class SessionOptions(_Msg):
    text_only: bool = Field(default=False, description="Text and actions only: no audio, no visemes (also the case when the server runs no TTS).")
    max_tokens: int | None = Field(default=None, ge=8, le=1024, description="Cap on reply length (tokens); default: the persona's.")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Sampling seed (0 to 2^32-1), for repeatable replies.")
    audio_in: AudioInFormat = Field(default_factory=AudioInFormat, description="Format of the microphone audio in the client's binary frames.")
    listen: ListenOptions = Field(default_factory=ListenOptions, description="End of turn and barge-in tuning for voice input.")
    brief: str | None = Field(default=None, max_length=2000, description="Extra instructions for the character in this session only — e.g. a simulation's role brief (goals, what only it knows, how difficult to be).")


class SessionStart(_Msg):
    type: Literal["session.start"] = "session.start"
    id: str | None = Field(default=None, max_length=64, description="Client message id, echoed in errors it causes.")
    character: EntityId = Field(description="Persona id (file name in characters/).")
    player: Player = Field(default_factory=Player)
    scene: Scene = Field(default_factory=Scene, description="What actions may name.")
    options: SessionOptions = Field(default_factory=SessionOptions)
    cast: list[EntityId] = Field(default_factory=list, max_length=3, description="Other characters present who can talk too (persona ids): address them with input.text 'to', or let them converse with scene.converse.")


class TextInput(_Msg):
    type: Literal["input.text"] = "input.text"
    id: str | None = Field(default=None, max_length=64)
    text: str = Field(min_length=1, description="What the player says. Starts a response; interrupts one in progress.")
    to: EntityId | None = Field(default=None, description="Which character answers: the session's character (default) or one of its cast.")


class Converse(_Msg):
    type: Literal["scene.converse"] = "scene.converse"
    id: str | None = Field(default=None, max_length=64)
    characters: list[EntityId] = Field(default_factory=list, description="Who talks, in turn order (the session's character and its cast); default: all of them.")
    topic: str = Field(min_length=1, max_length=500, description="What the conversation is about; the first character opens on it.")
    turns: int = Field(default=4, ge=1, le=20, description="How many lines in all.")


class SceneUpdate(_Msg):
    type: Literal["scene.update"] = "scene.update"
    id: str | None = Field(default=None, max_length=64)
    scene: Scene = Field(description="The whole new scene; replaces the old one from the next response on.")


class GameEvent(_Msg):
    type: Literal["game.event"] = "game.event"
    id: str | None = Field(default=None, max_length=64)
    description: str = Field(min_length=1, description="What just happened, in words the character perceives ('A fire broke out in the kitchen').")
    react: bool = Field(default=False, description="Ask the character to react at once, unprompted (interrupts a response in progress).")


class ResponseCancel(_Msg):
    type: Literal["response.cancel"] = "response.cancel"
    id: str | None = Field(default=None, max_length=64)
    response_id: str | None = Field(default=None, description="The response to cancel; default: the current one.")


class AudioCommit(_Msg):
    type: Literal["input.audio.commit"] = "input.audio.commit"
    id: str | None = Field(default=None, max_length=64)


class AudioClear(_Msg):
    type: Literal["input.audio.clear"] = "input.audio.clear"
    id: str | None = Field(default=None, max_length=64)


class PlaybackMark(_Msg):
    type: Literal["playback.mark"] = "playback.mark"
    id: str | None = Field(default=None, max_length=64)
    response_id: str = Field(description="The response whose audio is playing.")
    played_ms: float = Field(ge=0, description="How much of that response's audio the player has heard, in ms of its audio timeline.")
    stopped: bool = Field(default=False, description=(
        "The client stopped playing this response here, on its own (a skip button, a cutscene): the character "
        "remembers having said only what was heard, as after a barge-in. Optional; false: playback goes on."))


class Ping(_Msg):
    type: Literal["ping"] = "ping"
    id: str | None = Field(default=None, max_length=64)


ClientMessage = Annotated[
    SessionStart | TextInput | SceneUpdate | GameEvent | ResponseCancel | AudioCommit | AudioClear | PlaybackMark | Converse | Ping,
    Field(discriminator="type"),
]
CLIENT_TYPES = ("session.start", "input.text", "scene.update", "game.event", "response.cancel",
                "input.audio.commit", "input.audio.clear", "playback.mark", "scene.converse", "ping")

# --------------------------------------------------------------------------- server → client


class _Event(_Msg):
    response_id: str | None = Field(default=None, description="The response this event belongs to; null for session-level events.")


class CharacterInfo(_Msg):
    id: str
    name: str


class AudioFormat(_Msg):
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    sample_rate: int = Field(description="Samples per second of the reply audio (the voice's own rate).")
    channels: Literal[1] = 1


class ListenSettings(_Msg):
    end_silence_ms: int
    barge_in_ms: int
    partials: bool


class _Spoken(_Event):
    speaker: str | None = Field(default=None, description="The character this response belongs to (the session's character, or one of its cast).")


class SessionReady(_Event):
    type: Literal["session.ready"] = "session.ready"
    session_id: str
    protocol: str = PROTOCOL_VERSION
    character: CharacterInfo
    actions: list[str] = Field(description="Verbs this character may use in this session.")
    audio: AudioFormat | None = Field(default=None, description="Reply audio format; null in text-only sessions.")
    audio_in: AudioInFormat | None = Field(default=None, description="Microphone format the server expects in binary frames; null when it runs no speech recognition.")
    listen: ListenSettings | None = Field(default=None, description="The end-of-turn and barge-in settings in force; null without speech recognition.")
    mood: str = Field(default="neutral", description="The character's resting mood (its face when no response.emotion says otherwise).")
    cast: list[CharacterInfo] = Field(default_factory=list, description="The other characters present (session.start's cast).")


class SceneUpdated(_Event):
    type: Literal["scene.updated"] = "scene.updated"
    objects: int
    locations: int
    characters: int


class EventAccepted(_Event):
    type: Literal["game.event.accepted"] = "game.event.accepted"
    ref: str | None = Field(default=None, description="The id of the game.event message.")
    reacting: bool = Field(description="Whether a response starts for it (its response.start follows).")


class ResponseStart(_Spoken):
    type: Literal["response.start"] = "response.start"
    response_id: str
    trigger: Trigger
    ref: str | None = Field(default=None, description="The id of the client message that started it; for voice, the utterance id.")


class TextDelta(_Spoken):
    type: Literal["response.text.delta"] = "response.text.delta"
    response_id: str
    text: str


class VisemeCueMsg(_Msg):
    viseme: Viseme
    start_ms: float
    end_ms: float


class AudioChunkEvent(_Spoken):
    """Announces the binary frame that follows it: ``samples`` PCM16 mono samples."""

    type: Literal["response.audio"] = "response.audio"
    response_id: str
    seq: int = Field(description="0-based chunk number within the response.")
    start_ms: float = Field(description="Where this chunk starts on the response's audio timeline.")
    samples: int
    sample_rate: int | None = Field(default=None, description="Samples per second of this chunk (the speaker's voice; session.ready.audio gives the session character's).")
    visemes: list[VisemeCueMsg] = Field(description="Cues covering this chunk, contiguous, ms from the start of the response's audio.")


class ActionEvent(_Spoken):
    type: Literal["response.action"] = "response.action"
    response_id: str
    index: int = Field(description="0-based position among this response's actions.")
    verb: VerbName = Field(description="The verb: a built-in (move, grab, give) or one the scene declares.")
    args: dict[str, str] = Field(default_factory=dict, description="Every argument by name, in the verb's order "
                                                                   "(give: object, target; move: target; grab: object; a declared verb: its own).")
    object: str | None = Field(default=None, description="The argument named object (grab/give: the object id).")
    target: str | None = Field(default=None, description="The argument named target (move: where to, any id; give: the character receiving).")
    text_offset: int = Field(description="Characters of speech text before this action.")
    at_ms: float | None = Field(default=None, description="Audio time at which the speech before the action ends; null without audio.")


class EmotionEvent(_Spoken):
    type: Literal["response.emotion"] = "response.emotion"
    response_id: str
    emotion: Emotion
    text_offset: int = Field(description="Characters of speech text before it.")
    at_ms: float | None = Field(default=None, description="Audio time from which the face shows it; null without audio.")


class ActionRecord(_Msg):
    verb: VerbName
    args: dict[str, str] = Field(default_factory=dict, description="Every argument by name (as in response.action).")
    object: str | None = None
    target: str | None = None


class SourceRef(_Msg):
    file: str = Field(description="Knowledge file, relative to the knowledge folder.")
    heading: str = Field(description="Heading path of the passage in that file ('' if none).")
    score: float = Field(description="Similarity to the query, -1..1.")


class ResponseEnd(_Spoken):
    type: Literal["response.end"] = "response.end"
    response_id: str
    status: ResponseStatus
    text: str = Field(description="The full speech text (tags removed). For an interrupted response: what was sent.")
    actions: list[ActionRecord]
    timings: dict[str, float] = Field(description="Per-stage times in ms from the turn's start: prompt_ready, first_token, first_text, end; plus generation_ms, tokens.")
    truncated: bool = Field(default=False, description="The reply hit the length cap.")
    audio_ms: float | None = Field(default=None, description="Length of the audio sent for this response; null without audio.")
    error: str | None = Field(default=None, description="Error code when status is failed.")
    heard_ms: float | None = Field(default=None, description="How much of the audio the player heard (the last playback.mark, or the barge-in point); null when unknown.")
    heard_text: str | None = Field(default=None, description="What the character is remembered to have said: the heard part of an interrupted response; null when all of text.")
    sources: list[SourceRef] = Field(default_factory=list, description="Knowledge passages given to the model for this response, best first.")
    knowledge: Literal["used", "none", "late", "unavailable"] | None = Field(
        default=None,
        description="The knowledge lookup for this response: used (passages given, see sources), none (nothing relevant found), "
                    "late (given up: over its time budget), unavailable (the knowledge store or embedder failed: answered without "
                    "knowledge); null: no lookup (no knowledge base on this server, nothing to look up, or a forbidden topic).")


class SpeechStarted(_Event):
    type: Literal["speech.started"] = "speech.started"
    utterance_id: str
    at_ms: float = Field(description="Where the voice starts, in ms of the microphone audio received in this session.")


class SpeechStopped(_Event):
    type: Literal["speech.stopped"] = "speech.stopped"
    utterance_id: str
    at_ms: float = Field(description="Where the voice stopped, microphone ms (the end of turn was decided end_silence_ms later).")
    duration_ms: float
    discarded: bool = Field(default=False, description="Too short to be speech (a click, a cough): no transcript follows.")


class TranscriptPartial(_Event):
    type: Literal["transcript.partial"] = "transcript.partial"
    utterance_id: str
    text: str = Field(description="The best guess so far of the whole utterance.")
    stable: str = Field(description="The start of text that will not change in later partials.")


class TranscriptFinal(_Event):
    type: Literal["transcript.final"] = "transcript.final"
    utterance_id: str
    text: str = Field(description="What the player said. Empty: nothing intelligible, no response follows.")
    backchannel: bool = Field(default=False, description="A short sound over the character's speech ('uh-huh'): it neither interrupted nor starts a response.")
    timings: dict[str, float] = Field(default_factory=dict, description="duration_ms (speech), decode_ms, final_ms (from the end of the voice to this event).")


class ResponseInterrupted(_Spoken):
    """Barge-in: the player talked over this response. Stop playing its audio now (skip its actions and
    emotions not yet reached) and send a last playback.mark. Comes whether or not the response is still
    being generated (if it is, its response.end follows with status interrupted)."""

    type: Literal["response.interrupted"] = "response.interrupted"
    response_id: str
    reason: Literal["barge_in"] = "barge_in"


class ConverseEnd(_Event):
    type: Literal["scene.converse.end"] = "scene.converse.end"
    ref: str | None = Field(default=None, description="The id of the scene.converse message.")
    turns: int = Field(description="Lines spoken.")
    status: ResponseStatus


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str = Field(description="Stable machine-readable code (see docs/protocol.md).")
    message: str
    ref: str | None = Field(default=None, description="The id of the client message that caused it, when known.")
    retryable: bool = False
    fatal: bool = Field(default=False, description="The server closes the connection after this event.")


class Pong(_Event):
    type: Literal["pong"] = "pong"
    ref: str | None = None


ServerEvent = Annotated[
    SessionReady | SceneUpdated | EventAccepted | ResponseStart | TextDelta | AudioChunkEvent | ActionEvent | EmotionEvent | ResponseEnd | SpeechStarted | SpeechStopped | TranscriptPartial | TranscriptFinal | ResponseInterrupted | ConverseEnd | ErrorEvent | Pong,
    Field(discriminator="type"),
]

_client_adapter: TypeAdapter[Any] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[Any] = TypeAdapter(ServerEvent)


def parse_client_message(frame: str | bytes) -> Any:
    """Parse one text frame from a client. Raises :class:`ProtocolError` with a stable code: ``message_too_large``,
    ``bad_json`` (not JSON, or NaN/Infinity), ``invalid_message`` (not an object, nested deeper than
    :data:`MAX_DEPTH`, wrong fields; a string that is not valid Unicode, i.e. a lone surrogate escape, is a wrong field),
    ``unknown_type``, ``invalid_scene``, ``text_too_large``. Error messages never quote what the player sent beyond
    field names and a short ``type``, and are always encodable."""
    data = _load(frame)
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object", code="invalid_message")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        raise ProtocolError(f"{_unknown_type(kind)}; expected one of {', '.join(CLIENT_TYPES)}", code="unknown_type")
    try:
        msg = _client_adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc, kind), code=_code_for(exc)) from None
    # pydantic refuses a lone surrogate only in strings it has to measure (max_length, pattern): not in response_id
    if (isinstance(frame, bytes) or "\\u" in frame) and not _encodable(json.dumps(data, ensure_ascii=False)):
        raise ProtocolError("a string is not valid Unicode (a lone surrogate escape, \\ud800-\\udfff)", code="invalid_message")
    text = getattr(msg, "text", None) or getattr(msg, "description", None)
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(f"text of {len(text)} characters exceeds the limit of {MAX_TEXT_CHARS}", code="text_too_large")
    return msg


def message_ref(frame: str | bytes) -> str | None:
    """Best-effort client message id of a frame that failed to parse (for ``error.ref``): the ``id`` of a JSON object
    when it is a string of at most :data:`MAX_ID_CHARS` characters that can be encoded (no lone surrogate); ``None``
    for a frame too large, not JSON or nested too deeply (its id is not read)."""
    try:
        data = _load(frame)
    except ProtocolError:
        return None
    ref = data.get("id") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= MAX_ID_CHARS and _encodable(ref) else None


def _load(frame: str | bytes) -> Any:
    """The JSON value of a frame within the size and depth limits, or :class:`ProtocolError`. Never recurses deeper
    than :data:`MAX_DEPTH` (a frame nested 1000 deep would otherwise raise ``RecursionError``)."""
    unicode = True
    if isinstance(frame, bytes):
        size = len(frame)
    else:
        try:
            size = len(frame.encode("utf-8"))
        except UnicodeEncodeError:  # a str with a raw lone surrogate (never from websockets, which decodes strictly)
            size, unicode = len(frame.encode("utf-8", "surrogatepass")), False
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {size} bytes exceeds the limit of {MAX_MESSAGE_BYTES}", code="message_too_large")
    if not unicode:
        raise ProtocolError("not valid JSON: not valid Unicode text", code="bad_json")
    if isinstance(frame, bytes):
        try:
            frame = frame.decode(json.detect_encoding(frame))
        except UnicodeDecodeError:
            raise ProtocolError("not valid JSON: not UTF-8 text", code="bad_json") from None
    if _deeper_than(frame, MAX_DEPTH):
        raise ProtocolError(f"arrays and objects nested deeper than {MAX_DEPTH} levels", code="invalid_message")
    try:
        return json.loads(frame, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: cannot happen within MAX_DEPTH; never let it out
        raise ProtocolError(f"not valid JSON: {_printable(str(exc), 200)}", code="bad_json") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: A JSON string (an unterminated one runs to the end of the frame); what is not a bracket.
_STRING = re.compile(r'"(?:[^"\\]+|\\.)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _deeper_than(text: str, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` in ``text`` (brackets inside strings do not count), scanned
    without parsing (also for frames that are not valid JSON): ~3 ms for a frame of 64 KiB of brackets."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


def _encodable(text: str) -> bool:
    """Whether ``text`` can be sent (UTF-8 has no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, lone surrogates written as escapes: safe to put in an error message."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _unknown_type(kind: Any) -> str:
    if kind is None:
        return "a message needs a type"
    if isinstance(kind, str):
        return f"unknown message type {_printable(repr(kind), 40)}"
    return f"the message type must be a string, not {_json_kind(kind)}"


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    kinds: dict[type, str] = {dict: "an object", list: "an array"}
    return kinds.get(type(value), type(value).__name__)


def _code_for(exc: ValidationError) -> str:
    for err in exc.errors():
        if err["loc"] and err["loc"][1:2] == ("scene",):
            return "invalid_scene"
    return "invalid_message"


def _describe(exc: ValidationError, kind: str) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(_printable(str(p), 40) for p in err["loc"][1:]) or "(message)"
        parts.append(f"{loc}: {_printable(err['msg'], 200)}")
    return f"invalid {kind}: " + "; ".join(parts)


def encode_event(event: BaseModel) -> str:
    """Serialize a server event to a text frame. Raises ``ValueError`` (pydantic's serialization error) for an event
    that cannot be sent, e.g. a string holding a lone surrogate."""
    return event.model_dump_json(exclude_none=False)


def parse_server_event(frame: str | bytes) -> Any:
    """Parse a server event (used by the client library and tests)."""
    return _server_adapter.validate_json(frame)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of protocol v1: client messages and server events."""
    client = _client_adapter.json_schema(ref_template="#/$defs/{model}")
    server = _server_adapter.json_schema(ref_template="#/$defs/{model}")
    defs = {**client.pop("$defs", {}), **server.pop("$defs", {})}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"npc_runtime protocol v{PROTOCOL_VERSION}",
        "description": "Text frames are JSON objects discriminated by 'type'. ClientMessage: client to server. ServerEvent: server to client.",
        "$defs": {**defs, "ClientMessage": client, "ServerEvent": server},
        "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerEvent"}],
    }
