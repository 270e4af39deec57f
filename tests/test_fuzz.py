"""A property-based protocol fuzzer (Hypothesis) against a real server on 127.0.0.1:0, over real websockets clients.

Frames come from the committed JSON Schema (``clients/protocol.schema.json``, the client message definitions) and from
mutations of valid messages: wrong types, values out of range, missing and extra fields, deep nesting, lone surrogates
and odd Unicode, truncated JSON, non-object JSON, NaN, unknown types, binary frames at the wrong time, frames between
:data:`~npc_runtime.protocol.MAX_MESSAGE_BYTES` and the server's hard limit. Each frame is followed by a ``ping`` (a
barrier): what the server says between two barriers answers that frame. Properties:

* a bad frame gets exactly one ``error``, with the documented code and ``ref`` (the message's id when it can be read:
  a string of at most 64 characters, valid Unicode, in a frame that is JSON, not nested too deeply and not too large);
* a valid frame gets the answer its type calls for (``pong``, ``session.ready``, ...) or an error with a code of the
  documented table, never a parse-level one; error messages never quote the player's text;
* every text frame from the server is a valid ServerEvent; every ``response.start`` gets its ``response.end``;
* nothing closes a connection (no 1011), the server logs no error and no traceback, and afterwards a normal
  session.start + input.text turn works on the same connection and on a new one; a bystander session sees nothing.

The engine is the fake LLM: this tests the protocol and session logic, not the model. Hypothesis runs derandomized,
without a database (repeatable; its caches go to the system temp folder, not .hypothesis/); each example is a batch of frames on a new connection. A longer
hunt: the same file with ``derandomize=False`` and more ``max_examples`` (55,000 frames took 2 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest_asyncio
import structlog
import structlog.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from server_fixture import CHARACTERS, registry, serving
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from npc_runtime import protocol as p
from npc_runtime.dialogue.turn import Dialogue
from npc_runtime.llm.fake import FakeLLM
from npc_runtime.metrics import Metrics
from npc_runtime.server import HARD_MAX_FRAME_BYTES, NpcServer
from npc_runtime.session import Services

# With database=None Hypothesis keeps no examples, but still caches (constants it harvests from the code, Unicode tables)
# in its storage directory, by default .hypothesis/ in the working directory: keep it out of the checkout. Before
# hypothesis_jsonschema, whose import already builds strategies (and the Unicode table).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "npc-runtime-hypothesis")
from hypothesis_jsonschema import from_schema  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "clients" / "protocol.schema.json").read_text(encoding="utf-8"))
DEFS: dict[str, Any] = SCHEMA["$defs"]
#: message type -> its definition name, from the ClientMessage discriminator
MESSAGE_DEFS: dict[str, str] = {t: ref.rsplit("/", 1)[1] for t, ref in DEFS["ClientMessage"]["discriminator"]["mapping"].items()}
PERSONAS = sorted(path.stem for path in CHARACTERS.glob("*.yaml"))


def _documented_codes() -> frozenset[str]:
    """The codes of the error table in docs/protocol.md."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    table = text.split("### Error codes", 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            codes.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return frozenset(codes)


DOCUMENTED = _documented_codes()
#: Codes a frame that is valid per the schema (with unique scene ids) must never get: they say the frame is malformed.
PARSE_LEVEL = frozenset({"bad_json", "unknown_type", "invalid_scene", "message_too_large", "internal"})
#: What a valid message of each type is answered with (besides an error): a sync answer, at most one.
ANSWER = {"ping": "pong", "session.start": "session.ready", "game.event": "game.event.accepted", "scene.update": "scene.updated"}
#: Types that always get exactly one answer (the others may get none: their work shows up as response events).
ALWAYS_ANSWERED = frozenset({*ANSWER, "input.audio.commit", "input.audio.clear"})
#: Session-level events (no response_id) that come later, not in answer to the frame just sent.
ASYNC_SESSION_EVENTS = frozenset({"scene.converse.end"})
BARRIER = "fuzz\u2063barrier:"
#: Frames per Hypothesis example (one connection; a failing example prints them all).
BATCH = 10
START = {"type": "session.start", "id": "fuzz-start", "character": "jin", "options": {"text_only": True},
         "scene": {"objects": [{"id": "chopsticks"}, {"id": "ramen_bowl"}], "locations": [{"id": "door"}],
                   "characters": [{"id": "player", "name": "Kai"}]}}

#: Frames sent by the fuzz tests (not counting the barrier pings), and which tests ran.
SENT = {"frames": 0, "in_session": 0, "before_session": 0}
MIN_FRAMES = 10_000

# ------------------------------------------------------------------------------------------------- frames from the schema


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DEFS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


_LEAVES: dict[str, st.SearchStrategy[Any]] = {}


def _from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for ``schema``. Objects, arrays, unions and references are walked here; the leaves (strings with
    their lengths and patterns, bounded numbers, consts) come from hypothesis-jsonschema. (Its object strategy does
    not run on this Hypothesis version: ``'many' object has no attribute 'more'``.) ``type`` is always present:
    the schema has it optional (it has a default), the server requires it."""
    schema = _resolve(schema)
    if "anyOf" in schema:
        return st.one_of([_from_schema(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ())) | ({"type"} & set(props))
        return st.fixed_dictionaries({k: _from_schema(props[k]) for k in sorted(required)},
                                     optional={k: _from_schema(v) for k, v in sorted(props.items()) if k not in required})
    if kind == "array":
        return st.lists(_from_schema(schema["items"]), min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 4), 4))
    leaf = {k: v for k, v in schema.items() if k not in ("title", "description", "default")}
    key = json.dumps(leaf, sort_keys=True)
    if key not in _LEAVES:
        _LEAVES[key] = from_schema(leaf)
    return _LEAVES[key]


def _unique_scene(message: dict[str, Any]) -> dict[str, Any]:
    """The message with each scene entity id and each declared verb kept once (the rules of the scene the schema
    cannot say)."""
    scene = message.get("scene")
    if isinstance(scene, dict):
        seen: set[str] = set()
        for kind in ("objects", "locations", "characters"):
            kept = []
            for entity in scene.get(kind, ()):
                if entity["id"] not in seen:
                    seen.add(entity["id"])
                    kept.append(entity)
            if kind in scene:
                scene[kind] = kept
        if "verbs" in scene:  # each declared verb once, none named like a built-in (or the emotion tag)
            names: set[str] = {"move", "grab", "give", "emotion"}
            verbs = []
            for verb in scene["verbs"]:
                if verb["name"] not in names:
                    names.add(verb["name"])
                    verbs.append(verb)
                args, arg_names = [], set()
                for arg in verb.get("args", ()):  # each argument named once, with a type or values (not both)
                    if arg["name"] in arg_names:
                        continue
                    arg_names.add(arg["name"])
                    if arg.get("values") is not None:
                        arg.pop("type", None)
                        arg["values"] = list(dict.fromkeys(arg["values"]))
                    else:
                        arg.pop("values", None)
                        arg["type"] = arg.get("type") or "any"
                    args.append(arg)
                if "args" in verb:
                    verb["args"] = args
            scene["verbs"] = verbs
    return message


MESSAGES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    t: _from_schema({"$ref": f"#/$defs/{name}"}).map(_unique_scene) for t, name in sorted(MESSAGE_DEFS.items())
}
#: Hypothesis draws the first choice of a sampled_from about a quarter of the time when what follows is complex (here:
#: ~25% instead of 10%), so the first is the richest message to mutate (scene, options, player, cast).
MESSAGE_ORDER = ["session.start", *sorted(set(MESSAGES) - {"session.start"})]
valid_messages = st.sampled_from(MESSAGE_ORDER).flatmap(MESSAGES.__getitem__)

# ------------------------------------------------------------------------------------------------- mutations

Path_ = tuple[str | int, ...]


def _branch(schema: dict[str, Any], value: Any) -> dict[str, Any]:
    """The alternative of a union that ``value`` (a valid value) matches, by JSON type."""
    schema = _resolve(schema)
    if "anyOf" not in schema:
        return schema
    want = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(type(value), "null")
    for alt in schema["anyOf"]:
        alt = _resolve(alt)
        if alt.get("type") == want or (want == "integer" and alt.get("type") == "number"):
            return alt
    return _resolve(schema["anyOf"][0])


def _fields(value: Any, schema: dict[str, Any], path: Path_ = ()) -> Iterator[tuple[Path_, dict[str, Any], Any]]:
    """Every value inside ``value`` (object members, array items, recursively) with its path and schema."""
    schema = _branch(schema, value)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, item in value.items():
            yield (*path, key), props[key], item
            yield from _fields(item, props[key], (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*path, i), schema["items"], item
            yield from _fields(item, schema["items"], (*path, i))


def _objects(value: Any, schema: dict[str, Any], path: Path_ = ()) -> Iterator[tuple[Path_, dict[str, Any], dict[str, Any]]]:
    """Every object inside ``value`` (itself included) with its path and (object) schema."""
    if isinstance(value, dict):
        yield path, _branch(schema, value), value
    for sub_path, sub_schema, item in _fields(value, schema, path):
        if isinstance(item, dict):
            yield sub_path, _branch(sub_schema, item), item


def _rejects(schema: dict[str, Any], value: Any) -> bool:
    """Whether pydantic (lax mode: it turns "5" into 5, 1 into True) surely refuses ``value`` for a field of ``schema``."""
    schema = _resolve(schema)
    if "anyOf" in schema:
        return all(_rejects(s, value) for s in schema["anyOf"])
    if isinstance(value, (dict, list)):
        return schema.get("type") not in ("object", "array") or (schema["type"] == "object") != isinstance(value, dict)
    if "const" in schema:
        const = schema["const"]
        if value is None or isinstance(value, bool):
            return value is None  # True == 1: a Literal[1] may take it
        return isinstance(value, str) != isinstance(const, str) or value != const
    kind = schema.get("type")
    if kind == "string":
        return not isinstance(value, str)
    if kind in ("integer", "number", "boolean"):
        return value is None or value == "abc" or (kind == "integer" and value == 1.5) or (kind == "boolean" and value in (7, 1.5))
    if kind in ("object", "array"):
        return True
    return kind == "null" and value is not None


WRONG_VALUES: list[Any] = [7, 1.5, True, "abc", None, {}, {"k": 1}, [], [1, "x"]]


def _violations(schema: dict[str, Any]) -> list[Any]:
    """Values of the right JSON type that break the field's constraints (length, pattern, range, const)."""
    schema = _resolve(schema)
    out: list[Any] = []
    for alt in schema.get("anyOf", [schema]):
        alt = _resolve(alt)
        if "maxLength" in alt:
            out.append("x" * (alt["maxLength"] + 1))
        if alt.get("minLength", 0) > 0:
            out.append("")
        if "pattern" in alt:
            out += ["Bad Id", "1abc", "a" * 49, "jin\n", "j\u0131n"]
        if "maximum" in alt:
            out.append(alt["maximum"] + 1)
        if "minimum" in alt:
            out.append(alt["minimum"] - 1)
        if "maxItems" in alt:
            item = {"id": "x"} if "$ref" in alt.get("items", {}) else "x"
            out.append([item] * (alt["maxItems"] + 1))
        if "const" in alt and isinstance(alt["const"], str):
            out.append(alt["const"] + "x")
        if "const" in alt and isinstance(alt["const"], int) and not isinstance(alt["const"], bool):
            out.append(alt["const"] + 1)
    return out


def _ref_of(message: Any) -> str | None:
    ref = message.get("id") if isinstance(message, dict) else None
    if not isinstance(ref, str) or len(ref) > p.MAX_ID_CHARS:
        return None
    try:
        ref.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return ref


def _bad_value_expectation(message: dict[str, Any], path: Path_) -> tuple[frozenset[str], str | None]:
    """The error for ``message`` made invalid at ``path`` (one bad value, missing or extra member there)."""
    if path == ("type",):
        return frozenset({"unknown_type"}), _ref_of(message)
    if path == ("id",):
        return frozenset({"invalid_message"}), None
    return frozenset({"invalid_scene" if path[0] == "scene" else "invalid_message"}), _ref_of(message)


def _set(message: Any, path: Path_, value: Any) -> Any:
    target = message
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return message


SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
#: Valid but odd text. The last one is two surrogates in Python, sent escaped: the server's JSON reads one emoji.
ODD_CHARS = ["\u0000", "\u001f", "\u007f", "\u0085", "\u00a0", "\u200b", "\u200d", "\u202e", "\u2028", "\u2029", "\ufeff",
             "\ufffe", "\uffff", "\ufffd", "\U0001f600", "\U0010ffff", "e\u0301", "\u0131", "\\", '"', "/", "</script>",
             "\ud83d\ude00"]
odd_text = st.lists(st.sampled_from(ODD_CHARS) | st.characters(codec="utf-8"), min_size=1, max_size=12).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


class Case:
    """One frame and what must answer it. ``codes`` None: a valid message (its type's answer or a documented error);
    ``binary``: the code depends on whether a session has started (no_session / audio_in_unavailable). ``words``:
    player text in the frame that no error message may quote. (Not a dataclass: Hypothesis prints dataclasses field by
    field, and a failing batch would print its megabyte frames in full.)"""

    def __init__(self, kind: str, frame: str | bytes, codes: frozenset[str] | None = None, ref: str | None = None,
                 message: dict[str, Any] | None = None, *, binary: bool = False, words: list[str] | None = None) -> None:
        self.kind, self.frame, self.codes, self.ref, self.message = kind, frame, codes, ref, message
        self.binary, self.words = binary, words or []

    def __repr__(self) -> str:
        return f"Case({self.kind}, {_show(self.frame)}, codes={sorted(self.codes) if self.codes else None}, ref={self.ref!r})"


def _unpaired(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _dump(draw: st.DrawFn, value: Any) -> str:
    """JSON text of ``value``: ASCII-escaped or raw UTF-8 (strings with a lone surrogate can only go escaped)."""
    ascii_only = _unpaired(value) or draw(st.booleans())
    return json.dumps(value, ensure_ascii=ascii_only, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))


def _words(message: Any) -> list[str]:
    """Player text in ``message`` that an error message quoting it would show: long and not ASCII (Hypothesis also
    generates strings from the server's own constants, e.g. 'session.star', which its messages do contain)."""
    if not isinstance(message, dict):
        return []
    return [v for k in ("text", "description", "brief", "topic")
            if isinstance(v := message.get(k), str) and len(v) >= 8 and not v.isascii() and not _unpaired(v)]


@st.composite
def valid_case(draw: st.DrawFn) -> Case:
    frame = _dump(draw, draw(valid_messages))
    message = json.loads(frame)
    return Case("valid", frame, None, _ref_of(message), message, words=_words(message))


@st.composite
def start_case(draw: st.DrawFn) -> Case:
    """A session.start that works (a real persona, a cast of others) before a session, session_exists after."""
    character = draw(st.sampled_from(PERSONAS))
    cast = draw(st.lists(st.sampled_from([c for c in PERSONAS if c != character]), max_size=2, unique=True))
    message = {"type": "session.start", "id": draw(st.text(max_size=8)), "character": character, "cast": cast,
               "options": {"text_only": True}}
    return Case("start", _dump(draw, message), None, _ref_of(message), message)


@st.composite
def odd_unicode_case(draw: st.DrawFn) -> Case:
    """A valid message whose free-text fields hold odd (but valid) Unicode: NUL, bidi overrides, noncharacters..."""
    message = draw(valid_messages)
    schema = {"$ref": f"#/$defs/{MESSAGE_DEFS[message['type']]}"}
    free = [path for path, sub, value in _fields(message, schema) if isinstance(value, str) and path != ("type",)
            and not {"pattern", "const", "enum"} & set(_branch(sub, value))]
    if not message.get("id"):
        free.append(("id",))
    for path in draw(st.lists(st.sampled_from(free), max_size=3, unique=True)) if free else []:
        limit = _branch(_field_schema(schema, message, path), "").get("maxLength", 64)
        _set(message, path, draw(odd_text)[:limit] or "x")
    frame = _dump(draw, message)
    message = json.loads(frame)  # as the server reads it: an escaped surrogate pair is one character
    return Case("odd_unicode", frame, None, _ref_of(message), message, words=_words(message))


def _field_schema(schema: dict[str, Any], message: Any, path: Path_) -> dict[str, Any]:
    if path == ("id",):
        return DEFS[MESSAGE_DEFS[message["type"]]]["properties"]["id"]
    return next(sub for sub_path, sub, _ in _fields(message, schema) if sub_path == path)


@st.composite
def bad_value_case(draw: st.DrawFn) -> Case:
    """One member of a valid message replaced by a value of the wrong type, or of the right type out of its limits,
    or holding a lone surrogate."""
    message = draw(valid_messages)
    schema = {"$ref": f"#/$defs/{MESSAGE_DEFS[message['type']]}"}
    fields = [(path, sub, value) for path, sub, value in _fields(message, schema) if path != ("type",)]
    if not fields:
        return draw(extra_field_case())
    path, sub, value = draw(st.sampled_from(fields))
    how = draw(st.sampled_from(["wrong_type", "violation", "surrogate"]))
    if how == "surrogate" and isinstance(value, str):
        at = draw(st.integers(0, len(value)))
        bad = value[:at] + draw(SURROGATES) + value[at:]
    elif how == "violation" and _violations(sub):
        bad = draw(st.sampled_from(_violations(sub)))
    else:
        how = "wrong_type"
        bad = draw(st.sampled_from([v for v in WRONG_VALUES if _rejects(sub, v)]))
    _set(message, path, bad)
    codes, ref = _bad_value_expectation(message, path)
    return Case(how, _dump(draw, message), codes, ref, message, words=_words(message))


@st.composite
def missing_field_case(draw: st.DrawFn) -> Case:
    message = draw(valid_messages)
    schema = {"$ref": f"#/$defs/{MESSAGE_DEFS[message['type']]}"}
    holes = [(path, key) for path, sub, obj in _objects(message, schema) for key in sub.get("required", ()) if key in obj]
    if not holes:
        return draw(extra_field_case())
    path, key = draw(st.sampled_from(holes))
    target = message
    for step in path:
        target = target[step]
    del target[key]
    codes, ref = _bad_value_expectation(message, (*path, key))
    return Case("missing", _dump(draw, message), codes, ref, message, words=_words(message))


@st.composite
def extra_field_case(draw: st.DrawFn) -> Case:
    message = draw(valid_messages)
    schema = {"$ref": f"#/$defs/{MESSAGE_DEFS[message['type']]}"}
    path, sub, obj = draw(st.sampled_from(list(_objects(message, schema))))
    key = draw(st.text(max_size=10) | odd_text | SURROGATES | st.sampled_from(["__proto__", "constructor", "x" * 300]))
    if key in sub.get("properties", {}):
        key += "_extra"
    obj[key] = draw(json_values)
    codes, ref = _bad_value_expectation(message, (*path, key))
    return Case("extra", _dump(draw, message), codes, ref, message, words=_words(message))


@st.composite
def unknown_type_case(draw: st.DrawFn) -> Case:
    message = draw(valid_messages)
    kind = draw(st.one_of(
        st.just(None),  # no type at all
        st.text(max_size=20).filter(lambda t: t not in p.CLIENT_TYPES),
        st.sampled_from([v for t in p.CLIENT_TYPES for v in (t.upper(), f" {t}", f"{t}\u0000", t[:-1], f"{t}\u200b")]),
        SURROGATES, st.just("x" * 5000),
        json_values.filter(lambda v: not isinstance(v, str) and v is not None),
    ))
    if kind is None:
        del message["type"]
    else:
        message["type"] = kind
    return Case("unknown_type", _dump(draw, message), frozenset({"unknown_type"}), _ref_of(message), message, words=_words(message))


@st.composite
def deep_case(draw: st.DrawFn) -> Case:
    """Arrays/objects nested ``depth`` levels in a member (or as the whole frame), closed or cut off. Past
    MAX_DEPTH the frame is refused unread (invalid_message, no ref); within it the member is just a wrong value."""
    message = draw(valid_messages)
    depth = draw(st.one_of(st.integers(2, p.MAX_DEPTH - 2), st.integers(p.MAX_DEPTH, 200),
                           st.sampled_from([p.MAX_DEPTH - 1, p.MAX_DEPTH, p.MAX_DEPTH + 1, 999, 1000, 1001, 5000, 20000])))
    shape = draw(st.sampled_from(["array", "object"]))
    closed = draw(st.booleans())
    if shape == "array":
        nested = "[" * depth + ("]" * depth if closed else "")
    else:
        nested = '{"a":' * (depth - 1) + "{}" + ("}" * (depth - 1) if closed else "")
    where = draw(st.sampled_from(["member", "frame"]))
    if where == "frame":
        if len(nested) > p.MAX_MESSAGE_BYTES:
            code = "message_too_large"
        elif depth > p.MAX_DEPTH:
            code = "invalid_message"
        elif not closed:
            code = "bad_json"
        else:  # an array is not an object; {"a": ...} has no type
            code = "invalid_message" if shape == "array" else "unknown_type"
        return Case("deep_frame", nested, frozenset({code}), None)
    keys = [k for k in message if k != "type"] + ["deep"]
    key = draw(st.sampled_from(keys))
    placeholder = "\u0007deep\u0007"
    if closed:
        message[key] = placeholder
        frame = json.dumps(message).replace(json.dumps(placeholder), nested)
    else:  # last, so that nothing after it nests deeper still
        message.pop(key, None)
        frame = json.dumps(message)[:-1] + f', "{key}": {nested}'
        message[key] = placeholder
    total = depth + 1
    if len(frame.encode("utf-8")) > p.MAX_MESSAGE_BYTES:
        codes, ref = frozenset({"message_too_large"}), None
    elif total > p.MAX_DEPTH:
        codes, ref = frozenset({"invalid_message"}), None
    elif not closed:
        codes, ref = frozenset({"bad_json"}), None
    else:
        codes, ref = _bad_value_expectation(message, (key,))
    message.pop(key)
    return Case("deep", frame, codes, ref)


@st.composite
def truncated_case(draw: st.DrawFn) -> Case:
    text = _dump(draw, draw(valid_messages))
    return Case("truncated", text[: draw(st.integers(0, len(text) - 1))], frozenset({"bad_json"}), None)


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return text.count("[") + text.count("{") <= p.MAX_DEPTH
    return False


@st.composite
def not_json_case(draw: st.DrawFn) -> Case:
    """Text that is not JSON: random text, JavaScript's NaN/Infinity (Python's json reads them: the server must not),
    trailing garbage, a BOM, single quotes, a trailing comma, nothing."""
    message = draw(valid_messages)
    base = _dump(draw, message)
    frame = draw(st.one_of(
        st.text(max_size=40).filter(_not_json),
        st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(lambda c: base[:-1] + f', "x": {c}}}'),
        st.sampled_from([base + "}", base + " x", "\ufeff" + base, base[:-1] + ",}", "", "   ", "{" + base]),
        st.just(base.replace('"', "'")).filter(_not_json),
    ))
    return Case("not_json", frame, frozenset({"bad_json"}), None)


@st.composite
def non_object_case(draw: st.DrawFn) -> Case:
    value = draw(json_values.filter(lambda v: not isinstance(v, dict)) | SURROGATES | st.just([{"type": "ping", "id": "a"}]))
    return Case("non_object", _dump(draw, value), frozenset({"invalid_message"}), None)


@st.composite
def oversized_case(draw: st.DrawFn) -> Case:
    """A frame over MAX_MESSAGE_BYTES (in UTF-8 bytes: a multi-byte text can be under it in characters) and within
    the WebSocket hard limit: message_too_large, no ref (the id of a frame that large is not read)."""
    size = draw(st.integers(p.MAX_MESSAGE_BYTES + 1, HARD_MAX_FRAME_BYTES - 16) | st.just(p.MAX_MESSAGE_BYTES + 1))
    message = draw(valid_messages)
    message["id"] = "big"
    char = draw(st.sampled_from(["x", "\u00e9", "\u20ac", "\U0001f600", "["]))
    head = json.dumps(message, ensure_ascii=False)[:-1] + ', "pad": "'
    room = size - len(head.encode("utf-8")) - 2
    frame = head + char * max(1, math.ceil(room / len(char.encode("utf-8")))) + '"}'
    return Case("oversized", frame, frozenset({"message_too_large"}), None)


@st.composite
def binary_case(draw: st.DrawFn) -> Case:
    data = draw(st.binary(max_size=64) | st.sampled_from([b"", b"\x00", b"{}", json.dumps({"type": "ping", "id": "b"}).encode()])
                | st.integers(p.MAX_AUDIO_FRAME_BYTES - 1, HARD_MAX_FRAME_BYTES - 16).map(lambda n: b"\x01" * n))
    return Case("binary", data, None, None, binary=True)


#: (strategy, weight): the mix of one batch. The first one gets drawn more than its weight says (see MESSAGE_ORDER).
CASES: list[tuple[st.SearchStrategy[Case], int]] = [
    (bad_value_case(), 22), (valid_case(), 14), (start_case(), 2), (odd_unicode_case(), 6), (missing_field_case(), 6),
    (extra_field_case(), 8), (unknown_type_case(), 6), (deep_case(), 8), (truncated_case(), 8), (not_json_case(), 6),
    (non_object_case(), 5), (binary_case(), 5), (oversized_case(), 1),
]
any_case = st.sampled_from([i for i, (_, weight) in enumerate(CASES) for _ in range(weight)]).flatmap(lambda i: CASES[i][0])

# ------------------------------------------------------------------------------------------------- the server and the log


class Harness:
    """The server, a bystander session on it, and the error logs (structlog, and the standard library's: websockets'
    'connection handler failed', asyncio's unretrieved task exceptions)."""

    def __init__(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        self.problems: list[str] = []
        self.seen = 0
        self.server: NpcServer | None = None
        self.bystander: ClientConnection | None = None

    def new_problems(self) -> list[str]:
        found, self.seen = self.problems[self.seen:], len(self.problems)
        return found

    async def start(self) -> None:
        personas = await self.stack.enter_async_context(registry())
        llm = FakeLLM(["Sure, here you go. [give chopsticks player]"])
        services = Services(personas=personas, dialogue=Dialogue(llm=llm), metrics=Metrics())
        self.server = await self.stack.enter_async_context(serving(services))
        self.bystander = await self.stack.enter_async_context(connect(self.server.url))
        await _start(self.bystander, START)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url


class _Collect(logging.Handler):
    def __init__(self, out: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append(f"{record.name}: {record.getMessage()}" + (f"\n{self.formatException(record.exc_info)}" if record.exc_info else ""))


class _StructlogErrors:
    """A structlog processor: error-level entries (and any with exc_info) into ``out``; everything is then dropped."""

    def __init__(self, out: list[str]) -> None:
        self.out = out

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> Any:
        if method in ("error", "exception", "critical", "fatal") or event.get("exc_info"):
            self.out.append(f"{method}: {event}")
        raise structlog.DropEvent


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness() -> AsyncIterator[Harness]:
    """On the test loop: the server runs only while a test (a Hypothesis example) runs, never while Hypothesis
    generates (websockets' keepalive calls ``random``, which Hypothesis would take for a strategy using it)."""
    h = Harness()
    handler = _Collect(h.problems)
    logging.getLogger().addHandler(handler)
    old = structlog.get_config()
    structlog.configure(processors=[_StructlogErrors(h.problems)])
    before = {t for t in asyncio.all_tasks() if not t.done()}
    try:
        await h.start()
        yield h
        await h.stack.aclose()
        await asyncio.sleep(0.05)
        leftover = [t.get_name() for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
        assert not leftover, f"tasks left running after the server closed: {leftover}"
        assert not h.new_problems()
    finally:
        await h.stack.aclose()
        structlog.configure(**old)
        logging.getLogger().removeHandler(handler)


# ------------------------------------------------------------------------------------------------- the wire


class Wire:
    """One client connection: frames out, each followed by a barrier ping; events in, checked as they come."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.started = False
        self.open: set[str] = set()  # response.start without its response.end yet
        self.ended: dict[str, p.ResponseEnd] = {}
        self.barriers = 0

    async def event(self) -> Any:
        raw = await self.ws.recv()
        assert isinstance(raw, str), f"a binary frame ({len(raw)} bytes) in a text-only session"
        event = p.parse_server_event(raw)  # every frame from the server is a valid ServerEvent
        if event.type == "response.start":
            assert event.response_id not in self.open and event.response_id not in self.ended, f"response started twice: {event}"
            self.open.add(event.response_id)
        elif event.type == "response.end":
            assert event.response_id in self.open, f"response.end without its start: {event}"
            self.open.discard(event.response_id)
            self.ended[event.response_id] = event
            assert event.error is None or event.error in DOCUMENTED, event
        if event.type == "error":
            assert event.code in DOCUMENTED and event.code != "internal", f"undocumented or internal error code: {event}"
            assert not event.fatal, event
        return event

    async def exchange(self, frames: list[str | bytes]) -> list[list[Any]]:
        """Send every frame, each followed by a barrier ping; the session-level events between barriers, per frame."""
        first = self.barriers
        self.barriers += len(frames)

        async def send() -> None:
            for i, frame in enumerate(frames, start=first):
                await self.ws.send(frame)
                await self.ws.send(json.dumps({"type": "ping", "id": f"{BARRIER}{i}"}))

        sender = asyncio.create_task(send())
        answers: list[list[Any]] = [[]]
        try:
            async with asyncio.timeout(60):
                while len(answers) <= len(frames):
                    event = await self.event()
                    if isinstance(event, p.Pong) and (event.ref or "").startswith(BARRIER):
                        assert event.ref == f"{BARRIER}{first + len(answers) - 1}", f"barriers out of order: {event.ref}"
                        answers.append([])
                    elif event.response_id is None and event.type not in ASYNC_SESSION_EVENTS:
                        answers[-1].append(event)
            await sender
        finally:
            sender.cancel()
        return answers[:-1]

    async def settle(self) -> None:
        """Wait for every response started to end."""
        async with asyncio.timeout(30):
            while self.open:
                event = await self.event()
                assert event.response_id is not None or event.type in ASYNC_SESSION_EVENTS, f"an unprompted event: {event}"

    async def turn_works(self) -> None:
        """A normal turn: session.start if none yet, then input.text, answered by a completed response."""
        if not self.started:
            await self.ws.send(json.dumps({**START, "id": "fuzz-restart"}))
            while True:
                event = await self.event()
                if event.response_id is None and event.type not in ASYNC_SESSION_EVENTS:
                    assert event.type == "session.ready", f"session.start after the fuzzing got {event}"
                    break
            self.started = True
        await self.ws.send(json.dumps({"type": "input.text", "id": "fuzz-final", "text": "Chopsticks, please?"}))
        async with asyncio.timeout(30):
            response_id = None
            while True:
                event = await self.event()
                if event.type == "response.start" and event.ref == "fuzz-final":
                    response_id = event.response_id
                elif event.type == "response.end" and event.response_id == response_id:
                    assert event.status == "completed", event
                    return
                else:
                    assert event.response_id is not None or event.type in ASYNC_SESSION_EVENTS, f"an unprompted event: {event}"


async def _start(ws: ClientConnection, message: dict[str, Any]) -> p.SessionReady:
    await ws.send(json.dumps(message))
    ready = p.parse_server_event(await asyncio.wait_for(ws.recv(), 10))
    assert ready.type == "session.ready", ready
    return ready  # type: ignore[no-any-return]


def check(case: Case, answers: list[Any], wire: Wire) -> None:
    what = f"{case.kind} frame {_show(case.frame)} got {answers}"
    if case.binary:
        codes: frozenset[str] | None = frozenset({"audio_in_unavailable" if wire.started else "no_session"})
    else:
        codes = case.codes
    if codes is not None:
        assert len(answers) == 1 and answers[0].type == "error", what
        error = answers[0]
        assert error.code in codes, what
        assert error.ref == case.ref, f"ref {error.ref!r}, expected {case.ref!r}: {what}"
        assert not error.retryable and not error.fatal, what
        assert not any(words in error.message for words in case.words), f"the error quotes the player: {what}"
        return
    message = case.message
    assert message is not None
    kind = message["type"]
    if kind in ALWAYS_ANSWERED:
        assert len(answers) == 1, what
    assert len(answers) <= 1, what
    for event in answers:
        if event.type == "error":
            assert event.code not in PARSE_LEVEL, f"a valid message refused: {what}"
            assert event.code != "invalid_message" or kind == "session.start", f"a valid message refused: {what}"
            too_long = any(isinstance(message.get(k), str) and len(message[k]) > p.MAX_TEXT_CHARS for k in ("text", "description"))
            assert event.code != "text_too_large" or too_long, what
            assert event.ref == case.ref, f"ref {event.ref!r}, expected {case.ref!r}: {what}"
            assert not any(words in event.message for words in case.words), f"the error quotes the player: {what}"
        else:
            assert event.type == ANSWER.get(kind), what
            if event.type in ("pong", "game.event.accepted"):
                assert event.ref == case.ref, what
            if event.type == "session.ready":
                wire.started = True


def _show(frame: str | bytes) -> str:
    return repr(frame[:200]) + (f"... ({len(frame)} long)" if len(frame) > 200 else "")


async def _fuzz(harness: Harness, cases: list[Case], start: dict[str, Any] | None) -> None:
    async with connect(harness.url) as ws:
        wire = Wire(ws)
        if start is not None:
            await _start(ws, start)
            wire.started = True
        answers = await wire.exchange([case.frame for case in cases])
        SENT["frames"] += len(cases)
        for case, answer in zip(cases, answers):
            check(case, answer, wire)
        await wire.settle()
        await wire.turn_works()  # the connection still works
        assert ws.close_code is None, f"the server closed the connection: {ws.close_code} {ws.close_reason}"
    assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
    problems = harness.new_problems()
    assert not problems, "the server logged errors:\n" + "\n".join(problems[:5])


FUZZ_SETTINGS = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@settings(FUZZ_SETTINGS, max_examples=720)
@given(cast=st.sampled_from([[], ["nova"]]), cases=st.lists(any_case, min_size=BATCH, max_size=BATCH))
async def test_fuzz_in_a_session(harness: Harness, cast: list[str], cases: list[Case]) -> None:
    """Fuzzed frames after a session.start (with or without a cast), each connection then still holds a turn."""
    await _fuzz(harness, cases, {**START, "cast": cast})
    SENT["in_session"] += len(cases)


@settings(FUZZ_SETTINGS, max_examples=300)
@given(cases=st.lists(any_case, min_size=BATCH, max_size=BATCH))
async def test_fuzz_before_a_session(harness: Harness, cases: list[Case]) -> None:
    """Fuzzed frames on a connection with no session yet (a session.start among them may start one)."""
    await _fuzz(harness, cases, None)
    SENT["before_session"] += len(cases)


#: Frames that once closed the connection with 1011 (issue 15), or that must never: (frame, code, ref).
KNOWN_BAD: list[tuple[str, str, str | None]] = [
    ("[" * 1000 + "]" * 1000, "invalid_message", None),  # RecursionError in json.loads
    ('{"type": "ping", "id": "k1", "x": ' + "[" * 1000 + "]" * 1000 + "}", "invalid_message", None),
    ('{"type": ' + "{" * 5000, "invalid_message", None),
    ('{"type": "ping", "id": "\\ud800"}', "invalid_message", None),  # the id echoed as ref could not be encoded
    ('{"type": "teleport", "id": "\\udfff"}', "unknown_type", None),
    ('{"type": "\\ud800", "id": "k2"}', "unknown_type", "k2"),
    ('{"type": "playback.mark", "id": "k3", "response_id": "\\ud800", "played_ms": 5}', "invalid_message", "k3"),
    ('{"type": "response.cancel", "id": "k4", "response_id": "x\\udc00"}', "invalid_message", "k4"),  # pydantic lets it in
    ('{"type": "ping", "id": "k5", "x": NaN}', "bad_json", None),
    ('{"type": "ping", "id": "k6", "' + "k" * 60_000 + '": 1}', "invalid_message", "k6"),
    ('{"type": "' + "t" * 60_000 + '", "id": "k7"}', "unknown_type", "k7"),
    ('{"type": "ping", "id": "\\ud83d\\ude00"}', "", "\U0001f600"),  # a surrogate pair is one character: valid
]


async def test_frames_that_once_closed_the_connection_get_errors(harness: Harness) -> None:
    async with connect(harness.url) as ws:
        wire = Wire(ws)
        answers = await wire.exchange([frame for frame, _, _ in KNOWN_BAD])
        await wire.turn_works()
    assert [(a[0].code if a[0].type == "error" else "", a[0].ref) for a in answers] == [(code, ref) for _, code, ref in KNOWN_BAD]
    assert not harness.new_problems()


class _Socket:
    """Records frames; closed after ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.frames: list[str | bytes] = []
        self.limit = limit

    async def send(self, frame: str | bytes) -> None:
        if len(self.frames) == self.limit:
            raise ConnectionClosed(None, None)
        self.frames.append(frame)


async def test_the_write_pump_survives_an_event_it_cannot_encode() -> None:
    """A bug that puts a lone surrogate into an event: that event becomes an ``internal`` error (logged), the pump goes on."""
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    for item in (p.TextDelta(response_id="r1", text="caf\udce9"), b"\x00\x01", p.Pong(ref="after"), p.Pong(ref="closed")):
        outbox.put_nowait(item)
    session = SimpleNamespace(outbox=outbox, services=SimpleNamespace(metrics=None))
    ws = _Socket(limit=3)
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(NpcServer._write_pump(ws, session), 5)  # type: ignore[arg-type]
    first = p.parse_server_event(ws.frames[0])
    assert (first.type, first.code, first.response_id) == ("error", "internal", "r1")
    assert ws.frames[1:] == [b"\x00\x01", p.encode_event(p.Pong(ref="after"))]
    errors = [(e["event"], e.get("event_type")) for e in logs if e["log_level"] == "error"]  # (the harness's server logs too)
    assert errors == [("an event could not be encoded", "response.text.delta")]


async def test_a_bug_handling_a_frame_gets_an_internal_error_not_a_closed_connection() -> None:
    sent: list[tuple[str, str | None]] = []

    async def handle(msg: Any) -> None:
        raise RuntimeError("a bug")

    async def send_error(exc: Any, ref: str | None = None) -> None:
        sent.append((exc.code, ref))

    session = SimpleNamespace(handle=handle, send_error=send_error)
    with structlog.testing.capture_logs() as logs:
        await NpcServer._on_frame('{"type": "ping", "id": "p1"}', session)  # type: ignore[arg-type]
    assert sent == [("internal", "p1")]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["message_type"], e["exc_info"]) for e in errors] == [("handling a client message failed", "ping", True)]


async def _over_the_hard_limit(url: str) -> int | None:
    async with connect(url) as ws:
        await ws.send("x" * (HARD_MAX_FRAME_BYTES + 1))
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code


async def _not_utf8(url: str) -> int | None:
    async with connect(url) as ws:
        await ws.send(b'{"type": "ping", "id": "\xff"}', text=True)
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code


async def test_the_server_is_unharmed(harness: Harness) -> None:
    """After the fuzzing: a frame over the hard limit closes only its connection (1009), so does a text frame that is
    not UTF-8 (1007: the WebSocket standard says so); a new connection holds a turn; the bystander session saw nothing
    and still holds a turn; nothing was logged as an error."""
    assert await _over_the_hard_limit(harness.url) == 1009
    assert await _not_utf8(harness.url) == 1007
    async with connect(harness.url) as ws:  # a new connection holds a turn
        await Wire(ws).turn_works()
    assert harness.bystander is not None
    bystander = Wire(harness.bystander)
    bystander.started = True
    with contextlib.suppress(TimeoutError):  # nothing came to the bystander while the others were fuzzed
        unexpected = await asyncio.wait_for(harness.bystander.recv(), 0.05)
        raise AssertionError(f"the bystander got {unexpected!r}")
    await bystander.turn_works()
    assert not harness.new_problems()
    if SENT["in_session"] and SENT["before_session"]:  # both fuzz tests ran (not a -k selection)
        assert SENT["frames"] >= MIN_FRAMES, SENT
